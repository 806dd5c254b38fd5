"""The language of a question, coarsely: readers and keyword weights can be chosen per language."""

from __future__ import annotations

import re

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # a Han (Chinese) character
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_CJK = re.compile(f"{HAN.pattern}|{_KANA.pattern}|{_HANGUL.pattern}")
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters: a word in a script written with spaces (Latin, Cyrillic...)


def question_language(text: str) -> str | None:
    """``"ja"``, ``"ko"`` or ``"zh"`` when the question is written mostly in that script, else None.

    Han, kana and hangul characters are counted one by one against the words of other scripts (a word such as
    "PostgreSQL" is one unit, as a Han character is about one): Japanese when the question has kana and at least
    as many kana and Han characters as other words, Korean likewise with hangul, Chinese when it has at least as
    many Han characters as other words ("PostgreSQL 怎么备份" is Chinese; an English question quoting a Chinese
    name or a Japanese dish stays English).
    """
    words = len(_WORD.findall(_CJK.sub(" ", text)))
    han = len(HAN.findall(text))
    kana = len(_KANA.findall(text))
    hangul = len(_HANGUL.findall(text))
    if kana and kana + han >= words:
        return "ja"
    if hangul and hangul + han >= words:
        return "ko"
    return "zh" if han and han >= words else None
