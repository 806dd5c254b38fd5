"""Version 6 -> 7: the keyword index's generation (``keyword_totals.generation``), advanced by every write of
postings or keyword totals, so that a process can keep decoded postings between searches and know when they are
stale."""

import sqlalchemy as sa
from alembic import op

revision = "7"
down_revision = "6"


def upgrade() -> None:
    op.add_column("keyword_totals", sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"))
