"""Values SQLite let into a column of another type, written from outside this program: SQLite keeps what it is
given (text in an integer column, a date that is not one, JSON that does not parse, a NUL inside a path), and read
back such a value failed deep inside a search, a check or a listing. Found here, it is one line: ``kb doctor``
reads every table, and opening a knowledge base reads the small ones every command reads. PostgreSQL refuses such
values itself."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Float, Integer, LargeBinary, String, Table, text
from sqlalchemy.orm import Session

from kb.storage.models import Base

# The tables every command reads at opening or before a search: a handful of rows each, so checked at every opening.
SMALL_TABLES = ("meta", "sources", "spaces", "keyword_totals")
PATH_COLUMNS = frozenset({("sources", "path"), ("documents", "path"), ("documents", "relpath")})  # read as file names
# How SQLAlchemy writes a DateTime in SQLite; SQLite's datetime() then says whether it is a real date and time.
DATE_TIME = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*"
SHOWN = 40  # characters of a wrong value quoted
READ = 16384  # bytes of it read, enough to reach a NUL in the longest path (4,096 characters)


def mistyped_values(session: Session, tables: Iterable[str] | None = None) -> list[str]:
    """Each column of ``tables`` (default: all) holding values that are not its type, with how many rows and the
    first of them (its key and the value's start), as ``table.column in N row(s) (id=5: 'x')``; none on a database
    other than SQLite."""
    if session.get_bind().dialect.name != "sqlite":
        return []
    found = []
    for name in tables or Base.metadata.tables:
        table = Base.metadata.tables[name]
        checks = {column.name: condition for column in table.columns if (condition := _wrong(table, column))}
        if not checks:
            continue
        counts = session.execute(text("SELECT " + ", ".join(f"COALESCE(SUM({condition}), 0)"
                                                            for condition in checks.values())
                                      + f" FROM {_quoted(name)}")).one()
        for (column, condition), count in zip(checks.items(), counts, strict=True):
            if count:
                found.append(f"{name}.{column} in {count} row(s) ({_first(session, table, column, condition)})")
    return found


def _wrong(table: Table, column: Column) -> str | None:
    """SQL that is true where ``column`` holds a value its type cannot read back (None where any value reads)."""
    quoted = _quoted(column.name)
    kind = column.type
    if isinstance(kind, (Integer, BigInteger, Boolean)):
        return f"typeof({quoted}) NOT IN ('integer', 'null')"
    if isinstance(kind, Float):
        return f"typeof({quoted}) NOT IN ('real', 'integer', 'null')"
    if isinstance(kind, DateTime):
        return (f"typeof({quoted}) != 'null' AND (typeof({quoted}) != 'text' OR {quoted} NOT GLOB '{DATE_TIME}' "
                f"OR datetime({quoted}) IS NULL)")
    if isinstance(kind, JSON):
        return f"typeof({quoted}) != 'null' AND (typeof({quoted}) != 'text' OR NOT json_valid({quoted}))"
    if isinstance(kind, LargeBinary):
        return f"typeof({quoted}) NOT IN ('blob', 'null')"
    if isinstance(kind, String):  # Text too
        nul = f" OR instr({quoted}, char(0)) > 0" if (table.name, column.name) in PATH_COLUMNS else ""
        return f"typeof({quoted}) NOT IN ('text', 'null'){nul}"
    return None


def _first(session: Session, table: Table, column: str, condition: str) -> str:
    """The key of the first row ``condition`` holds for, and the start of its value (text read as bytes, so that
    neither a NUL nor broken UTF-8 stops the message)."""
    keys = [key.name for key in table.primary_key.columns]
    quoted = _quoted(column)
    *key_values, kind, value = session.execute(text(
        f"SELECT {', '.join(map(_quoted, keys))}, typeof({quoted}), substr(CAST({quoted} AS BLOB), 1, {READ}) "
        f"FROM {_quoted(table.name)} WHERE {condition} LIMIT 1")).one()
    if kind == "text":
        decoded = value.decode("utf-8", errors="replace")
        start = max(0, decoded.find("\0") - SHOWN // 2)  # a NUL inside a path is shown, however far in
        shown = ("..." if start else "") + repr(decoded[start:start + SHOWN])
    else:
        shown = "a blob" if kind == "blob" else repr(value.decode("ascii", errors="replace"))
    return ", ".join(f"{key}={key_value}" for key, key_value in zip(keys, key_values, strict=True)) + f": {shown}"


def _quoted(name: str) -> str:
    """A table or column name as SQL quotes it."""
    return '"' + name.replace('"', '""') + '"'
