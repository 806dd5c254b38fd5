"""Version 7 -> 8: each source's mounts as its last run found them (``sources.mounts``, JSON text), so that a share
found unmounted is not taken for its files' deletion; empty until a source's next run records them."""

import sqlalchemy as sa
from alembic import op

revision = "8"
down_revision = "7"


def upgrade() -> None:
    op.add_column("sources", sa.Column("mounts", sa.Text, nullable=True))
