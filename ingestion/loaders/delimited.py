"""Delimited text (.csv, .tsv), as spreadsheets and business systems export a table: each row a line, its values
after their column's header, read as a workbook's sheet is (``sheets``)."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

from ingestion import encoding  # module import: ingestion.encoding itself imports this package
from ingestion.loaders.base import Limits, Loader, OnKept
from ingestion.loaders.sheets import SheetReader
from kb.types import ExtractedDocument

DELIMITERS = ",;\t|"  # tried in this order when a file does not say: Excel writes ";" where "," is a decimal comma
_SAMPLE_LINES, _SAMPLE_CHARS = 50, 64 * 1024  # the first lines the delimiter is guessed from, in at most so much
_EXCEL_SEPARATOR = re.compile(r"sep=(.)\r?\n")  # the first line Excel reads as the delimiter's name
# A value that is a number (currency, thousands separators, a percentage) or a date, not text: a row of text above
# a row holding one is the column headers.
_NUMBER = re.compile(r"[-+]?[¥$€£]?\s?\(?\d[\d,\s]*(?:\.\d+)?\)?\s?%?")
_DATE = re.compile(r"\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?")


class DelimitedLoader(Loader):
    """The rows of a delimited text file, in any encoding ``decode_text`` recognises (Excel saves CSV in the
    system's code page: GBK on a Chinese Windows), one line per row holding a value, each value after its column's
    header once the headers are found (see ``SheetReader``). The delimiter is ``delimiter``, or the one Excel's
    ``sep=`` line names, or else the one of ``DELIMITERS`` that splits the first lines most evenly. Quoted values may
    hold delimiters and line breaks; a row past which the file cannot be read (a quoted value longer than the csv
    module's 131,072 characters) keeps the rows before it, with a warning."""

    def __init__(self, file_type: str, delimiter: str | None = None) -> None:
        self.file_type = file_type
        self.delimiter = delimiter

    def extract(self, path: Path, data: bytes, limits: Limits, root: Path,
                on_kept: OnKept | None) -> ExtractedDocument:
        text = encoding.decode_text(data)
        limits.check_chars(len(text))  # before parsing copies it
        named = _EXCEL_SEPARATOR.match(text)
        if named is not None:
            text = text[named.end():]
        delimiter = named.group(1) if named is not None else self.delimiter or guess_delimiter(text)
        warnings: list[str] = []
        rows = SheetReader(limits, warnings, is_text=_is_text).page(
            path.name, lambda: csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), named=False)
        return ExtractedDocument(text=rows, file_type=self.file_type, warnings=warnings)


def guess_delimiter(text: str) -> str:
    """The one of ``DELIMITERS`` that splits the most of the first lines into the same number of values (more
    values breaking a tie); "," when none splits any."""
    lines = [line for line in text[:_SAMPLE_CHARS].splitlines()[:_SAMPLE_LINES] if line.strip()]
    best, choice = (0, 0), ","
    for delimiter in DELIMITERS:
        counts = Counter(line.count(delimiter) for line in lines)
        counts.pop(0, None)
        if counts:
            splits, lines_split = counts.most_common(1)[0]
            if (lines_split, splits) > best:
                best, choice = (lines_split, splits), delimiter
    return choice


def _is_text(value: object) -> bool:
    """Whether a value reads as text: not a number, a percentage, an amount or a date."""
    value = str(value).strip()
    return not (_NUMBER.fullmatch(value) or _DATE.fullmatch(value))
