"""Version 2 -> 3: image chunks get a row with their picture's name, size, hash and preview."""

import sqlalchemy as sa
from alembic import op

revision = "3"
down_revision = "2"


def upgrade() -> None:
    op.create_table("images",
                    sa.Column("chunk_id", sa.Integer, sa.ForeignKey("chunks.id", ondelete="CASCADE"),
                              primary_key=True),
                    sa.Column("name", sa.Text, nullable=False),
                    sa.Column("width", sa.Integer, nullable=False),
                    sa.Column("height", sa.Integer, nullable=False),
                    sa.Column("sha256", sa.String(64), nullable=False),
                    sa.Column("preview", sa.LargeBinary, nullable=False))
    op.create_index("ix_images_sha256", "images", ["sha256"])
