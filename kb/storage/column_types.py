"""Values SQLite let into a column of another type, written from outside this program: SQLite keeps what it is
given (text in an integer column, a date that is not one, JSON that does not parse or is not the shape read back, a
NUL inside a path, text that is not UTF-8), and read back such a value failed deep inside a search, a check or a
listing. Found here, it is one line: ``kb doctor`` reads every table, opening a knowledge base reads the small ones
every command reads, and a read that fails in Python reads them all. PostgreSQL refuses such values itself."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, LargeBinary, String, Table, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from kb.storage.models import Base

# The tables every command reads at opening or before a search: a handful of rows each, so checked at every opening.
SMALL_TABLES = ("meta", "sources", "spaces", "keyword_totals")
PATH_COLUMNS = frozenset({("sources", "path"), ("documents", "path"), ("documents", "relpath")})  # read as file names
# Each JSON column's shape as the code reads it: the JSON type of the whole, and of each member. (SQLite stores a
# bare JSON number as a number, not text: none of these is one.)
JSON_SHAPES: dict[tuple[str, str], tuple[str, str]] = {
    ("documents", "warnings"): ("array", "text"),
    ("documents", "pages"): ("array", "array"),
    ("documents", "referenced_files"): ("array", "array"),
    ("runs", "counts"): ("object", "integer"),
    ("runs", "failures"): ("array", "object"),
}
MEMBER_TEXTS = {("runs", "failures"): ("path", "reason")}  # the text fields each member object must hold
# How SQLAlchemy writes a DateTime in SQLite: the date and time, then up to six digits of a second.
DATE_TIME = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
NOT_UTF8 = "kb_not_utf8"  # registered on each SQLite connection: SQLite keeps any bytes as text, sqlite3 reads UTF-8
SHOWN = 40  # characters of a wrong value quoted
READ = 16384  # bytes of it read, enough to reach a NUL in the longest path (4,096 characters)


def mistyped_values(session: Session, tables: Iterable[str] | None = None) -> list[str]:
    """Each column of ``tables`` (default: all) that is gone or holds values not of its type, the latter with how
    many and the first (its row's key and the value's start), as ``table.column: N value(s) not of its type (id=5:
    'x')``; none on a database other than SQLite."""
    if session.get_bind().dialect.name != "sqlite":
        return []
    json = _has_json(session)
    found = []
    for name in tables or Base.metadata.tables:
        table = Base.metadata.tables[name]
        present = {row[1] for row in session.execute(text(f"PRAGMA table_info({_quoted(name)})"))}
        found += [f"{name}.{column.name}: the column is gone" for column in table.columns
                  if column.name not in present]
        checks = {column.name: condition for column in table.columns
                  if column.name in present and (condition := wrong_value(table, column, json=json))}
        if not checks:
            continue
        counts = session.execute(text("SELECT " + ", ".join(f"COALESCE(SUM({condition}), 0)"
                                                            for condition in checks.values())
                                      + f" FROM {_quoted(name)}")).one()
        found += [f"{name}.{column}: {count} value(s) not of its type ({_first(session, table, column, condition)})"
                  for (column, condition), count in zip(checks.items(), counts, strict=True) if count]
    return found


def wrong_value(table: Table, column: Column, *, json: bool = True) -> str | None:
    """SQL that is true where ``column`` holds a value its type cannot read back (JSON unchecked without
    ``json``: SQLite built without its JSON functions)."""
    value = f"{_quoted(table.name)}.{_quoted(column.name)}"  # qualified: a column gone is an error, not a string
    kind = column.type
    if isinstance(kind, (Integer, Boolean)):
        return f"typeof({value}) NOT IN ('integer', 'null')"
    if isinstance(kind, DateTime):  # the date read back as written: not 30 February, not 24:00
        return (f"typeof({value}) != 'null' AND (typeof({value}) != 'text' OR {value} NOT GLOB '{DATE_TIME}*' "
                f"OR datetime(substr({value}, 1, 19), '+0 days') IS NOT substr({value}, 1, 19) "
                f"OR (length({value}) > 19 AND (substr({value}, 20, 1) != '.' OR length({value}) > 26 "
                f"OR substr({value}, 21) GLOB '*[^0-9]*' OR length({value}) = 20)))")
    if isinstance(kind, JSON):
        if not json:
            return None
        whole, member = JSON_SHAPES[(table.name, column.name)]
        fields = "".join(f" OR json_type(json_each.value, '$.{field}') IS NOT 'text'"
                         for field in MEMBER_TEXTS.get((table.name, column.name), ()))
        return (f"CASE WHEN typeof({value}) = 'null' THEN 0 "  # each step only where the last held (JSON parsed)
                f"WHEN typeof({value}) != 'text' OR NOT json_valid({value}) THEN 1 "
                f"WHEN json_type({value}) NOT IN ('{whole}', 'null') THEN 1 "
                f"ELSE EXISTS (SELECT 1 FROM json_each({value}) WHERE json_each.type != '{member}'{fields}) END")
    if isinstance(kind, LargeBinary):
        return f"typeof({value}) NOT IN ('blob', 'null')"
    if isinstance(kind, String):  # Text too
        nul = f" OR instr({value}, char(0)) > 0" if (table.name, column.name) in PATH_COLUMNS else ""
        return f"typeof({value}) NOT IN ('text', 'null') OR {NOT_UTF8}(CAST({value} AS BLOB)){nul}"
    return None


def not_utf8(stored: bytes | None) -> bool:
    """:data:`NOT_UTF8`: whether text SQLite holds is bytes that are not UTF-8 (written from outside, or a damaged
    page's), which every read of its row fails on."""
    if stored is None:
        return False
    try:
        stored.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _has_json(session: Session) -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38, an option before)."""
    try:
        session.execute(text("SELECT json_valid('[]')"))
    except OperationalError:
        return False
    return True


def _first(session: Session, table: Table, column: str, condition: str) -> str:
    """The key of the first row ``condition`` holds for, and the start of its value."""
    keys = [key.name for key in table.primary_key.columns]
    quoted = f"{_quoted(table.name)}.{_quoted(column)}"
    *key_values, kind, value = session.execute(text(  # keys read as bytes too: a text key may be the damaged value
        f"SELECT {', '.join(f'CAST({_quoted(key)} AS BLOB)' for key in keys)}, typeof({quoted}), "
        f"substr(CAST({quoted} AS BLOB), 1, {READ}) FROM {_quoted(table.name)} WHERE {condition} LIMIT 1")).one()
    return ", ".join(f"{key}={(key_value or b'').decode('utf-8', errors='replace')}"
                     for key, key_value in zip(keys, key_values, strict=True)) + f": {_shown(kind, value or b'')}"


def _shown(kind: str, value: bytes) -> str:
    """A stored value for a message: text read as bytes (neither a NUL nor broken UTF-8 stops it), from near its
    first NUL if it holds one."""
    if kind == "blob":
        return "a blob"
    decoded = value.decode("utf-8", errors="replace")
    start = max(0, decoded.find("\0") - SHOWN // 2)
    return ("..." if start else "") + repr(decoded[start:start + SHOWN])


def _quoted(name: str) -> str:
    """A table or column name as SQL quotes it."""
    return '"' + name.replace('"', '""') + '"'
