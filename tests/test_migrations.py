"""Schema migrations through Alembic: the revisions form one line ending at this program's schema version, a
database migrated from the first version has exactly the models' schema, a failed migration changes nothing, a
database from a newer program is refused untouched, and opening a current database does not import Alembic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from kb.errors import SchemaError
from kb.storage.database import default_url, open_database
from kb.storage.migrations import FOLDER
from kb.storage.models import SCHEMA_VERSION, VERSION_TABLE, Base
from tests.databases import Database, back_to_version_1, back_to_version_4_keywords, execute_sql

pytestmark = pytest.mark.databases("sqlite", "postgresql")

ROOT = Path(__file__).resolve().parent.parent


def url_of(database: Database, folder: Path) -> str:
    return database.url() or default_url(folder)


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(query))]
    finally:
        engine.dispose()


@pytest.mark.databases("sqlite")
def test_the_revisions_form_one_line_ending_at_the_schema_version() -> None:
    """Revision N makes version N from N - 1, in the file named after it; the newest is ``SCHEMA_VERSION``."""
    script = ScriptDirectory(str(FOLDER))
    newest_first = list(script.walk_revisions())
    assert script.get_heads() == [str(SCHEMA_VERSION)] and script.get_bases() == ["2"]
    assert [revision.revision for revision in newest_first] == [str(n) for n in range(SCHEMA_VERSION, 1, -1)]
    for revision in newest_first:
        assert revision.down_revision == (None if revision.revision == "2" else str(int(revision.revision) - 1))
        assert Path(revision.path).name.startswith(f"{revision.revision}_")


def test_a_database_migrated_from_version_1_has_the_schema_of_the_models(database: Database, tmp_path: Path) -> None:
    url = url_of(database, tmp_path)
    open_database(url).kw["bind"].dispose()
    execute_sql(url, *back_to_version_1(database.kind))
    engine = open_database(url).kw["bind"]
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
            assert context.get_current_revision() == str(SCHEMA_VERSION)
    finally:
        engine.dispose()
    assert rows(url, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


def test_a_failed_migration_leaves_the_database_as_it_was(database: Database, tmp_path: Path) -> None:
    """Every revision runs in the one transaction of the schema lock: the last one failing undoes the first."""
    url = url_of(database, tmp_path)
    open_database(url).kw["bind"].dispose()
    execute_sql(url, *back_to_version_1(database.kind), "CREATE TABLE postings_v4 (term VARCHAR(8))")
    with pytest.raises(Exception, match="postings_v4"):  # revision 5 cannot rename postings to postings_v4
        open_database(url)
    assert rows(url, "SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    with pytest.raises(Exception, match="schedule"):  # revision 2's column is gone with the rest
        rows(url, "SELECT schedule FROM sources")


def test_a_database_of_a_newer_program_is_refused_untouched(database: Database, tmp_path: Path) -> None:
    url = url_of(database, tmp_path)
    open_database(url).kw["bind"].dispose()
    newer = SCHEMA_VERSION + 1
    execute_sql(url, *back_to_version_4_keywords(database.kind),  # a schema this program would not read
                f"UPDATE meta SET value = '{newer}' WHERE key = 'schema_version'",
                f"UPDATE {VERSION_TABLE} SET version_num = '{newer}'")
    with pytest.raises(SchemaError, match=f"schema version {newer}, newer than this program's {SCHEMA_VERSION}"):
        open_database(url)
    assert rows(url, f"SELECT version_num FROM {VERSION_TABLE}") == [(str(newer),)]
    with pytest.raises(Exception, match="keyword_terms"):
        rows(url, "SELECT count(*) FROM keyword_terms")


def test_alembic_tables_without_meta_are_refused(database: Database, tmp_path: Path) -> None:
    """Alembic's table of this program without ``meta``: a half-made or foreign database, not an empty one."""
    url = url_of(database, tmp_path)
    execute_sql(url, f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL)")
    with pytest.raises(SchemaError, match="not made by this program"):
        open_database(url)


def test_opening_a_current_database_does_not_import_alembic(database: Database, tmp_path: Path) -> None:
    """Alembic is for changing the schema: a process that opens a current database never pays for importing it."""
    url = url_of(database, tmp_path)
    open_database(url).kw["bind"].dispose()
    probe = ("import sys; from kb.storage.database import open_database, schema_version; "
             f"print(schema_version(open_database({url!r})), 'alembic' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.split() == [str(SCHEMA_VERSION), "False"]
