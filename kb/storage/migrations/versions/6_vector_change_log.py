"""Version 5 -> 6: the change log of each space's vectors (``vector_changes``), and the generation it starts from
(``spaces.logged_from``): an empty log describes no generation before the current one, so every space's log starts
at its current generation, and a process whose index is older loads or rebuilds it as before."""

import sqlalchemy as sa
from alembic import op

revision = "6"
down_revision = "5"


def upgrade() -> None:
    op.create_table("vector_changes",
                    sa.Column("space_id", sa.Integer, sa.ForeignKey("spaces.id", ondelete="CASCADE"),
                              primary_key=True),
                    sa.Column("generation", sa.Integer, primary_key=True),
                    sa.Column("chunk_id", sa.Integer, primary_key=True),
                    sqlite_with_rowid=False)
    op.add_column("spaces", sa.Column("logged_from", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE spaces SET logged_from = generation")
