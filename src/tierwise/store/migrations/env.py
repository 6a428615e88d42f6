"""Alembic environment: always called with a live connection by ``tierwise.store.control``."""

from alembic import context

from tierwise.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
