"""Excel 97-2003 workbooks (.xls, as Excel and WPS write them) through xlrd: each sheet a page of rows, read as an
.xlsx workbook's are."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xlrd
from xlrd.sheet import Sheet

from ingestion.loaders import ole
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, join_pages
from ingestion.loaders.images import describe_error
from ingestion.loaders.sheets import SheetReader
from kb.types import ExtractedDocument


class XlsLoader(Loader):
    """Each sheet is a page, numbered as the workbook's tabs, that starts with its name, one line per row holding
    a value, the column headers before each value once they are found (see ``SheetReader``). Formulas give the
    value Excel last saved, dates read as dates, errors as Excel shows them (``#DIV/0!``); charts, pictures and
    comments are not read. A sheet that cannot be read is a warning; an encrypted workbook is refused."""

    file_type = "xls"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        with ole.open_package(data, "XLS") as package:
            if not package.exists("Workbook") and not package.exists("Book"):
                raise LoadError("not an Excel workbook: an OLE file without a Workbook stream")
            title = ole.summary_title(package)
        try:  # rows as long as their last cell (not padded to the widest); xlrd's notes go nowhere
            book = xlrd.open_workbook(file_contents=data, on_demand=True, ragged_rows=True,
                                      logfile=io.StringIO(), verbosity=0)
        except MemoryError:
            raise
        except Exception as error:  # xlrd reports a broken workbook with many exception types
            reason = describe_error(error)
            raise LoadError("encrypted XLS (password-protected): it cannot be read without its password"
                            if "encrypted" in reason.lower() else f"corrupt XLS: {reason}") from error
        warnings: list[str] = []
        try:
            texts = _pages(book, SheetReader(limits, warnings), limits, warnings)
        finally:
            book.release_resources()
        text, pages = join_pages(texts)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages, warnings=warnings)


def _pages(book: xlrd.Book, reader: SheetReader, limits: Limits, warnings: list[str]) -> list[str]:
    """Each sheet's clean text ("" for one without values, or past the workbook's cells), each sheet loaded only
    while it is read."""
    names = book.sheet_names()
    if len(names) > limits.max_pages:
        warnings.append(f"only the first {limits.max_pages} of {len(names)} sheets were read (max_pages)")
    texts: list[str] = []
    for index, name in enumerate(names[: limits.max_pages]):
        if reader.full:
            texts.append("")
            continue
        try:
            sheet = book.sheet_by_index(index)
        except MemoryError:
            raise
        except Exception as error:  # a sheet xlrd cannot parse: the others are kept
            warnings.append(f"sheet {name[:100]} cannot be read: {describe_error(error)}")
            texts.append("")
            continue
        texts.append(reader.page(name, lambda sheet=sheet: _rows(sheet, book.datemode)))
        book.unload_sheet(index)
    return texts


def _rows(sheet: Sheet, datemode: int) -> Iterator[tuple[Any, ...]]:
    for row in sheet.get_rows():
        yield tuple(_value(cell.ctype, cell.value, datemode) for cell in row)


def _value(kind: int, value: Any, datemode: int) -> Any:
    """A cell as Python: text, a number, a date, a truth value, an error as Excel shows it, or None."""
    if kind == xlrd.XL_CELL_DATE:
        try:
            return xlrd.xldate.xldate_as_datetime(value, datemode)
        except (xlrd.xldate.XLDateError, OverflowError, ValueError):
            return value  # a date Excel cannot show either: its serial number
    if kind == xlrd.XL_CELL_BOOLEAN:
        return bool(value)
    if kind == xlrd.XL_CELL_ERROR:
        return xlrd.error_text_from_code.get(value, "#ERROR")
    if kind in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    return value


