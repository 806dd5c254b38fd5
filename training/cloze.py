"""Cloze questions from a company's own passages: weak supervision for the reader where nobody wrote questions.

In a sentence of a passage, a date, a number with its unit, a name or a quoted title is replaced by a question
word ("when", "how many", "where", "what"; 什么时候, 多少, 什么 in Chinese), the clause around it becomes the
question and the blanked words its answer in the passage, as in Lewis et al., "Unsupervised Question Answering by
Cloze Translation" (2019). The questions are noisy (a tenth of an English question's words are dropped, as there),
so they teach the answer head to align a question with its sentence and pick the missing span: a start for a
reader with no questions at all, or a first stage before training on a few real ones.

Such a question's sentence is in its passage, so finding it is easy. A recurring-span question (``recurring``, after
Ram et al., "Few-Shot Question Answering by Pretraining Span Selection", 2021) is asked only where the answer occurs
again outside its sentence, and that sentence is taken out of the passage: the reader must find the other occurrence
from the topic around it, as a real question's paraphrase makes it do.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from answering.squad_eval import SquadQuestion, SquadSet
from training.kb_documents import named_documents

if TYPE_CHECKING:  # the store (SQLAlchemy, FAISS) is imported only where a knowledge base is read
    from kb.storage.store import StoredDocument

MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
NAME_WORD = rf"(?!(?:{MONTHS})\b)[A-Z][\w'’.-]*\w"  # a capitalised word that is not a month
NAME = rf"{NAME_WORD}(?: (?:(?:of|the|de|la|von|van|and|for) )?{NAME_WORD}){{0,3}}"
UNITS = "million|billion|thousand|percent|people|km|kilometres|miles|metres|years|species|members|countries|copies"
ENGLISH_RULES = [  # (question word, pattern whose group 1 is the answer; the whole match is replaced)
    ("when", rf"\b(?:(?:in|on) )?((?:\d{{1,2}} )?(?:{MONTHS})(?: \d{{1,2}})?,? \d{{4}})\b"),
    ("when", r"\b(?:(?:in|on|since|by) )?((?:1[5-9]|20)\d{2})\b(?![\d,.])"),
    ("how many", rf"(\$?\b\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?(?: (?:{UNITS}))?|\$?\b\d+(?:\.\d+)? (?:{UNITS}|%))"),
    ("where", rf"\b(?:in|at|from|near) ((?:the )?{NAME})"),
    ("what", rf"(?<=[a-z,] )({NAME})"),
]
CHINESE_UNITS = "元|美元|人|名|个|家|次|年|天|小时|分钟|公里|千米|米|吨|件|台|户|岁|项|所|座|条|种|位|平方米|公顷"
CHINESE_RULES = [
    ("什么时候", r"((?:\d{4}|[一二三四五六七八九〇零]{4})年(?:\d{1,2}月)?(?:\d{1,2}[日号])?)"),
    # possessive digits: a long run of digits without a unit after it fails at once instead of backtracking
    ("多少", rf"(?<!\d)((?!\d{{4}}年)\d++(?:[.,]\d++)*+(?:[万亿千百])?(?:%|％|{CHINESE_UNITS}))"),
    ("什么", r"《([^《》]{2,30})》"),
    ("什么", r"“([^“”]{2,20})”"),
]
CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")
CHINESE_SENTENCE = re.compile(r"(?<=[。！？；])")
ENGLISH_CLAUSE = re.compile(r"[,;:()]\s*")
CHINESE_CLAUSE = re.compile(r"[，、；：（）]")
MIN_SENTENCE_WORDS = 6  # shorter English sentences (and Chinese ones under 12 characters) make no question
MIN_QUESTION_WORDS = 6
CONTEXT_WORDS = 12  # words kept either side of the question word
RECURRING_MIN_CHARACTERS = 3  # a shorter recurring answer ("US", "12") is found again by chance
DROPPED = 0.1  # share of an English question's other words dropped (noise, so that questions are not sentences)


@dataclass(frozen=True)
class Blank:
    """A possible answer in a sentence: the question word, the characters it replaces, and the answer's span."""

    word: str
    cut: tuple[int, int]
    answer: tuple[int, int]


def _compiled(rules: list[tuple[str, str]]) -> list[tuple[str, re.Pattern[str]]]:
    return [(word, re.compile(pattern)) for word, pattern in rules]


ENGLISH = _compiled(ENGLISH_RULES)
CHINESE = _compiled(CHINESE_RULES)


def blanks(sentence: str) -> list[Blank]:
    """Every date, number, name or title of ``sentence`` that can be asked for (none at its very start: the
    question would have no words before its question word to anchor it)."""
    rules = CHINESE if CJK.search(sentence) else ENGLISH
    found = []
    for word, pattern in rules:
        for match in pattern.finditer(sentence):
            start, end = match.span(1)
            if end - start >= 2 and start > 0:
                found.append(Blank(word, match.span(), (start, end)))
    return found


def sentences(text: str) -> Iterator[tuple[int, str]]:
    """(offset, sentence) of each sentence of ``text`` long enough to ask about."""
    chinese = bool(CJK.search(text))
    position = 0
    for part in (CHINESE_SENTENCE if chinese else ENGLISH_SENTENCE).split(text):
        start = text.find(part, position)
        position = start + len(part)
        if (len(part.strip()) >= 12) if chinese else len(part.split()) >= MIN_SENTENCE_WORDS:
            yield start, part


def question_for(sentence: str, blank: Blank, rng: random.Random) -> str:
    """The clause of ``sentence`` around ``blank`` with its question word in place of the answer, grown to at least
    six words (or twelve characters), cut to twelve words either side, and in English with some words dropped."""
    before, after = sentence[: blank.cut[0]], sentence[blank.cut[1] :]
    if CJK.search(sentence):
        left, right = CHINESE_CLAUSE.split(before), CHINESE_CLAUSE.split(after)
        text = left[-1] + blank.word + right[0]
        if len(text) < 12:
            text = "，".join(left[-2:]) + blank.word + "，".join(right[:2])
        return text.rstrip("。！？；，") + "？"
    left, right = ENGLISH_CLAUSE.split(before), ENGLISH_CLAUSE.split(after)
    words_left, words_right = left[-1].split(), right[0].split()
    grown = 1
    while len(words_left) + len(words_right) < MIN_QUESTION_WORDS and (grown < len(left) or grown < len(right)):
        words_left = (left[-1 - grown].split() if grown < len(left) else []) + words_left
        words_right += right[grown].split() if grown < len(right) else []
        grown += 1
    words = words_left[-CONTEXT_WORDS:] + [blank.word] + words_right[:CONTEXT_WORDS]
    kept = [w for w in words if w == blank.word or rng.random() >= DROPPED]
    text = " ".join(kept).rstrip(" .!?")
    return text[:1].upper() + text[1:] + "?"


@dataclass(frozen=True)
class _Option:
    """One question a passage can give: its sentence, its blank, and the context it is asked of with the answer's
    start there."""

    sentence: str
    blank: Blank
    context: str
    start: int


def _options(text: str, recurring: bool) -> list[_Option]:
    """Every question ``text`` can give; with ``recurring``, only answers found again (as whole words) outside their
    sentence, asked of the text without that sentence."""
    found = []
    for offset, sentence in sentences(text):
        for blank in blanks(sentence):
            if not recurring:
                found.append(_Option(sentence, blank, text, offset + blank.answer[0]))
                continue
            answer = sentence[blank.answer[0] : blank.answer[1]]
            context = text[:offset] + text[offset + len(sentence) :]
            again = re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", context)
            if again is not None and len(answer) >= RECURRING_MIN_CHARACTERS:
                found.append(_Option(sentence, blank, context, again.start()))
    return found


def cloze_questions(passages: Iterable[tuple[str, str]], *, per_passage: int = 1, seed: int = 0,
                    limit: int | None = None, recurring: bool = False) -> tuple[SquadSet, Counter[str]]:
    """Up to ``per_passage`` cloze questions (or ``recurring``-span ones) for each (group, text) passage, as a SQuAD
    1.1 set whose titles are the groups (so that a validation split keeps a document's passages together), with the
    passages that gave none counted by reason."""
    paragraphs: list[tuple[str, str]] = []
    questions: list[SquadQuestion] = []
    skipped = Counter[str]()
    for group, text in passages:
        options = _options(text, recurring)
        if not options:
            skipped["passage without an answer found outside its sentence" if recurring
                    else "passage without a date, number, name or title to ask about"] += 1
            continue
        rng = random.Random(f"{seed}:{text}")  # per passage: one passage's questions never move another's
        for option in rng.sample(options, min(per_passage, len(options))):
            if not paragraphs or paragraphs[-1] != (group, option.context):
                paragraphs.append((group, option.context))
            answer = option.sentence[option.blank.answer[0] : option.blank.answer[1]]
            questions.append(SquadQuestion(id=f"cloze-{len(questions)}",
                                           question=question_for(option.sentence, option.blank, rng),
                                           answers=[answer], answer_starts=[option.start],
                                           paragraph=len(paragraphs) - 1))
        if limit is not None and len(questions) >= limit:
            break
    return SquadSet(version="1.1", paragraphs=paragraphs, questions=questions), skipped


def kb_passages(documents: Iterable[StoredDocument]) -> Iterator[tuple[str, str]]:
    """(document name, chunk text) for every text chunk of a knowledge base's documents (see ``named_documents``)."""
    for name, document in named_documents(documents):
        for chunk in document.chunks:
            if chunk.text.strip():
                yield name, chunk.text
