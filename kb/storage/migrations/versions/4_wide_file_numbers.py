"""Version 3 -> 4: a file's size and modification time in nanoseconds are 64-bit. SQLite's INTEGER always was; on
PostgreSQL the 32-bit column made every file fail to store (a time in nanoseconds does not fit)."""

from alembic import op

revision = "4"
down_revision = "3"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE documents ALTER COLUMN size TYPE BIGINT, ALTER COLUMN mtime_ns TYPE BIGINT")
