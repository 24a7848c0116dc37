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
    revision_visible: bool = True  # False: this role may not read alembic_version

    @property
    def up_to_date(self) -> bool:
        return not self.revision_visible or self.schema_revision == self.head_revision


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
        # The app role is not granted alembic_version (it belongs to the owner role).
        visible = session.execute(
            text(
                "SELECT coalesce(has_table_privilege("
                "to_regclass('public.alembic_version'), 'SELECT'), true)"
            )
        ).scalar_one()
        revision = migrate.current_revision(session.connection()) if visible else None
    return DatabaseStatus(
        server_version=row.v,
        database=row.db,
        connected_as=row.who,
        schema_revision=revision,
        head_revision=migrate.head_revision(),
        revision_visible=visible,
    )
