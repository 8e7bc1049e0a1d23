"""Alembic environment: always runs on a connection handed in by sprx (the vault is encrypted)."""

from alembic import context

from sprx_tui.core.models import SQLModel

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - sprx never runs alembic from its own CLI
    raise RuntimeError("Migrations run only through sprx_tui.core.migrations.upgrade().")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
