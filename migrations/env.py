"""Alembic environment: connects as the owner role from portal.config and compares only the
``portal`` and ``audit`` schemas (dataset tables in ``data`` are built at run time)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from portal.config import get_settings
from portal.models import Base

MANAGED_SCHEMAS = {"portal", "audit"}


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name in MANAGED_SCHEMAS
    return True


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:  # handed in by portal.migrate (tests, CLI)
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().migration_url()
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        include_schemas=True,
        include_name=include_name,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run `portal migrate`")
run_migrations()
