"""Alembic's environment for the product's database. `runtime.schema` runs it with a
connection already inside a transaction (and holding the migration lock), so every revision in
versions/ runs in that one transaction: all of an upgrade is done, or none of it. Revisions
are found by alembic in versions/, whoever wrote them: nothing here names one."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations through runtime.schema (anastrozole-cds db upgrade)")
context.configure(connection=connection, target_metadata=None)
context.run_migrations()
