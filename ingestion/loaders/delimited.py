"""Delimited text (.csv, .tsv), as spreadsheets and business systems export a table: each row a line, its values
after their column's header, read as a workbook's sheet is (``sheets``)."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter
from pathlib import Path

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import Limits, Loader, OnKept
from ingestion.loaders.sheets import SheetReader, read_sheets
from kb.types import ExtractedDocument

DELIMITERS = ",;\t|"  # tried when a file does not say; the first of equals wins
_SAMPLE_ROWS, _SAMPLE_CHARS = 50, 64 * 1024  # the first rows the delimiter is guessed from, in at most so much
_EXCEL_SEPARATOR = re.compile(r"sep=(.)\n")  # the first line Excel reads as the delimiter's name
# A value that is a number (currency, thousands separators, a percentage) or a date, not text: a row of text above
# a row holding one is the column headers.
_NUMBER = re.compile(r"[-+]?[¥$€£￥]?\s?\(?\d[\d,\s]*(?:\.\d+)?\)?\s?(?:%|元|円)?")
_DATE = re.compile(r"(?:\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
                   r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")
# Values may be as long as the text allowance lets the file be: past the csv module's own limit (131,072
# characters) one quote left open lost the rest of the file. Set for the process: no other reader depends on it.
csv.field_size_limit(2**31 - 1)


class DelimitedLoader(Loader):
    """The rows of a delimited text file, in any encoding ``decode_text`` recognises (Excel saves CSV in the
    system's code page: GBK on a Chinese Windows), one line per row holding a value, each value after its column's
    header once the headers are found (see ``SheetReader``). The delimiter is ``delimiter``, or the one Excel's
    ``sep=`` line names, or else the one of ``DELIMITERS`` that splits the first rows most evenly (see
    ``guess_delimiter``). Quoted values may hold delimiters and line breaks; a quote left open holds the rest of the
    file as one value. The column headers are its first row of text, or a wider one after it (``SheetReader``'s
    ``headed``)."""

    def __init__(self, file_type: str, delimiter: str | None = None) -> None:
        self.file_type = file_type
        self.delimiter = delimiter

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        warnings: list[str] = []
        text = encoding.decode_text(data, warnings=warnings)
        limits.check_chars(len(text))  # before parsing copies it
        named = _EXCEL_SEPARATOR.match(text)
        if named is not None:
            text = text[named.end():]
        delimiter = named.group(1) if named is not None else self.delimiter or guess_delimiter(text)
        rows = read_sheets(lambda labelled: SheetReader(
            limits, warnings, is_text=_is_text, headed=True, labelled=labelled).page(path.name, lambda: csv.reader(
                io.StringIO(text, newline=""), delimiter=delimiter), named=False), limits, warnings)
        return ExtractedDocument(text=rows, file_type=self.file_type, warnings=warnings)


def guess_delimiter(text: str) -> str:
    """The one of ``DELIMITERS`` that parses the most of the first rows into the same number of values (two or more),
    then the one whose values read the most as numbers, less those of text holding another delimiter (``Lampe;12,50``
    is ``Lampe`` and ``12,50``, not ``Lampe;12`` and ``50``), then the one of more values; "," when none splits a
    row."""
    sample = text[:_SAMPLE_CHARS]
    best, choice = (0, 0, 0), ","
    for delimiter in DELIMITERS:
        rows = [row for row in itertools.islice(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter),
                                                _SAMPLE_ROWS) if len(row) > 1]
        if rows:
            width, even = Counter(map(len, rows)).most_common(1)[0]
            kinds = Counter(_kind(value, delimiter) for row in rows for value in row)
            score = (even, kinds["number"] - kinds["split"], width)
            if score > best:
                best, choice = score, delimiter
    return choice


def _kind(value: str, delimiter: str) -> str:
    """A value split by ``delimiter`` as a number, text holding another of ``DELIMITERS`` ("split": likely cut from
    a value the other one delimits), or text."""
    if value.strip() and not _is_text(value):
        return "number"
    return "split" if any(other in value for other in DELIMITERS if other != delimiter) else "text"


def _is_text(value: object) -> bool:
    """Whether a value reads as text: not a number, a percentage, an amount or a date."""
    value = str(value).strip()
    return not (_NUMBER.fullmatch(value) or _DATE.fullmatch(value))
