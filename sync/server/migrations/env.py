"""Alembic environment of the server store: always run on a connection handed in by ``sync.server.migrate``."""

from alembic import context

from sync.server.store.tables import md

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only sync.server.migrate runs these scripts
    raise RuntimeError("Server migrations run only through sync.server.migrate (sprx-server init / db upgrade).")

context.configure(connection=connection, target_metadata=md, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
