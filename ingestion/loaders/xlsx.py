"""Excel workbooks (.xlsx, .xlsm) through openpyxl: each worksheet a page of rows, read streaming, values as Excel
last computed them."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from defusedxml import DefusedXmlException
from openpyxl import load_workbook

from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, clean_text, join_pages
from ingestion.loaders.ooxml import refuse_bombs
from kb.types import ExtractedDocument

if TYPE_CHECKING:
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

MAX_ROWS = 1_048_576  # Excel's own limit: a row numbered past it is not read
# Cells looked at, empty ones included: openpyxl fills each row out to its last cell, and a gap of rows with empty
# ones, so a few kilobytes of XML naming far cells cost this much work (the text allowance bounds the rest).
MAX_CELLS = 20_000_000


class XlsxLoader(Loader):
    """Each worksheet is a page that starts with its name, one line per row that holds a value. When a sheet's
    first such row is all text (two cells or more), it is taken as the column headers, and each later row reads
    "Header: value | Header: value", so that a passage cut from the middle of a table still says what its numbers
    are. Formulas give the value Excel last computed and saved (none in a file no spreadsheet program computed);
    charts, pictures and comments are not read."""

    file_type = "xlsx"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        refuse_bombs(data, limits.max_chars, "XLSX")
        warnings: list[str] = []
        try:  # openpyxl reports a broken package with many exception types (zip, XML, missing parts, values)
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                title = (workbook.properties.title or "").strip() or None
                sheets = _sheets(workbook.worksheets, limits, warnings)
            finally:
                workbook.close()
        except LoadError:
            raise
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception as error:
            raise LoadError(_reason(error)) from error
        text, pages = join_pages(sheets)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages, warnings=warnings)


def _sheets(worksheets: Iterable[ReadOnlyWorksheet], limits: Limits, warnings: list[str]) -> list[str]:
    """Each worksheet's clean text ("" for one without values), within ``MAX_CELLS`` looked at for the workbook and
    ``limits.max_chars`` of text."""
    texts: list[str] = []
    cells = length = 0
    for sheet in worksheets:
        sheet.reset_dimensions()  # the size a file declares is not trusted: a row is as long as its last cell
        lines, headers = [sheet.title], None
        for row in sheet.iter_rows(max_row=MAX_ROWS, values_only=True):
            cells += max(len(row), 1)
            if cells > MAX_CELLS:
                warnings.append(f"sheet {sheet.title}: only its first {len(lines) - 1} rows with values were read "
                                f"(a workbook's first {MAX_CELLS:,} cells are read)")
                break
            values = [(column, text) for column, value in enumerate(row)
                      if value is not None and (text := _text(value))]
            if not values:
                continue
            if headers is None and len(values) > 1 and all(isinstance(row[column], str) for column, _ in values):
                headers = dict(values)
                lines.append(" | ".join(value for _, value in values))
            else:
                lines.append(" | ".join(_labelled(headers or {}, values)))
            length += len(lines[-1]) + 1
            limits.check_chars(length)
        texts.append(clean_text("\n".join(lines)) if len(lines) > 1 else "")
        if cells > MAX_CELLS:
            break
    return texts


def _reason(error: BaseException) -> str:
    """Why openpyxl could not read a workbook, in one line: it wraps what went wrong in a paragraph of its own."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, DefusedXmlException):
            return "XLSX declares XML entities, which are refused (they can read other files or expand without bound)"
        cause = cause.__cause__ or cause.__context__
    return f"corrupt XLSX: {(str(error) or type(error).__name__).splitlines()[0]}"


def _labelled(headers: dict[int, str], values: list[tuple[int, str]]) -> Iterator[str]:
    """A row's values, each after its column's header when it has one."""
    for column, value in values:
        header = headers.get(column)
        yield f"{header}: {value}" if header else value


def _text(value: object) -> str:
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
