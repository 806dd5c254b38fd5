"""Version 8 -> 9: the files of its source each document shows but does not hold (``documents.referenced_files``,
JSON: an HTML or Markdown page's pictures), so that a picture changed reads its page again; empty until a document
is next read."""

import sqlalchemy as sa
from alembic import op

revision = "9"
down_revision = "8"


def upgrade() -> None:
    op.add_column("documents", sa.Column("referenced_files", sa.JSON, nullable=True))
