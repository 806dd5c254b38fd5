"""Keyword tokenisation for the BM25 index: text in, index terms out.

The keyword index itself lives in SQL; this module only decides what a term is, so a question's terms are ones
its documents were indexed under. A tokenizer's ``scheme`` lets an index record what built it: terms from
different schemes do not match, so changing it means re-indexing.

CJK text has no spaces between words. ``SimpleTokenizer`` indexes overlapping character bigrams, which needs no
dictionary; ``JiebaTokenizer`` segments Chinese into words with jieba (the ``chinese`` extra).

Each scheme has versions (``scheme`` is what an index records). Version 2 also indexes every CJK character of a
document under a character term, so a one-character question (税) finds it inside longer runs, while longer
questions are looked up and ranked by their bigrams or words as in version 1; and it keeps combining marks inside
words, so Devanagari, Tamil or Thai words stay whole. Version 3 folds English words onto their Snowball stems
("invented", "invention" -> invent) where earlier versions folded plurals only. Older versions are kept to read the
knowledge bases they built until ``kb doctor --repair`` rebuilds them.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from snowballstemmer.english_stemmer import EnglishStemmer

from kb import optional
from kb.errors import ConfigurationError

# Regex character-class bodies (no brackets), shared with the chunker's approximate token counter.
HAN_CHARS = "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
KANA_HANGUL_CHARS = (
    "\u1100-\u11ff\u3040-\u30fa\u30fc-\u30ff\u3130-\u318f\u31f0-\u31ff\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff"
)
CJK_CHARS = HAN_CHARS + KANA_HANGUL_CHARS

# Lucene's classic English stop set: frequent words that only add noise to BM25.
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these "
    "they this to was will with".split()
)

LATEST_VERSION = 3
# What each version finds that the one before missed: what `kb doctor` tells a knowledge base built with an older one.
ADDED_IN_VERSION = {
    2: "finds a single CJK character inside longer text and keeps combining marks inside words",
    3: "matches English words of one stem (invented, invention)",
}
STEM_CACHE = 1 << 16  # distinct words whose stems are kept: a corpus repeats its vocabulary
# Longer runs of letters are no English word (the longest in a dictionary has 45): left whole, neither stemmed (the
# stemmer's time grows faster than a word's length) nor cached (a hostile file's 6,000-letter "words" would pin
# hundreds of megabytes).
MAX_STEMMED_LETTERS = 45
CHARACTER_TERM = "#"  # prefix of a character term: no word or CJK term starts with it
_LATIN_LETTERS = re.compile(r"[a-z]+")
# Combining marks live below U+20000 but for the variation selectors of ideographs (U+E0100-U+E01EF).
_MARKS_BELOW, _HIGH_MARKS = 0x20000, "\U000e0100-\U000e01ef"


@functools.cache
def _combining_marks() -> str:
    """A regex class body of every combining mark (Unicode category M), built once from ``unicodedata``."""
    ranges, start = [], None
    for code in range(_MARKS_BELOW + 1):
        mark = code < _MARKS_BELOW and unicodedata.category(chr(code)).startswith("M")
        if mark and start is None:
            start = code
        elif not mark and start is not None:
            ranges.append(f"{chr(start)}-{chr(code - 1)}")
            start = None
    return "".join(ranges) + _HIGH_MARKS


@functools.cache
def runs(version: int) -> re.Pattern[str]:
    """The runs a text is cut into: Han, kana/hangul, and words of letters and digits (from version 2 with the
    combining marks that follow a letter inside them: version 1 cut हिन्दी into ह, न, द)."""
    letter = rf"[^\W_{CJK_CHARS}]"
    word = f"{letter}+" if version == 1 else rf"{letter}(?:{letter}|[{_combining_marks()}])*"
    return re.compile(rf"(?P<han>[{HAN_CHARS}]+)|(?P<kana>[{KANA_HANGUL_CHARS}]+)|(?P<word>{word}(?:['’]{word})*)")


@runtime_checkable
class KeywordTokenizer(Protocol):
    """Turns text into BM25 terms: ``tokenize`` for what is indexed, ``tokenize_query`` for what is looked up;
    ``name`` is the setting that chose it and ``scheme`` (name and version) what an index records."""

    name: str
    version: int

    @property
    def scheme(self) -> str: ...

    def tokenize(self, text: str) -> list[str]: ...

    def tokenize_query(self, text: str) -> list[str]: ...


def plural_stem(word: str) -> str:
    """Harman's S-stemmer, versions 1 and 2: fold English plurals onto their singular ("studies" -> "study").

    Only lower-case ASCII words longer than three letters are touched, so numbers, codes and short words pass as is;
    words in -is ("analysis") are left alone too. Crude ("boxes" -> "boxe"), but it runs on queries and documents
    alike, so what matters is that singular and plural usually meet.
    """
    if len(word) <= 3 or not _LATIN_LETTERS.fullmatch(word):
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss", "is")):
        return word[:-1]
    return word


_stemmers = threading.local()  # a Snowball stemmer keeps state while it works: one per thread


def english_stem(word: str) -> str:
    """The Snowball (Porter2) English stem of a lower-case ASCII word ("invention" -> "invent"), so that a
    question's "invented" finds a document's "invention"; other words (numbers, codes, accented words, runs of
    more than ``MAX_STEMMED_LETTERS`` letters) pass as is. On squad2-train-part's questions it lifted keyword
    recall@1 by 4 points and hybrid by 2.7 (docs/configuration.md, Keyword terms)."""
    if len(word) > MAX_STEMMED_LETTERS or not _LATIN_LETTERS.fullmatch(word):
        return word
    return _cached_stem(word)


@functools.lru_cache(maxsize=STEM_CACHE)
def _cached_stem(word: str) -> str:
    """The stem, by snowballstemmer's own English stemmer: always this one, never PyStemmer's (which the package
    hands over to when installed), because an index's terms must not change with what else is installed; the
    release is pinned in pyproject.toml for the same reason (Snowball's English rules changed in 3.0 and 3.1)."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        stemmer = _stemmers.english = EnglishStemmer()
    return str(stemmer.stemWord(word))


def word_term(word: str, version: int = LATEST_VERSION) -> str | None:
    """The index term for one case-folded word in a tokenizer ``version``, or None for a stopword.

    A possessive "'s" is dropped and other apostrophes are removed ("o'neill" -> "oneill", "don't" -> "dont"), so
    spellings with and without the apostrophe meet. Then the word is stemmed: from version 3 to its English stem,
    before it its plural only.
    """
    word = word.replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if word in ENGLISH_STOPWORDS:
        return None
    return english_stem(word) if version >= 3 else plural_stem(word)


def character_bigrams(run: str) -> list[str]:
    """Overlapping bigrams of a CJK run ("中华人民" -> 中华, 华人, 人民); a single character stays a unigram."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


class _Versioned:
    """What both schemes share: the version, the recorded scheme, and the scan with a scheme's Han segmentation."""

    name: str

    def __init__(self, version: int = LATEST_VERSION) -> None:
        if not 1 <= version <= LATEST_VERSION:
            raise ConfigurationError(f"keyword tokenizer {self.name!r} has no version {version}; this version of "
                                     f"the project knows 1 to {LATEST_VERSION}: upgrade it, or rebuild the keyword "
                                     f"index with `kb reembed`")
        self.version = version

    @property
    def scheme(self) -> str:
        """What an index records: the name, and ``/version`` from version 2 (version 1 recorded the name alone)."""
        return self.name if self.version == 1 else f"{self.name}/{self.version}"

    def fold(self, run: str) -> str:
        """A Han run as it is segmented and indexed (as it is, unless a scheme folds variants together)."""
        return run

    def segment(self, run: str) -> list[str]:
        """A folded Han run's terms as a question's are made: overlapping bigrams unless a scheme knows words."""
        return character_bigrams(run)

    def segment_question(self, run: str) -> list[str]:
        """A question's folded Han run's terms: a document's, unless segmenting a long one costs too much."""
        return self.segment(run)

    def tokenize(self, text: str) -> list[str]:
        """The terms ``text`` is indexed under, in order, repeats kept (BM25 needs term frequencies): from version
        2 each CJK character also as a character term (see :func:`character_term`)."""
        return _tokenize(text, self, document=True)

    def tokenize_query(self, text: str) -> list[str]:
        """The terms a question ``text`` is looked up by: a document's, but for its character terms, which stand
        (from version 2) for a CJK character standing alone in the question."""
        return _tokenize(text, self, document=False)


class SimpleTokenizer(_Versioned):
    """NFKC + case folding; words of letters and digits minus stopwords, English words stemmed; CJK as bigrams.

    Hyphens, underscores and other punctuation separate words ("state-of-the-art" -> state, art).
    """

    name = "simple"


HAN_SLICE = 512  # characters of a question's Han run segmented at once: more than real text holds between two marks


class JiebaTokenizer(_Versioned):
    """Like ``SimpleTokenizer``, but Chinese runs are folded to simplified characters (OpenCC ``t2s``) and
    segmented into words by ``jieba.lcut_for_search``.

    Folding makes traditional and simplified text find each other (帶薪年假 matches 带薪年假). Search mode also
    emits the shorter words inside long ones (中华人民共和国 -> 中华, 人民, 共和国, ...), so queries for parts of a
    compound still match. Kana and hangul runs stay bigrams: jieba would split them into single characters.
    """

    name = "jieba"

    def __init__(self, version: int = LATEST_VERSION) -> None:
        super().__init__(version)
        instead = "or choose the 'simple' tokenizer, which indexes Chinese as character bigrams"
        jieba = optional.require("jieba", "the 'jieba' keyword tokenizer", instead=instead)
        opencc = optional.require("opencc", "the 'jieba' keyword tokenizer", instead=instead)
        jieba.setLogLevel(logging.WARNING)
        self._cut: Callable[..., list[str]] = jieba.lcut_for_search
        self._to_simplified: Callable[[str], str] = opencc.OpenCC("t2s").convert

    def fold(self, run: str) -> str:
        return self._to_simplified(run)

    def segment(self, run: str) -> list[str]:
        """A document's run, whole (a word across a cut would be lost from the index); one longer than
        ``HAN_SLICE``, which no real sentence is, without jieba's HMM, whose cost is the square of the run's length
        (a chunk of 6,400 unpunctuated characters took 0.135 s): its dictionary words are found as ever, and words
        only the HMM finds stay characters, which a document indexes anyway."""
        return self._cut(run) if len(run) <= HAN_SLICE else self._cut(run, HMM=False)

    def segment_question(self, run: str) -> list[str]:
        """A question's run ``HAN_SLICE`` characters at a time: jieba's HMM copies its paths at every character, so
        a run cost the square of its length (32,768 characters: 4.4 s)."""
        return [word for start in range(0, len(run), HAN_SLICE) for word in self._cut(run[start : start + HAN_SLICE])]


def character_term(character: str) -> str:
    """The term under which a document holds each of its CJK characters, wherever it stands (version 2): a lone
    character in a question looks it up. Apart from the bigrams and words, so those rank as in version 1."""
    return CHARACTER_TERM + character


def keyword_length(terms: Sequence[str]) -> int:
    """A chunk's length for BM25: its terms less the character terms, so its length is version 1's."""
    return sum(not term.startswith(CHARACTER_TERM) for term in terms)


class TermBag(NamedTuple):
    """A chunk's terms as its postings keep them: each term's count, and the chunk's ``keyword_length``. A batch
    holds these, not the terms themselves: a character that folds into four (㍿, 株式会社) makes seven terms, and a
    megabyte of them held 7 million strings (650 MB)."""

    counts: Counter[str]
    length: int


def term_bag(terms: Sequence[str]) -> TermBag:
    return TermBag(Counter(terms), keyword_length(terms))


def _tokenize(text: str, tokenizer: _Versioned, document: bool) -> list[str]:
    """Shared scan, with the tokenizer's runs, folding and segmentation of Han runs; from version 2, a document's
    CJK characters each also as a character term, and a question's lone CJK character as one."""
    terms: list[str] = []
    characters = tokenizer.version > 1
    for match in runs(tokenizer.version).finditer(unicodedata.normalize("NFKC", text).casefold()):
        if match.lastgroup == "word":
            term = word_term(match.group(), tokenizer.version)
            if term:
                terms.append(term)
            continue
        run = tokenizer.fold(match.group()) if match.lastgroup == "han" else match.group()
        if characters and not document and len(run) == 1:
            terms.append(character_term(run))
            continue
        segment = tokenizer.segment if document else tokenizer.segment_question
        terms.extend(term for term in (segment(run) if match.lastgroup == "han" else character_bigrams(run))
                     if term.strip())
        if characters and document:
            terms.extend(map(character_term, run))
    return terms


def term_spans(text: str, terms: set[str], tokenizer: KeywordTokenizer) -> list[tuple[int, int, str]]:
    """``(start, end, term)`` for each stretch of ``text`` that ``tokenizer`` indexes as one of ``terms``, in order,
    for showing where a query matched. Words are matched whole; in a CJK run each occurrence of a CJK term is."""
    spans: list[tuple[int, int, str]] = []
    terms = {term.removeprefix(CHARACTER_TERM) for term in terms}
    cjk_terms = sorted((term for term in terms if re.fullmatch(f"[{CJK_CHARS}]+", term)), key=len, reverse=True)
    for match in runs(tokenizer.version).finditer(text):
        if match.lastgroup == "word":
            found = next((term for term in tokenizer.tokenize_query(match.group()) if term in terms), None)
            if found is not None:
                spans.append((match.start(), match.end(), found))
            continue
        run = unicodedata.normalize("NFKC", match.group())
        if match.lastgroup == "han":  # as indexed: traditional text marked for a simplified question
            run = folded if len(folded := tokenizer.fold(run)) == len(run) else run
        if len(run) != len(match.group()):  # offsets would not carry over; such runs are rare
            continue
        taken = [False] * len(run)
        for term in cjk_terms:  # longest first, so a word wins over the bigrams inside it
            at = run.find(term)
            while at >= 0:
                if not any(taken[at : at + len(term)]):
                    taken[at : at + len(term)] = [True] * len(term)
                    spans.append((match.start() + at, match.start() + at + len(term), term))
                at = run.find(term, at + 1)
    return sorted(spans)


_TOKENIZERS: dict[str, Callable[[int], KeywordTokenizer]] = {"simple": SimpleTokenizer, "jieba": JiebaTokenizer}


def keyword_tokenizer(name: str, version: int = LATEST_VERSION) -> KeywordTokenizer:
    """The keyword tokenizer called ``name``: "simple" (no dependencies) or "jieba" (Chinese word segmentation),
    in ``version`` (the latest unless an index was built with an older one)."""
    try:
        factory = _TOKENIZERS[name]
    except KeyError:
        raise ConfigurationError(
            f"Unknown keyword tokenizer {name!r}; valid names: {', '.join(sorted(_TOKENIZERS))}"
        ) from None
    return factory(version)


def for_scheme(tokenizer: KeywordTokenizer, scheme: str) -> KeywordTokenizer:
    """``tokenizer`` as an index recorded as ``scheme`` needs it: itself, or the same tokenizer in the recorded
    version (another process rebuilt the postings since it was chosen)."""
    return tokenizer if tokenizer.scheme == scheme else keyword_tokenizer(*parse_scheme(scheme))


def parse_scheme(scheme: str) -> tuple[str, int]:
    """(name, version) of a recorded ``scheme``: "simple" (version 1 recorded no version) or "simple/2"."""
    name, _, version = scheme.partition("/")
    return name, int(version) if version.isdigit() else 1
