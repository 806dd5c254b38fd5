"""Whether what a user gave is text: Python strings can hold lone UTF-16 surrogates that no tokenizer, database or
file takes (a byte that is not UTF-8 in a command-line argument, kept by Python as ``\\udcff``; a JSON escape such as
``\\ud800`` alone), so they are refused where they come in, in one line, not by a library deep inside."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

NOT_TEXT = ("a lone UTF-16 surrogate (a byte that is not UTF-8 on the command line, or an escape such as \\ud800 "
            "alone), which is not text")


def is_text(value: Any) -> bool:
    """Whether every string in ``value`` (a string, or parsed JSON) is text, without a lone surrogate."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    except RecursionError:  # JSON parsed just within the recursion limit, which encoding it goes one level past
        return all(_encodes(string) for string in _strings(value))
    return True


def _strings(value: Any) -> Iterator[str]:
    """Every string in parsed JSON, keys too, however deep, without recursion."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item


def _encodes(string: str) -> bool:
    try:
        string.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_unicode(text: str) -> str:
    """``text`` with each lone surrogate U+FFFD and each pair joined into its character: what UTF-7 or a JSON
    escape can spell, and no tokenizer, database or terminal takes."""
    return text if _encodes(text) else text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def storable(message: str) -> str:
    """``message`` (a failure's reason, in whatever a library raised) as every database stores it: NUL, which
    PostgreSQL's text refuses, and lone surrogates, which no database encodes, become U+FFFD."""
    return valid_unicode(message.replace("\x00", "\ufffd"))
