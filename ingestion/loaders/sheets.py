"""What a sheet's rows read as, for a workbook and an OpenDocument spreadsheet alike: its column headers, repeated
before each value so that a passage cut from the middle of a table still says what its numbers are, and the bound
on the cells looked at."""

from __future__ import annotations

# Cells looked at per document, empty ones included: openpyxl fills each row out to its last cell, and a gap of
# rows with empty ones, and an OpenDocument cell may say it repeats a million times, so a few kilobytes of XML
# cost this much work (the text allowance bounds the rest).
MAX_CELLS = 20_000_000
_LOOKAHEAD = 10  # rows with values searched for the column headers
MAX_HEADER = 80  # characters of a column header repeated before each value


class ColumnHeaders:
    """A row of text (two cells or more) directly above a row holding a number, a date or a truth value, among a
    sheet's first ``_LOOKAHEAD`` rows with values, is taken as its column headers; each later row then reads
    "Header: value | Header: value". One per sheet, given its rows with values in order."""

    def __init__(self) -> None:
        self.headers: dict[int, str] | None = None
        self.candidate: list[tuple[int, str]] | None = None  # a row of text that may be the headers
        self.seen = 0

    def line(self, values: list[tuple[int, str]], texts: bool) -> tuple[str, int]:
        """The line for a row's non-empty ``values`` by column (``texts``: all of them are text, not numbers,
        dates or truth values), and the characters of header labels it repeats (to count against the text
        allowance, as each row repeats them)."""
        self.seen += 1
        if self.headers is None and self.candidate is not None and not texts:
            self.headers = {column: value[:MAX_HEADER] for column, value in self.candidate}
        if self.headers is None and self.seen <= _LOOKAHEAD:
            self.candidate = values if texts and len(values) > 1 else None
        headers = self.headers or {}
        labels = [f"{headers[column]}: " if column in headers else "" for column, _ in values]
        return " | ".join(label + value for label, (_, value) in zip(labels, values, strict=True)), sum(
            map(len, labels))
