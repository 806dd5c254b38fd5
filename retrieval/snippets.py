"""The part of a hit worth showing: the stretch of its text that holds the most query terms, with them marked.

A chunk runs to hundreds of words; showing its first lines hides the answer when it sits further on. As search
engines' highlighters do, the window with the most distinct query terms is shown (the start of the text when no
term matches, as for a hit found by meaning alone), cut at word boundaries. Windows are counted on the stretch they
show, context before the first term included, so a term that counted is never cut off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kb.keywords import KeywordTokenizer, term_spans

CONTEXT_SHARE = 0.2  # of the window, shown before its first matched term


@dataclass(frozen=True)
class Snippet:
    """``text`` is a stretch of the hit's text; ``marks`` are the query terms' spans inside it; ``before``/``after``
    say whether the hit's text goes on beyond it."""

    text: str
    marks: list[tuple[int, int]] = field(default_factory=list)
    before: bool = False
    after: bool = False

    def render(self, mark: Callable[[str], str] | None = None, ellipsis: str = "…") -> str:
        """The snippet as one string, each marked term passed through ``mark`` when given."""
        pieces, cursor = [], 0
        for start, end in self.marks if mark is not None else []:
            pieces += [self.text[cursor:start], mark(self.text[start:end])]
            cursor = end
        pieces.append(self.text[cursor:])
        return (ellipsis if self.before else "") + "".join(pieces) + (ellipsis if self.after else "")


def snippet(text: str, query: str, tokenizer: KeywordTokenizer, width: int = 300) -> Snippet:
    """The window of about ``width`` characters of ``text`` that holds the most distinct terms of ``query``."""
    spans = term_spans(text, set(tokenizer.tokenize(query)), tokenizer)
    if len(text) <= width:
        return Snippet(text, [(start, end) for start, end, _ in spans])
    # Each matched term is tried as the first of a window: shown from a little before it (less when the terms that
    # follow within ``width`` need the room), and scored on the terms the window shows.
    (begin, end), best = _window(text, 0, width), (0, 0)
    for first, (start, _, _) in enumerate(spans):
        reach = max([stop for _, stop, _ in spans[first:] if stop <= start + width], default=start)
        context = min(int(width * CONTEXT_SHARE), width - (reach - start))
        window = _window(text, max(0, start - context), width)
        inside = [term for left, right, term in spans if left >= window[0] and right <= window[1]]
        if (len(set(inside)), len(inside)) > best:
            (begin, end), best = window, (len(set(inside)), len(inside))
    marks = [(start - begin, stop - begin) for start, stop, _ in spans if start >= begin and stop <= end]
    return Snippet(text[begin:end].strip(), _shift(marks, text[begin:end]), before=begin > 0, after=end < len(text))


def _window(text: str, at: int, width: int) -> tuple[int, int]:
    """The stretch of about ``width`` characters shown from ``at``, cut at word boundaries where there are any."""
    begin = _word_start(text, at)
    return begin, _word_end(text, min(len(text), begin + width))


def _word_start(text: str, at: int) -> int:
    """``at`` moved forward to the start of a word (unchanged inside text without spaces, such as Chinese)."""
    space = text.find(" ", at, at + 30)
    return at if at == 0 or space < 0 else space + 1


def _word_end(text: str, at: int) -> int:
    """``at`` moved back to the end of a word (unchanged inside text without spaces)."""
    space = text.rfind(" ", max(0, at - 30), at)
    return at if at >= len(text) or space < 0 else space


def _shift(marks: list[tuple[int, int]], raw: str) -> list[tuple[int, int]]:
    """Marks moved by what ``strip`` removes from the start of ``raw``."""
    lead = len(raw) - len(raw.lstrip())
    return [(start - lead, end - lead) for start, end in marks]
