"""The language of a question, coarsely: readers and keyword weights can be chosen per language."""

from __future__ import annotations

import re

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # a Han (Chinese) character
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LETTER = re.compile(r"[^\W\d_]")


def question_language(text: str) -> str | None:
    """``"ja"``, ``"ko"`` or ``"zh"`` when the question is written mostly in that script, else None.

    Kana or hangul decide Japanese and Korean; otherwise Han characters making up at least a third of the
    letters mean Chinese (an English question quoting one Chinese name stays English).
    """
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    letters = len(_LETTER.findall(text))
    han = len(HAN.findall(text))
    return "zh" if letters and han * 3 >= letters else None
