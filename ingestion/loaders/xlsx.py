"""Excel workbooks (.xlsx, .xlsm) through openpyxl: each sheet a page of rows, read streaming, values as a
spreadsheet program last computed them."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from openpyxl.reader.excel import ExcelReader
from openpyxl.styles.stylesheet import apply_stylesheet
from openpyxl.utils.cell import coordinate_to_tuple
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from openpyxl.worksheet._reader import WorkSheetParser

from ingestion.loaders.base import Limits, Loader, LoadError, OnKept, join_pages
from ingestion.loaders.images import describe_error
from ingestion.loaders.ooxml import refuse_bombs
from ingestion.loaders.sheets import VALUE_ERROR, SheetReader, read_sheets
from kb.types import ExtractedDocument

MAX_ROWS = 1_048_576  # Excel's own limit: a row numbered past it is not read
# Excel's own limit on a number format's length, and a bound on style records: openpyxl matches each format against
# a regular expression quadratic in its length (a code of 100,000 "[" took 6 s a style) and makes an object of each
# record (1.9 million cell formats took 3.4 GB), before any sheet is read.
MAX_FORMAT_CODE = 255
MAX_STYLE_RECORDS = 100_000  # cell formats, fonts, fills, borders, ... (1.9 million fonts took 36 s and 913 MB)
_STYLE_RECORDS = frozenset({"xf", "font", "fill", "border", "dxf", "numFmt", "cellStyle"})
_STYLES = "xl/styles.xml"  # where openpyxl reads them, whatever the package's relationships say


class XlsxLoader(Loader):
    """Each sheet is a page, numbered as the workbook's tabs, that starts with its name, one line per row holding
    a value (a chart sheet is an empty page). A row of text (two cells or more) directly above a row holding a
    number, a date or a truth value, among a sheet's first rows, is taken as the column headers, and each later
    row reads "Header: value | Header: value", so that a passage cut from the middle of a table still says what
    its numbers are. Formulas give the value a spreadsheet program last saved (none in a file no spreadsheet
    program computed); charts, pictures and comments are not read. A sheet that cannot be read is a warning."""

    file_type = "xlsx"

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        refuse_bombs(data, limits.max_chars, "XLSX")
        _refuse_style_bombs(data)
        warnings: list[str] = []
        try:  # openpyxl reports a broken package with many exception types (zip, XML, missing parts, values)
            workbook = _CellsOnlyReader(data).read()
        except MemoryError:  # the file is over the memory budget: that is the reason
            raise
        except Exception as error:
            raise LoadError(_reason(error)) from error
        try:
            title = (workbook.properties.title or "").strip() or None
            # (workbook[name] scans the list of sheets each time: 10,000 sheets took 16 s)
            sheets = read_sheets(lambda labelled: _pages(list(workbook._sheets), SheetReader(
                limits, warnings, labelled=labelled), limits, warnings), limits, warnings)
        finally:
            workbook.close()
        text, pages = join_pages(sheets)
        return ExtractedDocument(text=text, file_type=self.file_type, title=title, pages=pages, warnings=warnings)


class _CellsOnlyReader(ExcelReader):
    """openpyxl's reader of a workbook, read-only, without the parts the loader does not read, which hostile files
    made cost minutes or gigabytes before any cell: external links (300 references to one link part of 20,000
    cells: 60 s, 1.9 GB), chart sheets' drawings (each picture read again and kept: 30 of one 50 MB part, 1.7 GB),
    defined names (a print area of 160,000 letters, matched by a backtracking pattern: 59 s), and each sheet's
    relationships (one sheet listed 600 times, its 20,000 relationships read again for each: 102 s). A chart sheet
    is a ``None`` among the sheets, keeping the tabs' numbering."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)

    def read(self) -> Any:
        self.read_manifest()
        self.read_strings()
        self.read_workbook()
        self.read_properties()
        apply_stylesheet(self.archive, self.wb)  # the number formats: which numbers are dates
        self.read_worksheets()
        return self.wb

    def read_worksheets(self) -> None:
        present = set(self.valid_files)  # (openpyxl looks each sheet up in a list of the package's parts)
        for sheet, relationship in self.parser.find_sheets():
            if relationship.target not in present:
                continue
            if "chartsheet" in relationship.Type:
                self.wb._sheets.append(None)
                continue
            worksheet = ReadOnlyWorksheet(self.wb, sheet.name, relationship.target, self.shared_strings)
            worksheet.sheet_state = sheet.state
            self.wb._sheets.append(worksheet)


def _pages(sheets: list[Any], reader: SheetReader, limits: Limits, warnings: list[str]) -> list[str]:
    """Each sheet's clean text ("" for one without values, a chart sheet, or one listed again)."""
    if len(sheets) > limits.max_pages:
        warnings.append(f"only the first {limits.max_pages} of {len(sheets)} sheets were read (max_pages)")
    texts: list[str] = []
    paths: set[str] = set()
    for sheet in sheets[: limits.max_pages]:
        path = getattr(sheet, "_worksheet_path", None)
        if not isinstance(sheet, ReadOnlyWorksheet) or path in paths or reader.full:
            texts.append("")  # a chart sheet, a sheet part listed again (read once), or past the cells
            continue
        paths.add(path)
        texts.append(reader.page(sheet.title, lambda sheet=sheet: _rows(sheet, warnings)))
    return texts


class _CellForgivingParser(WorkSheetParser):
    """openpyxl's parser of a sheet, but a cell it cannot read (a shared string that is not there, a number or a
    date that is none) reads ``#VALUE!``, as Excel shows an error, counted: it ended the sheet there."""

    unreadable = 0

    def parse_cell(self, element: Any) -> dict[str, Any]:
        before = self.col_counter  # (openpyxl moves it on before it reads the value)
        try:
            return super().parse_cell(element)  # type: ignore[no-any-return]
        except (ValueError, TypeError, IndexError, KeyError, OverflowError):
            self.unreadable += 1
            row, column = self.row_counter, before + 1  # without a place of its own: the next
            if coordinate := element.get("r"):
                try:
                    row, column = coordinate_to_tuple(coordinate)
                except (ValueError, TypeError, IndexError, KeyError, OverflowError):
                    pass
            self.col_counter = column
            return {"row": row, "column": column, "value": VALUE_ERROR, "data_type": "e", "style_id": 0}


def _rows(sheet: ReadOnlyWorksheet, warnings: list[str]) -> Iterator[tuple[Any, ...]]:
    """A sheet's rows of values as ``iter_rows(values_only=True)`` reads them (an empty one for each row it leaves
    out), to ``MAX_ROWS``, its cells that cannot be read said in ``warnings``. The size a file declares is not
    trusted: a row is as long as its last cell."""
    sheet.reset_dimensions()
    book, expected = sheet.parent, 1
    with sheet._get_source() as source:
        parser = _CellForgivingParser(source, sheet._shared_strings, data_only=True, epoch=book.epoch,
                                      date_formats=book._date_formats, timedelta_formats=book._timedelta_formats)
        try:
            for number, cells in parser.parse():
                if number > MAX_ROWS:
                    break
                while expected < number:
                    expected += 1
                    yield ()
                if expected == number:  # (a row listed again, or out of order, is not read)
                    expected += 1
                    yield sheet._get_row(cells, values_only=True)
        finally:  # (also when a row cannot be read: the cells before it were)
            if parser.unreadable:
                warnings.append(f"sheet {sheet.title[:100]}: {parser.unreadable:,} cell(s) that cannot be read (a "
                                f"shared string not there, a number or date that is none) read {VALUE_ERROR}")


def _refuse_style_bombs(data: bytes) -> None:
    """Refuse a workbook whose styles are over ``MAX_FORMAT_CODE`` or ``MAX_STYLE_RECORDS``, read streaming (and
    without entities) before openpyxl parses them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open(_STYLES) as part:
            records = 0
            for _, element in iterparse(part):
                name = element.tag.rsplit("}", 1)[-1]
                if name == "numFmt" and len(element.get("formatCode", "")) > MAX_FORMAT_CODE:
                    raise LoadError(f"XLSX has a number format longer than {MAX_FORMAT_CODE} characters (Excel's "
                                    "limit); refused before parsing")
                records += name in _STYLE_RECORDS
                if records > MAX_STYLE_RECORDS:
                    raise LoadError(f"XLSX has more than {MAX_STYLE_RECORDS:,} style records (Excel allows "
                                    "64,000 cell formats); refused before parsing")
                element.clear()
    except LoadError:
        raise
    except MemoryError:
        raise
    except Exception:  # no styles, not a readable zip, or XML openpyxl will report (entities included)
        return


def _reason(error: BaseException) -> str:
    """Why openpyxl could not open a workbook, in one line: it wraps what went wrong in a paragraph of its own."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, DefusedXmlException):
            return "XLSX declares XML entities, which are refused (they can read other files or expand without bound)"
        cause = cause.__cause__ or cause.__context__
    return f"corrupt XLSX: {describe_error(error)}"
