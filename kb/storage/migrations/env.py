"""Alembic's environment for the knowledge base's revisions: they run on the connection handed over by
``kb.storage.migrations``, inside its transaction (they neither begin nor commit one)."""

from alembic import context

from kb.storage.models import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
