"""The part of a hit worth showing: the stretch of its text that holds the most query terms, with them marked.

A chunk runs to hundreds of words; showing its first lines hides the answer when it sits further on. As search
engines' highlighters do, the window with the most distinct query terms is shown (the start of the text when no
term matches, as for a hit found by meaning alone), cut at word boundaries. Windows are counted on the stretch they
show, context before the first term included, so a term that counted is never cut off. Text without spaces (Chinese,
a run of emoji) is never cut inside a character as a reader sees it: not before a combining accent, a joiner, a
variation selector or an emoji modifier, not after a zero-width joiner, not between the two letters of a flag (an
approximation of Unicode's grapheme clusters, enough for these; the ``regex`` package, which knows them all, is not
a dependency of the project).
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from kb.keywords import KeywordTokenizer, term_spans

CONTEXT_SHARE = 0.2  # of the window, shown before its first matched term
LONGEST_CLUSTER = 32  # code points a cut moves back at most to a character's start (longer is hostile text)
ZWJ = "\u200d"  # zero-width joiner: the emoji on either side form one character


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


def snippet(text: str, terms: set[str], tokenizer: KeywordTokenizer, width: int = 300) -> Snippet:
    """The window of about ``width`` characters of ``text`` that holds the most distinct query ``terms`` (the
    query's ``tokenizer.tokenize_query``, made once for all its hits: a long Chinese query takes seconds)."""
    spans = term_spans(text, terms, tokenizer)
    if len(text) <= width:
        return Snippet(text, [(start, end) for start, end, _ in spans])
    # Each matched term is tried as the first of a window: shown from a little before it (less when the terms that
    # follow within ``width`` need the room), and scored on the terms the window shows.
    # The spans do not overlap, so their starts and their ends both ascend: what a window holds is found by
    # bisection, not by scanning every span again for each (a 6,400-character Chinese chunk matching one character
    # everywhere took 3 s a hit).
    starts, stops = [start for start, _, _ in spans], [stop for _, stop, _ in spans]
    (begin, end), best = _window(text, 0, width), (0, 0)
    for first, start in enumerate(starts):
        last = bisect_right(stops, start + width, lo=first) - 1
        reach = stops[last] if last >= first else start  # (a span ends after it starts)
        context = min(int(width * CONTEXT_SHARE), width - (reach - start))
        window = _window(text, max(0, start - context), width)
        inside = [term for _, _, term in spans[bisect_left(starts, window[0]) : bisect_right(stops, window[1])]]
        if (len(set(inside)), len(inside)) > best:
            (begin, end), best = window, (len(set(inside)), len(inside))
    marks = [(start - begin, stop - begin) for start, stop, _ in spans if start >= begin and stop <= end]
    return Snippet(text[begin:end].strip(), _shift(marks, text[begin:end]), before=begin > 0, after=end < len(text))


def _window(text: str, at: int, width: int) -> tuple[int, int]:
    """The stretch of about ``width`` characters shown from ``at``, cut at word boundaries where there are any and
    never inside a character as a reader sees it."""
    begin = _character_start(text, _word_start(text, at))
    return begin, _character_start(text, _word_end(text, min(len(text), begin + width)))


def _character_start(text: str, at: int) -> int:
    """``at`` moved back to the start of the user-perceived character (grapheme cluster) it falls inside."""
    floor = max(0, at - LONGEST_CLUSTER)
    while floor < at < len(text) and (_extends(text[at]) or text[at - 1] == ZWJ or _inside_flag(text, at)):
        at -= 1
    return at


def _extends(char: str) -> bool:
    """A code point that belongs with the one before it: a combining mark (accents, vowel signs, variation
    selectors), a joiner, an emoji modifier (skin tone) or a tag (subdivision flags)."""
    return unicodedata.category(char) in ("Mn", "Mc", "Me") or char == ZWJ or "\U0001f3fb" <= char <= "\U0001f3ff" \
        or "\U000e0020" <= char <= "\U000e007f"


def _inside_flag(text: str, at: int) -> bool:
    """``at`` falls between the two regional indicators of one flag: an odd number of them run up to it."""
    if not _regional(text[at]):
        return False
    run = 0
    while at - run > 0 and _regional(text[at - run - 1]):
        run += 1
    return run % 2 == 1


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


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
