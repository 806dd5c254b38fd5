"""Keyword tokenisation for the BM25 index: text in, index terms out.

The keyword index itself lives in SQL; this module only decides what a term is, so documents and queries are
tokenised the same way. A tokenizer's ``name`` lets an index record which scheme built it: terms from different
schemes do not match, so changing it means re-indexing.

CJK text has no spaces between words. ``SimpleTokenizer`` indexes overlapping character bigrams, which needs no
dictionary; ``JiebaTokenizer`` segments Chinese into words with jieba (the ``chinese`` extra).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from typing import Protocol, runtime_checkable

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

_RUNS = re.compile(
    rf"(?P<han>[{HAN_CHARS}]+)"
    rf"|(?P<kana>[{KANA_HANGUL_CHARS}]+)"
    rf"|(?P<word>[^\W_{CJK_CHARS}]+(?:['’][^\W_{CJK_CHARS}]+)*)"
)
_LATIN_LETTERS = re.compile(r"[a-z]+")


@runtime_checkable
class KeywordTokenizer(Protocol):
    """Turns text into BM25 terms; ``name`` identifies the scheme an index was built with."""

    name: str

    def tokenize(self, text: str) -> list[str]: ...


def plural_stem(word: str) -> str:
    """Harman's S-stemmer: fold English plurals onto their singular ("studies" -> "study", "cats" -> "cat").

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


def word_term(word: str) -> str | None:
    """The index term for one case-folded word, or None for a stopword.

    A possessive "'s" is dropped and other apostrophes are removed ("o'neill" -> "oneill", "don't" -> "dont"), so
    spellings with and without the apostrophe meet.
    """
    word = word.replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    word = word.replace("'", "")
    if word in ENGLISH_STOPWORDS:
        return None
    return plural_stem(word)


def character_bigrams(run: str) -> list[str]:
    """Overlapping bigrams of a CJK run ("中华人民" -> 中华, 华人, 人民); a single character stays a unigram."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


class SimpleTokenizer:
    """NFKC + case folding; words of letters and digits minus stopwords, plurals folded; CJK as bigrams.

    Hyphens, underscores and other punctuation separate words ("state-of-the-art" -> state, art).
    """

    name = "simple"

    def tokenize(self, text: str) -> list[str]:
        """The terms of ``text`` in order, repeats kept (BM25 needs term frequencies)."""
        return _tokenize(text, han=character_bigrams)


class JiebaTokenizer:
    """Like ``SimpleTokenizer``, but Chinese runs are folded to simplified characters (OpenCC ``t2s``) and
    segmented into words by ``jieba.lcut_for_search``.

    Folding makes traditional and simplified text find each other (帶薪年假 matches 带薪年假). Search mode also
    emits the shorter words inside long ones (中华人民共和国 -> 中华, 人民, 共和国, ...), so queries for parts of a
    compound still match. Kana and hangul runs stay bigrams: jieba would split them into single characters.
    """

    name = "jieba"

    def __init__(self) -> None:
        instead = "or choose the 'simple' tokenizer, which indexes Chinese as character bigrams"
        jieba = optional.require("jieba", "the 'jieba' keyword tokenizer", instead=instead)
        opencc = optional.require("opencc", "the 'jieba' keyword tokenizer", instead=instead)
        jieba.setLogLevel(logging.WARNING)
        self._cut: Callable[[str], list[str]] = jieba.lcut_for_search
        self._to_simplified: Callable[[str], str] = opencc.OpenCC("t2s").convert

    def tokenize(self, text: str) -> list[str]:
        """The terms of ``text`` in order, repeats kept (BM25 needs term frequencies)."""
        return _tokenize(text, han=lambda run: self._cut(self._to_simplified(run)))


def _tokenize(text: str, han: Callable[[str], list[str]]) -> list[str]:
    """Shared scan: ``han`` turns a run of Han characters into terms; everything else is handled here."""
    terms: list[str] = []
    for match in _RUNS.finditer(unicodedata.normalize("NFKC", text).casefold()):
        if match.lastgroup == "word":
            term = word_term(match.group())
            if term:
                terms.append(term)
        elif match.lastgroup == "han":
            terms.extend(term for term in han(match.group()) if term.strip())
        else:
            terms.extend(character_bigrams(match.group()))
    return terms


def term_spans(text: str, terms: set[str], tokenizer: KeywordTokenizer) -> list[tuple[int, int, str]]:
    """``(start, end, term)`` for each stretch of ``text`` that ``tokenizer`` indexes as one of ``terms``, in order,
    for showing where a query matched. Words are matched whole; in a CJK run each occurrence of a CJK term is."""
    spans: list[tuple[int, int, str]] = []
    cjk_terms = sorted((term for term in terms if re.fullmatch(f"[{CJK_CHARS}]+", term)), key=len, reverse=True)
    for match in _RUNS.finditer(text):
        if match.lastgroup == "word":
            found = next((term for term in tokenizer.tokenize(match.group()) if term in terms), None)
            if found is not None:
                spans.append((match.start(), match.end(), found))
            continue
        run = unicodedata.normalize("NFKC", match.group())
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


_TOKENIZERS: dict[str, Callable[[], KeywordTokenizer]] = {"simple": SimpleTokenizer, "jieba": JiebaTokenizer}


def keyword_tokenizer(name: str) -> KeywordTokenizer:
    """The keyword tokenizer called ``name``: "simple" (no dependencies) or "jieba" (Chinese word segmentation)."""
    try:
        factory = _TOKENIZERS[name]
    except KeyError:
        raise ConfigurationError(
            f"Unknown keyword tokenizer {name!r}; valid names: {', '.join(sorted(_TOKENIZERS))}"
        ) from None
    return factory()
