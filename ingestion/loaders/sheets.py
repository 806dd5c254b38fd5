"""What a sheet's rows read as, for a workbook and an OpenDocument spreadsheet alike: its column headers, repeated
before each value so that a passage cut from the middle of a table still says what its numbers are, and the bound
on the cells looked at."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar

from ingestion.loaders.base import Limits, LoadError, OverBudget, clean_text
from ingestion.loaders.images import describe_error

# Cells looked at per document, empty ones included: openpyxl fills each row out to its last cell, and a gap of
# rows with empty ones, and an OpenDocument cell may say it repeats a million times, so a few kilobytes of XML
# cost this much work (the text allowance bounds the rest).
MAX_CELLS = 20_000_000
_LOOKAHEAD = 10  # rows with values searched for the column headers
MAX_HEADER = 80  # characters of a column header repeated before each value
T = TypeVar("T")


class HeadersOverBudget(OverBudget):
    """The text went past the allowance with column headers repeated before its values: without them, it may not."""


def blame_headers(error: OverBudget, length: int, labels: int, limits: Limits) -> None:
    """Raise ``error`` again as ``HeadersOverBudget`` when the text's values alone (its ``length`` less the
    ``labels`` of headers it repeated) still fit the allowance, so far."""
    if length - labels <= limits.max_chars:
        raise HeadersOverBudget(str(error)) from error


class ColumnHeaders:
    """A row of text (two cells or more) directly above a row holding a number, a date or a truth value, among a
    sheet's first ``_LOOKAHEAD`` rows with values, is taken as its column headers; each later row then reads
    "Header: value | Header: value". In ``headed`` text (delimited text, whose first line names its columns by
    convention) the first row of text is the headers unless a wider one follows it (it was a title): a data row
    whose number is missing, read before any number, is not taken for them. One per sheet, given its rows with
    values in order; ``labelled`` False reads every row without its headers."""

    def __init__(self, labelled: bool = True, headed: bool = False) -> None:
        self.headers: dict[int, str] | None = None if labelled else {}
        self.headed = headed
        self.candidate: list[tuple[int, str]] | None = None  # a row of text that may be the headers
        self.seen = 0

    @property
    def searching(self) -> bool:
        """Whether the kinds of a row's values still matter: the headers are not found, and may still be."""
        return self.headers is None and (self.candidate is not None or self.seen < _LOOKAHEAD)

    def line(self, values: list[tuple[int, str]], texts: bool) -> tuple[str, int]:
        """The line for a row's non-empty ``values`` by column (``texts``: all of them are text, not numbers,
        dates or truth values; looked at only while ``searching``), and the characters of header labels it repeats
        (to count against the text allowance, as each row repeats them)."""
        self.seen += 1
        if self.headers is None and self.candidate is not None and not texts:
            self.headers = {column: value[:MAX_HEADER] for column, value in self.candidate}
        if self.headers is None and self.seen <= _LOOKAHEAD:
            if not (self.headed and self.candidate is not None):
                self.candidate = values if texts and len(values) > 1 else None
            elif texts and len(values) > len(self.candidate):
                self.candidate = values
        headers = self.headers or {}
        labels = [f"{headers[column]}: " if column in headers else "" for column, _ in values]
        return " | ".join(label + value for label, (_, value) in zip(labels, values, strict=True)), sum(
            map(len, labels))


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
        try:  # the libraries report broken cells (a shared string that is not there, ...) with many exceptions
            lines.extend(self._rows(where, rows()))
        except OverBudget as error:
            blame_headers(error, self.length, self.labels, self.limits)
            raise
        except (LoadError, MemoryError):
            raise
        except Exception as error:
            self.warnings.append(f"{where} cannot be read past row {len(lines) - len(heading)} with values: "
                                 f"{describe_error(error)}")
        return clean_text("\n".join(lines)) if len(lines) > len(heading) else ""

    def _rows(self, where: str, rows: Iterable[Sequence[Any]]) -> Iterator[str]:
        """A sheet's rows with values, each as one line, its values after their column's header once it is found."""
        headers = ColumnHeaders(self.labelled, self.headed)
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
            self.length += labelled  # repeated on every row: counted every time
            self.labels += labelled
            self.limits.check_chars(self.length)
            yield line

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
