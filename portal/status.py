"""What the portal can say about its own health: database reachable, version, schema revision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from portal import migrate
from portal.db import session_scope


@dataclass(frozen=True)
class DatabaseStatus:
    server_version: str
    database: str
    connected_as: str
    schema_revision: str | None
    head_revision: str

    @property
    def up_to_date(self) -> bool:
        return self.schema_revision == self.head_revision

    @property
    def what_to_do(self) -> str:
        """What brings a database that is not up to date to the code's revision: a migration,
        or, at a revision this code does not know (a newer portal migrated it), that portal."""
        if migrate.unknown_revision_problem(self.schema_revision) is not None:
            return (
                f"the database is at revision {self.schema_revision}, which a newer version of "
                "the portal wrote: run that version (or a newer one) instead of this one"
            )
        return "run `portal migrate`"


def database_status() -> DatabaseStatus:
    """Ask PostgreSQL who and where we are.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
    """
    with session_scope() as session:
        row = session.execute(
            text(
                "SELECT current_setting('server_version') AS v, current_database() AS db,"
                " current_user AS who"
            )
        ).one()
        # Migration 0001 lets the app role read alembic_version.
        revision = migrate.current_revision(session.connection())
    return DatabaseStatus(
        server_version=row.v,
        database=row.db,
        connected_as=row.who,
        schema_revision=revision,
        head_revision=migrate.head_revision(),
    )
