"""Schema migrations, run by Alembic on the connection of the schema transaction (``database.schema_transaction``).

``versions/`` holds one revision per schema version; a revision's id is the version it makes ("5" turns version 4
into 5), and version 1, the first schema, is Alembic's base. ``meta.schema_version`` stays the version of record:
opening a current database reads it without importing Alembic, and older programs read it to refuse a newer
database. Alembic's own table (``VERSION_TABLE``) is set from it before every upgrade.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from kb.errors import SchemaError
from kb.storage.models import VERSION_TABLE

FOLDER = Path(__file__).parent  # env.py and versions/: Alembic's script location
_ONE_AT_A_TIME = threading.Lock()  # Alembic's ``op`` and ``context`` are module globals: one run per process


@cache
def _revisions() -> ScriptDirectory:
    """The revision files, read once per process."""
    return ScriptDirectory(str(FOLDER))


def _revision(version: int) -> str:
    return "base" if version == 1 else str(version)


def upgrade(connection: Connection, version: int) -> None:
    """A database at schema ``version`` brought to the newest revision, in the connection's transaction."""
    if version != 1 and str(version) not in {script.revision for script in _revisions().walk_revisions()}:
        raise SchemaError(f"no migration from schema version {version}; rebuild the knowledge base")
    config = Config()  # no ini file: this folder, and the connection for env.py
    config.set_main_option("script_location", str(FOLDER))
    config.attributes["connection"] = connection
    with _ONE_AT_A_TIME:
        command.stamp(config, _revision(version), purge=True)
        command.upgrade(config, "head")


def stamp_newest(connection: Connection) -> None:
    """A database just created from the models recorded at the newest revision."""
    MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).stamp(_revisions(), "head")
