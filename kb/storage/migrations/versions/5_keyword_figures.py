"""Version 4 -> 5: postings carry their chunk's keyword length (on PostgreSQL in the primary key's index too), so
BM25 scores the postings alone; the terms' document frequencies and the chunk count and length sum live in two
small tables instead of being counted at every search. The postings are copied into the new table (an UPDATE of
every row costs ten times as much); any whose chunk is gone, which doctor would remove, are left behind."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from kb.storage import bm25

revision = "5"
down_revision = "4"


def upgrade() -> None:
    op.execute("ALTER TABLE postings RENAME TO postings_v4")
    op.execute("DROP INDEX ix_postings_chunk")
    if op.get_bind().dialect.name == "postgresql":  # the old key's index would take the new one's name
        op.execute("ALTER INDEX postings_pkey RENAME TO postings_v4_pkey")
    op.create_table("postings",
                    sa.Column("term", sa.String(128), nullable=False),
                    sa.Column("chunk_id", sa.Integer, sa.ForeignKey("chunks.id", ondelete="CASCADE"),
                              nullable=False),
                    sa.Column("tf", sa.Integer, nullable=False),
                    sa.Column("length", sa.Integer, nullable=False),
                    sa.PrimaryKeyConstraint("term", "chunk_id", postgresql_include=["tf", "length"]),
                    sqlite_with_rowid=False)
    op.create_index("ix_postings_chunk", "postings", ["chunk_id"])
    op.create_table("keyword_terms",
                    sa.Column("term", sa.String(128), primary_key=True),
                    sa.Column("chunks", sa.Integer, nullable=False),
                    sqlite_with_rowid=False)
    op.create_table("keyword_totals",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("chunks", sa.BigInteger, nullable=False),
                    sa.Column("length", sa.BigInteger, nullable=False))
    op.execute("INSERT INTO postings (term, chunk_id, tf, length) SELECT p.term, p.chunk_id, p.tf, "
               "c.keyword_length FROM postings_v4 p JOIN chunks c ON c.id = p.chunk_id")
    op.execute("DROP TABLE postings_v4")
    bm25.recount(Session(bind=op.get_bind()))
