"""What a sheet's rows read as, for a workbook and an OpenDocument spreadsheet alike: its column headers, repeated
before each value so that a passage cut from the middle of a table still says what its numbers are, and the bound
on the cells looked at."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from ingestion.loaders.base import Limits, LoadError, OverBudget, clean_text
from ingestion.loaders.images import describe_error

# Cells looked at per document, empty ones included: openpyxl fills each row out to its last cell, and a gap of
# rows with empty ones, and an OpenDocument cell may say it repeats a million times, so a few kilobytes of XML
# cost this much work (the text allowance bounds the rest).
MAX_CELLS = 20_000_000
LOOKAHEAD = 10  # rows with values searched for the column headers
MAX_HEADER = 80  # characters of a column header repeated before each value
VALUE_ERROR = "#VALUE!"  # what Excel shows in a cell whose value is wrong: a cell a workbook's library cannot read
# Words column headers use, in English and Chinese: a row of text holding them (and its columns' values not) is
# the headers of a sheet of text only, as a contact list or a register is.
_LABEL_WORDS = re.compile(
    r"(?<![a-z])(?:name|e-?mail|phone|mobile|tel|fax|address|city|country|province|region|company|department|title|"
    r"position|role|id|code|type|category|status|description|note|notes|remarks?|comments?|url|website|owner|"
    r"contact|customer|supplier|product|item|date|subject|summary|question|answer|term|definition|tags?)(?![a-z])"
    r"|姓名|名称|名字|电话|手机|邮箱|地址|城市|省份|地区|公司|单位|部门|职位|职务|岗位|编号|代码|类型|类别|状态|说明|描述|备注|"
    r"网址|负责人|联系人|客户|供应商|产品|日期|主题|问题|答案|术语|定义|标签")
_VALUE_MARKS = (re.compile(r"\d"), re.compile("@"), re.compile(r"\s"))  # what a column's values may all hold
T = TypeVar("T")


class HeadersOverBudget(OverBudget):
    """The text went past the allowance with column headers repeated before its values: without them, it may not."""


def blame_headers(error: OverBudget, length: int, labels: int, limits: Limits) -> None:
    """Raise ``error`` again as ``HeadersOverBudget`` when the text's values alone (its ``length`` less the
    ``labels`` of headers it repeated) still fit the allowance, so far."""
    if length - labels <= limits.max_chars:
        raise HeadersOverBudget(str(error)) from error


class ColumnHeaders:
    """A sheet's column headers, a row among its first ``LOOKAHEAD`` rows with values: a row of text (two cells or
    more) directly above a row holding a number, a date or a truth value (however far below); in ``headed`` text
    (delimited text, whose first line names its columns by convention) the first row of text, or a wider one after
    it (that one was a title), once such a row follows. Failing a number within those rows, the first row of text,
    or a wider one, when it reads as labels of the rows below (see ``_read_as_labels``): a sheet of text only has
    headers too. Each row after the headers then reads "Header: value | Header: value", those among the first
    ``LOOKAHEAD`` written before the headers were found too (see ``relabelled``). One per sheet, given its rows
    with values in order; ``labelled`` False reads every row without its headers."""

    def __init__(self, labelled: bool = True, headed: bool = False) -> None:
        self.headers: dict[int, str] | None = None if labelled else {}
        self.headed = headed
        self.rows: list[list[tuple[int, str]]] = []  # the first rows with values, while the headers are searched for
        self.above: int | None = None  # the number of the row of text just read, counting from 1
        self.first: int | None = None  # the number of the first row of text, or of a wider one after it
        self.at = 0  # the number of the headers' row: the rows after it are labelled
        self.waiting: list[tuple[int, list[tuple[int, str]]]] = []  # rows written before their headers were found
        self.seen = 0

    @property
    def searching(self) -> bool:
        """Whether the kinds of a row's values still matter: the headers are not found, and may still be."""
        return self.headers is None

    def line(self, values: list[tuple[int, str]], texts: bool) -> tuple[str, int]:
        """The line for a row's non-empty ``values`` by column (``texts``: all of them are text, not numbers,
        dates or truth values; looked at only while ``searching``), and the characters of header labels it repeats
        (to count against the text allowance, as each row repeats them)."""
        self.seen += 1
        if self.headers is None:
            found = self.first if self.headed else self.above
            if self.seen <= LOOKAHEAD:
                self.rows.append(values)
            if found is not None and not texts:
                self._use(found, self.seen - 1)
            elif self.seen <= LOOKAHEAD:
                self.above = self.seen if texts and len(values) > 1 else None
                if self.above and (self.first is None or len(values) > len(self.rows[self.first - 1])):
                    self.first = self.seen
                if self.seen == LOOKAHEAD and (labels := self._labelling_row()) is not None:
                    self._use(labels, self.seen - 1)
            waiting = self.first if self.headed else self.above
            if self.headers is None and self.seen >= LOOKAHEAD and waiting is None:
                self.headers, self.rows = {}, []  # no row left that a number could make the headers
        return self._labelled(values, self.seen)

    def finish(self) -> None:
        """The sheet has no more rows: a sheet of text only may have its headers all the same."""
        if self.headers is None and (labels := self._labelling_row()) is not None:
            self._use(labels, self.seen)
        if self.headers is None:
            self.headers, self.rows = {}, []

    def relabelled(self) -> list[tuple[int, str, int]]:
        """The rows written before their headers were found, by number, with their lines now and the characters of
        header labels these repeat; each row once."""
        waiting, self.waiting = self.waiting, []
        return [(number, *self._labelled(values, number)) for number, values in waiting]

    def _labelled(self, values: list[tuple[int, str]], number: int) -> tuple[str, int]:
        """Row ``number``'s line and the characters of header labels in it."""
        headers = self.headers if self.headers and number > self.at else {}
        labels = [f"{headers[column]}: " if column in headers else "" for column, _ in values]
        return " | ".join(label + value for label, (_, value) in zip(labels, values, strict=True)), sum(
            map(len, labels))

    def _labelling_row(self) -> int | None:
        """The number of the first row of text (or a wider one) if it reads as labels of the rows kept below it."""
        if self.first is not None and _read_as_labels(self.rows[self.first - 1], self.rows[self.first:]):
            return self.first
        return None

    def _use(self, number: int, written: int) -> None:
        """Takes row ``number`` as the headers; those after it up to row ``written`` now wait to be labelled."""
        self.headers = {column: value[:MAX_HEADER] for column, value in self.rows[number - 1]}
        self.at = number
        self.waiting = [(later, self.rows[later - 1]) for later in range(number + 1, min(written, len(self.rows)) + 1)]
        self.rows = []


def _read_as_labels(row: list[tuple[int, str]], below: list[list[tuple[int, str]]]) -> bool:
    """Whether a row of text names the columns of the rows of text ``below`` it: its values are distinct, short,
    and none is repeated in its column below, and more of them read as labels than as values of their column: a
    word that headers use ("Name", "电话") that the column's values do not hold, or lacking what every one of its
    values holds (a digit, an "@", a space), counts for; holding that too counts against. A glossary's first term
    is no header."""
    names = [value.casefold() for _, value in row]
    if not below or len(set(names)) < len(names) or max(map(len, names)) > MAX_HEADER:
        return False
    by_column: dict[int, list[str]] = {}
    for values in below:
        for column, value in values:
            by_column.setdefault(column, []).append(value.casefold())
    votes = 0
    for column, name in zip((column for column, _ in row), names, strict=True):
        values = by_column.get(column, [])
        if name in values:
            return False
        if values:
            words = _LABEL_WORDS.findall(name)
            votes += bool(words) and not any(word in value for word in words for value in values)
            for mark in _VALUE_MARKS:
                if all(mark.search(value) for value in values):
                    votes += -1 if mark.search(name) else 1
    return votes > 0


class SheetReader:
    """Reads a workbook's sheets, one after the other, within ``MAX_CELLS`` looked at and ``limits.max_chars`` of
    text, counted as each cell is read; a row is a sequence of values (text, numbers, dates, truth values, None).
    ``is_text`` tells a value that is text from one that is a number, a date or a truth value (for the column
    headers): by its type in a workbook, by how it reads in delimited text, where every value is a string; ``headed``
    sheets have their headers in their first row of text, if anywhere (see ``ColumnHeaders``)."""

    def __init__(self, limits: Limits, warnings: list[str],
                 is_text: Callable[[object], bool] = lambda value: isinstance(value, str), headed: bool = False,
                 labelled: bool = True) -> None:
        self.limits = limits
        self.warnings = warnings
        self.is_text = is_text
        self.headed = headed
        self.labelled = labelled  # the column headers are repeated before each value
        self.labels = 0  # characters of column headers repeated
        self.cells = 0
        self.length = 0

    @property
    def full(self) -> bool:
        """Whether the workbook's cells are spent: no later sheet is read."""
        return self.cells > MAX_CELLS

    def page(self, title: str, rows: Callable[[], Iterable[Sequence[Any]]], named: bool = True) -> str:
        """A sheet's page: its name (unless not ``named``: ``title`` then only names it in warnings), then a line
        per row with values ("" when none). A sheet its library cannot read past some row keeps the rows before it,
        with a warning."""
        heading = [title] if named else []
        where = f"sheet {title[:100]}" if named else title[:100]
        lines = list(heading)
        headers = ColumnHeaders(self.labelled, self.headed)
        try:
            try:  # the libraries report broken cells (a shared string that is not there, ...) with many exceptions
                self._read(where, rows(), headers, lines)
            except (LoadError, MemoryError):
                raise
            except Exception as error:
                self.warnings.append(f"{where} cannot be read past row {headers.seen} with values: "
                                     f"{describe_error(error)}")
            headers.finish()
            self._relabel(headers, lines, len(heading))
        except OverBudget as error:
            blame_headers(error, self.length, self.labels, self.limits)
            raise
        return clean_text("\n".join(lines)) if len(lines) > len(heading) else ""

    def _read(self, where: str, rows: Iterable[Sequence[Any]], headers: ColumnHeaders, lines: list[str]) -> None:
        """Adds a sheet's rows with values to ``lines``, each as one line, its values after their column's header
        once it is found."""
        first = len(lines)
        for row in rows:
            self.cells += max(len(row), 1)
            if self.cells > MAX_CELLS:
                self.warnings.append(f"{where}: only its first {headers.seen} rows with values were read, and no "
                                     f"later sheet (a workbook's first {MAX_CELLS:,} cells are read)")
                return
            values = self._values(row)
            if not values:
                continue
            texts = headers.searching and all(self.is_text(row[column]) for column, _ in values)
            line, labelled = headers.line(values, texts)
            self._count_labels(labelled)
            lines.append(line)
            self._relabel(headers, lines, first)

    def _relabel(self, headers: ColumnHeaders, lines: list[str], first: int) -> None:
        """Rewrites the lines (row 1 at ``first``) of the rows written before their headers were found."""
        for number, line, labelled in headers.relabelled():
            self._count_labels(labelled)
            lines[first + number - 1] = line

    def _count_labels(self, labelled: int) -> None:
        """Counts characters of header labels against the allowance (repeated on every row: counted every time)."""
        self.length += labelled
        self.labels += labelled
        self.limits.check_chars(self.length)

    def _values(self, row: Sequence[Any]) -> list[tuple[int, str]]:
        """A row's non-empty values as text, by column, each counted against the text allowance as it is made (a
        row of 3,000 cells naming one shared string of 1 MB was 3 GB before its length was checked)."""
        values = []
        for column, value in enumerate(row):
            if value is not None and (text := cell_text(value)):
                self.length += len(text) + (3 if values else 1)  # " | " before it, or the line break
                self.limits.check_chars(self.length)
                values.append((column, text))
        return values


def read_sheets(read: Callable[[bool], T], limits: Limits, warnings: list[str]) -> T:
    """What ``read`` makes of a workbook with its column headers repeated before the values (``read(True)``), or,
    when they take the text past the allowance (``HeadersOverBudget``), what it makes without them, with a warning:
    an export of 110,000 rows, 5.9 million characters of values, was refused whole at 10 million with its headers."""
    said = len(warnings)
    try:
        return read(True)
    except HeadersOverBudget:
        del warnings[said:]
    read_again = read(False)
    warnings.append(f"the column headers are not repeated before the values: they would take the text past "
                    f"{limits.max_chars:,} characters (max_document_chars)")
    return read_again


def cell_text(value: object) -> str:
    """A cell's value as a person reads it: whole numbers without ".0", dates without a midnight time, one line."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else format(value, ".15g")
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, (date, time, timedelta)):
        return str(value)
    return " ".join(str(value).split())
