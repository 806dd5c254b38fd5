"""Whether what a user gave is text: Python strings can hold lone UTF-16 surrogates that no tokenizer, database or
file takes (a byte that is not UTF-8 in a command-line argument, kept by Python as ``\\udcff``; a JSON escape such as
``\\ud800`` alone), so they are refused where they come in, in one line, not by a library deep inside."""

from __future__ import annotations

import json
from typing import Any

NOT_TEXT = ("a lone UTF-16 surrogate (a byte that is not UTF-8 on the command line, or an escape such as \\ud800 "
            "alone), which is not text")


def is_text(value: Any) -> bool:
    """Whether every string in ``value`` (a string, or parsed JSON) is text, without a lone surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
