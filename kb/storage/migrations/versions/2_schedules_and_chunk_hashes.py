"""Version 1 -> 2: sources gain a schedule; chunks gain a text hash so identical text is embedded once."""

import sqlalchemy as sa
from alembic import op

from kb.storage.models import text_hash

revision = "2"
down_revision = None


def upgrade() -> None:
    op.add_column("sources", sa.Column("schedule", sa.String(256)))
    op.add_column("sources", sa.Column("next_run_at", sa.DateTime))  # DATETIME on SQLite, TIMESTAMP on PostgreSQL
    op.add_column("chunks", sa.Column("text_hash", sa.String(64), nullable=False, server_default=""))
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, text FROM chunks")).all()
    if rows:
        connection.execute(sa.text("UPDATE chunks SET text_hash = :hash WHERE id = :id"),
                           [{"id": chunk_id, "hash": text_hash(chunk_text)} for chunk_id, chunk_text in rows])
    op.create_index("ix_chunks_text_hash", "chunks", ["text_hash"])
