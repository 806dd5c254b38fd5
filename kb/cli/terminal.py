"""What reaches a terminal: text from files made safe to print, and emphasis only where a terminal shows it.

File names and document text are untrusted: an escape sequence could recolour or clear the screen, a newline
could forge a report line, a bidi override could show a name backwards. ``safe`` makes each such character visible
as an escape instead; ``--json`` output is exact and never goes through it.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

# C0 and C1 controls, DEL, and the invisible direction and line/paragraph separator characters.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_BOLD, _RESET = "\033[1m", "\033[0m"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """``text`` with every control, direction and separator character shown as an escape (``\\n``, ``\\x1b``)."""
    return _UNSAFE.sub(_escape, text)


def one_line(text: str) -> str:
    """Document text as one safe line: runs of white space (newlines included) become one space."""
    return safe(" ".join(text.split()))


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


class Emphasis:
    """Marks emphasised text in bold on a terminal, with ``before``/``after`` markers elsewhere (or not at all)."""

    def __init__(self, terminal: bool, before: str = "", after: str = "") -> None:
        self.before, self.after = (_BOLD, _RESET) if terminal else (before, after)

    def __call__(self, text: str) -> str:
        return f"{self.before}{text}{self.after}" if text and self.before else text
