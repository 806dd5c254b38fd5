"""The reading order of text OCR found on a page: which way the page is turned, which text is set in columns, and
its lines, from the boxes the recogniser returns."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from statistics import median

from ingestion.loaders.base import clean_text
from kb.keywords import CJK_CHARS

_CJK = re.compile(rf"[{CJK_CHARS}]")
SIDEWAYS = 1.5  # a box this many times taller than wide is a line turned sideways (rapidocr turns it to read it)
SIDEWAYS_SHARE = 0.8  # of a page's characters in tall boxes, for the page to be sideways: an upright chart's or
# table's turned labels can be most of its text, never nearly all of it
GUTTER = 0.5  # a gap across lines at least this many line heights wide may be the gutter between two columns
COLUMN_LINES = 3  # lines with text on both sides of a gutter, for the text beside it to be set in columns
COLUMN_WIDTH = 10  # the median width of a column's pieces, in line heights: narrower, and they are a table's cells
CONTINUED = 0.5  # a line less than this many line heights below the one before continues it (no new section)
COLUMN_SPACING = 0.7  # a column's lines are mostly less far apart than this many line heights (lines 1.8 times
# their font size apart, Word's "1.5 lines"); a table's rows and a form's fields lie further apart
SEARCH_STEPS = 20  # lines a page's search for columns may grow its runs by, per line of the page: a run that is
# no columns is searched again from its next line, which a big table would make quadratic

MAX_SKEW = 10.0  # degrees: a page scanned more askew than this is not straightened (it is turned, or not text)
MIN_SKEW = 0.3  # degrees: less is not worth straightening

Gutter = tuple[float, float]  # left and right edge of an empty strip between columns
Quad = Sequence[Sequence[float]]  # a box's corners as the recogniser gives them, top left first, clockwise


@dataclass(frozen=True, slots=True)
class TextBox:
    """One recognised piece of text and its bounds in the image (pixels, y downwards)."""

    text: str
    left: float
    top: float
    bottom: float
    right: float
    upside_down: bool = False  # the line classifier found it upside down once rapidocr had turned it (if tall)

    @property
    def upright(self) -> bool:
        """Not as tall as rapidocr turns a line for reading (1.5 times its width): a line of a page that is not
        sideways, or a short word."""
        return self.bottom - self.top < SIDEWAYS * (self.right - self.left)

    def turned(self, orientation: int) -> TextBox:
        """The box as it lies once the page is turned upright, on a page whose text was turned ``orientation``
        degrees counter-clockwise (90: lines run bottom to top). Only relative places count, so no page size."""
        if orientation == 90:
            return replace(self, left=-self.bottom, top=self.left, bottom=self.right, right=-self.top)
        if orientation == 180:
            return replace(self, left=-self.right, top=-self.bottom, bottom=-self.top, right=-self.left)
        if orientation == 270:
            return replace(self, left=self.top, top=-self.right, bottom=-self.left, right=self.bottom)
        return self


def straightened(quads: Sequence[Quad]) -> list[list[tuple[float, float]]]:
    """The corners turned about the origin so that the page's lines run level: a page scanned a little askew has
    its lines slope across a column's gutter and into the line below. The skew is the median slope of the top
    edges of boxes at least twice as wide as tall, if it lies between ``MIN_SKEW`` and ``MAX_SKEW`` degrees."""
    slopes = []
    for quad in quads:
        (x0, y0), (x1, y1) = quad[0][:2], quad[1][:2]
        height = max(abs(quad[3][1] - quad[0][1]), 1.0)
        if x1 - x0 >= 2 * height:
            slopes.append(math.degrees(math.atan2(y1 - y0, x1 - x0)))
    skew = median(slopes) if slopes else 0.0
    if not MIN_SKEW <= abs(skew) <= MAX_SKEW:
        return [[(float(x), float(y)) for x, y, *_ in quad] for quad in quads]
    cos, sin = math.cos(math.radians(skew)), math.sin(math.radians(skew))
    return [[(x * cos + y * sin, y * cos - x * sin) for x, y, *_ in quad] for quad in quads]


def page_orientation(boxes: Sequence[TextBox]) -> int:
    """How far (degrees, counter-clockwise) a page's text is turned. Sideways when nearly all its characters
    (``SIDEWAYS_SHARE``, in boxes of two or more) are in tall boxes; which way, and whether an upright page is
    upside down, by whether most of those boxes (the tall ones, or the others) were read upside down: rapidocr
    turns a tall line a quarter counter-clockwise, which puts a page turned 90 degrees upside down."""
    voting = [box for box in boxes if len(box.text) > 1]  # a lone "1" or "I" is tall on any page
    tall = [box for box in voting if not box.upright]
    characters = sum(len(box.text) for box in voting)
    sideways = bool(tall) and sum(len(box.text) for box in tall) >= SIDEWAYS_SHARE * characters
    lines = tall if sideways else [box for box in voting if box.upright]  # turned labels of a chart do not vote
    flipped = 2 * sum(box.upside_down for box in lines) > len(lines)
    if sideways:
        return 90 if flipped else 270
    return 180 if flipped else 0


def reading_order(boxes: Sequence[TextBox], orientation: int = 0) -> str:
    """The boxes' text on the page turned upright (``orientation``: see ``page_orientation``): lines top to bottom,
    each left to right, except where text is set in columns, read a column at a time, left to right.

    Boxes that overlap vertically by at least half the smaller height share a line. Columns are runs of lines
    with a common empty strip (a gutter) that text of at least ``COLUMN_LINES`` lines lies on both sides of, in
    pieces ``COLUMN_WIDTH`` line heights wide or more, lines mostly closer than ``COLUMN_SPACING`` line heights:
    a table's cells (narrower) or rows and a form's fields (further apart) are read row by row. Words on a line are
    joined by a space, except between two CJK characters."""
    upright = [box.turned(orientation) for box in boxes]
    lines = _lines(upright)
    height = median(box.bottom - box.top for box in upright) if upright else 0.0
    texts: list[str] = []
    done = 0
    for first, last, gutters in _column_runs(lines, height):
        texts.extend(_line_text(line) for line in lines[done:first])
        for column in _columns([box for line in lines[first:last + 1] for box in line], gutters):
            texts.extend(_line_text(line) for line in _lines(column))
        done = last + 1
    texts.extend(_line_text(line) for line in lines[done:])
    return clean_text("\n".join(texts))


def _lines(boxes: Sequence[TextBox]) -> list[list[TextBox]]:
    """Boxes grouped into lines top to bottom (vertical overlap of half the smaller height), each left to right."""
    lines: list[list[TextBox]] = []
    line_top = line_bottom = 0.0
    for box in sorted(boxes, key=lambda box: (box.top + box.bottom) / 2):
        overlap = min(box.bottom, line_bottom) - max(box.top, line_top)
        if lines and overlap >= 0.5 * min(box.bottom - box.top, line_bottom - line_top):
            lines[-1].append(box)
            line_top, line_bottom = min(line_top, box.top), max(line_bottom, box.bottom)
        else:
            lines.append([box])
            line_top, line_bottom = box.top, box.bottom
    return [sorted(line, key=lambda box: box.left) for line in lines]


def _line_text(line: list[TextBox]) -> str:
    """Words of one line joined by spaces, but CJK characters that meet across a gap are written together."""
    text = ""
    for word in (box.text.strip() for box in line):
        if not word:
            continue
        if text and not (_CJK.match(text[-1]) and _CJK.match(word[0])):
            text += " "
        text += word
    return text


def _column_runs(lines: list[list[TextBox]], height: float) -> Iterator[tuple[int, int, list[Gutter]]]:
    """(first, last line, gutters) of each run of lines set in columns, top to bottom. A run grows from a line with
    a gap while some gutter stays empty; it keeps the lines from its first to its last that text lies on both sides
    of, and the one-sided lines before and after those that continue them without a section's space between."""
    least = GUTTER * height
    start = floor = 0
    steps = SEARCH_STEPS * len(lines)
    while start < len(lines) and steps > 0:
        free, end = _gaps(lines[start], least), start
        while free and end + 1 < len(lines) and steps > 0:
            narrower = _narrowed(free, lines[end + 1], least)
            if not narrower:
                break
            free, end, steps = narrower, end + 1, steps - 1
        reaches = {gutter: max(index for index in range(start, end + 1) if _beside(lines[index], gutter))
                   for gutter in free}  # the line start's gap held each gutter: text lies on both sides there
        gutters = [gutter for gutter in free if _set_in_columns(lines[start:reaches[gutter] + 1], gutter, height)]
        if not gutters:  # searched again from the next line: a table's rows above columns end a run's medians
            start += 1
            continue
        first, last = start, max(reaches[gutter] for gutter in gutters)
        while first < last and _space(lines[first], lines[first + 1]) >= COLUMN_SPACING * height:
            first += 1  # a table's rows just above the columns are not part of them
        while first > floor and _clear(lines[first - 1], gutters) and _continues(lines[first - 1], lines[first],
                                                                                   height):
            first -= 1
        while last < end and _continues(lines[last], lines[last + 1], height):
            last += 1
        yield first, last, gutters
        start = floor = last + 1


def _gaps(line: list[TextBox], least: float) -> list[Gutter]:
    """The gaps at least ``least`` wide between the boxes of a line (which may overlap one another)."""
    gaps: list[Gutter] = []
    reach = line[0].right
    for box in line[1:]:
        if box.left - reach >= least:
            gaps.append((reach, box.left))
        reach = max(reach, box.right)
    return gaps


def _narrowed(free: list[Gutter], line: list[TextBox], least: float) -> list[Gutter]:
    """The parts of ``free`` that no box of ``line`` covers, at least ``least`` wide."""
    for box in line:
        free = [part for left, right in free
                for part in ((left, min(right, box.left)), (max(left, box.right), right))
                if part[1] - part[0] >= least]
    return free


def _set_in_columns(lines: list[list[TextBox]], gutter: Gutter, height: float) -> bool:
    """Whether text lies on both sides of ``gutter`` on ``COLUMN_LINES`` lines or more, in pieces of a median width
    of ``COLUMN_WIDTH`` line heights or more, and lines mostly less than ``COLUMN_SPACING`` line heights apart, on
    each side: lines of prose, not a table's cells, rows or a form's fields."""
    if sum(_beside(line, gutter) for line in lines) < COLUMN_LINES:
        return False
    sides = ([box for line in lines for box in line if box.right <= gutter[0]],
             [box for line in lines for box in line if box.left >= gutter[1]])
    return all(median(box.right - box.left for box in side) >= COLUMN_WIDTH * height
               and _spacing(_lines(side)) < COLUMN_SPACING * height for side in sides)


def _spacing(lines: list[list[TextBox]]) -> float:
    """The median space between consecutive lines (0 for a single line)."""
    spaces = [_space(above, below) for above, below in zip(lines, lines[1:])]
    return median(spaces) if spaces else 0.0


def _beside(line: list[TextBox], gutter: Gutter) -> bool:
    """Whether the line has text on both sides of ``gutter``."""
    return any(box.right <= gutter[0] for box in line) and any(box.left >= gutter[1] for box in line)


def _clear(line: list[TextBox], gutters: list[Gutter]) -> bool:
    """Whether no box of the line reaches into a gutter."""
    return all(box.right <= left or box.left >= right for box in line for left, right in gutters)


def _continues(above: list[TextBox], below: list[TextBox], height: float) -> bool:
    """Whether ``below`` starts less than ``CONTINUED`` line heights under ``above``: no section's space between."""
    return _space(above, below) < CONTINUED * height


def _space(above: list[TextBox], below: list[TextBox]) -> float:
    """The space between two lines, from the lowest bottom of one to the highest top of the next."""
    return min(box.top for box in below) - max(box.bottom for box in above)


def _columns(boxes: list[TextBox], gutters: list[Gutter]) -> list[list[TextBox]]:
    """The boxes of a run split at its gutters, left column first (a box by its middle)."""
    edges = sorted((left + right) / 2 for left, right in gutters)
    columns: list[list[TextBox]] = [[] for _ in range(len(edges) + 1)]
    for box in boxes:
        columns[sum(edge < (box.left + box.right) / 2 for edge in edges)].append(box)
    return [column for column in columns if column]
