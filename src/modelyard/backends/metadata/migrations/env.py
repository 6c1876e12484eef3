"""Alembic environment: runs on the connection that ``_migrate.upgrade`` hands over."""

from alembic import context

from modelyard.backends.metadata._tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
