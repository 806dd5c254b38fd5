"""Excel 97-2003 workbooks (.xls, as Excel and WPS write them) through xlrd: each sheet a page of rows, read as an
.xlsx workbook's are."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xlrd
from xlrd.sheet import Sheet

from ingestion.loaders import ole
from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, join_pages
from ingestion.loaders.images import describe_error
from ingestion.loaders.sheets import VALUE_ERROR, SheetReader, read_sheets
from kb.types import ExtractedDocument

_GLOBAL_RECORDS = {0x00E0: "cell formats", 0x0031: "fonts", 0x041E: "number formats", 0x0018: "defined names"}
_EOF = 0x000A
_MAX_GLOBAL_RECORDS = 100_000


class XlsLoader(Loader):
    """Each sheet is a page, numbered as the workbook's tabs, that starts with its name, one line per row holding
    a value, the column headers before each value once they are found (see ``SheetReader``). Formulas give the
    value Excel last saved, dates read as dates, errors as Excel shows them (``#DIV/0!``); charts, pictures and
    comments are not read. A sheet that cannot be read is a warning; an encrypted workbook is refused."""

    file_type = "xls"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        with ole.open_package(data, "XLS") as package:
            stream = next((name for name in ("Workbook", "Book") if package.exists(name)), None)
            if stream is None:
                raise LoadError("not an Excel workbook: an OLE file without a Workbook stream")
            try:
                _refuse_bombs(package.openstream(stream).read())
            except (LoadError, MemoryError):
                raise
            except Exception as error:  # olefile reports a broken stream with many exception types
                raise LoadError(f"corrupt XLS: {describe_error(error)}") from error
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
            texts = read_sheets(lambda labelled: _pages(book, SheetReader(limits, warnings, labelled=labelled), limits,
                                                        warnings), limits, warnings)
        finally:
            book.release_resources()
        text, pages = join_pages(texts)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages, warnings=warnings)


def _refuse_bombs(stream: bytes) -> None:
    """Refuse a workbook whose globals hold more cell formats, fonts, number formats or names than
    ``_MAX_GLOBAL_RECORDS``: xlrd makes an object of each before any sheet is read (4 million cell formats took
    3.6 GB, a million names 1.8 GB). Counted from the record headers, up to the globals' end."""
    counts = dict.fromkeys(_GLOBAL_RECORDS.values(), 0)
    at = 0
    while at + 4 <= len(stream):
        kind, size = struct.unpack_from("<HH", stream, at)
        at += 4 + size
        if kind == _EOF:
            return
        if kind in _GLOBAL_RECORDS:
            counts[_GLOBAL_RECORDS[kind]] += 1
            if counts[_GLOBAL_RECORDS[kind]] > _MAX_GLOBAL_RECORDS:
                raise LoadError(f"XLS bomb? more than {_MAX_GLOBAL_RECORDS:,} {_GLOBAL_RECORDS[kind]} (Excel allows "
                                "64,000 cell formats); refused before parsing")


def _pages(book: xlrd.Book, reader: SheetReader, limits: Limits, warnings: list[str]) -> list[str]:
    """Each sheet's clean text ("" for one without values, or past the workbook's cells), each sheet loaded only
    while it is read."""
    names = book.sheet_names()
    if len(names) > limits.max_pages:
        warnings.append(f"only the first {limits.max_pages} of {len(names)} sheets were read (max_pages)")
    texts: list[str] = []
    offsets: set[int] = set()
    strings = book._sharedstrings = _SharedStrings(book._sharedstrings or [])
    started = time.monotonic()
    for index, name in enumerate(names[: limits.max_pages]):
        if index and limits.past_half_time(started):  # (sheets whose records begin one after the other each read
            warnings.append(f"sheets from {name[:100]} on not read: reading them would take the workbook past its "
                            f"{limits.seconds:.0f} s (file_timeout)")  # all that follows them: 400 took 40 s)
            texts.extend("" for _ in names[index : limits.max_pages])
            break
        offset = book._sh_abs_posn[index]  # where the sheet's records start: xlrd parses one listed again anew
        if reader.full or offset in offsets:
            texts.append("")
            continue
        offsets.add(offset)
        try:
            sheet = book.sheet_by_index(index)
        except MemoryError:
            raise
        except Exception as error:  # a sheet xlrd cannot parse: the others are kept
            warnings.append(f"sheet {name[:100]} cannot be read: {describe_error(error)}")
            texts.append("")
            continue
        try:
            texts.append(reader.page(name, lambda sheet=sheet: _rows(sheet, book.datemode)))
        finally:  # (over the allowance too: the workbook may be read again without its headers)
            book.unload_sheet(index)
    if strings.missing:
        warnings.append(f"{strings.missing:,} cell(s) naming a shared string the workbook does not hold read "
                        f"{VALUE_ERROR}")
    return texts


class _SharedStrings(list[str]):
    """A workbook's shared strings, where a cell naming one past them reads ``#VALUE!``, counted (xlrd lost the
    whole sheet)."""

    missing = 0

    def __getitem__(self, index: Any) -> Any:
        try:
            return super().__getitem__(index)
        except (IndexError, TypeError):
            self.missing += 1
            return VALUE_ERROR


def _rows(sheet: Sheet, datemode: int) -> Iterator[tuple[Any, ...]]:
    for row in sheet.get_rows():
        yield tuple(_value(cell.ctype, cell.value, datemode) for cell in row)


def _value(kind: int, value: Any, datemode: int) -> Any:
    """A cell as Python: text, a number, a date, a truth value, an error as Excel shows it, or None."""
    if kind == xlrd.XL_CELL_DATE:
        try:
            moment = xlrd.xldate.xldate_as_datetime(value, datemode)
            return moment.time() if 0 <= value < 1 else moment  # a time of day without a date
        except (xlrd.xldate.XLDateError, OverflowError, ValueError):
            return value  # a date Excel cannot show either: its serial number
    if kind == xlrd.XL_CELL_BOOLEAN:
        return bool(value)
    if kind == xlrd.XL_CELL_ERROR:
        return xlrd.error_text_from_code.get(value, "#ERROR")
    if kind in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    return value


