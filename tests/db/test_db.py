"""``session_scope()`` commits what its block did, or nothing at all."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from audit.events import record_event
from portal.db import NUL_REFUSED, session_scope
from portal.errors import DatabaseUnavailable, ValidationError
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.db


def _events(db: DatabaseHandle) -> list[str]:
    with db.app.connect() as conn:
        return list(conn.scalars(text("SELECT actor_username FROM audit.event ORDER BY id")))


def test_session_scope_commits_on_success(fresh_db: DatabaseHandle) -> None:
    with session_scope() as session:
        record_event(session=session, kind="sign_in", actor_username="kept")
    assert _events(fresh_db) == ["kept"]


def test_session_scope_rolls_back_on_error(fresh_db: DatabaseHandle) -> None:
    with pytest.raises(RuntimeError, match="boom"), session_scope() as session:
        record_event(session=session, kind="sign_in", actor_username="lost")
        raise RuntimeError("boom")
    assert _events(fresh_db) == []


def test_a_nul_in_a_text_parameter_is_a_clear_error_and_nothing_is_kept(
    fresh_db: DatabaseHandle,
) -> None:
    """psycopg2 refuses a NUL in a string parameter with a bare ValueError, before PostgreSQL
    sees it: the scope rolls back what came before and says what is wrong."""
    with pytest.raises(ValidationError, match="NUL character") as raised, session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="lost")
        record_event(session=s, kind="sign_in", actor_username="nul\x00here")
    assert raised.value.args == (NUL_REFUSED,)
    assert _events(fresh_db) == []
    with pytest.raises(ValueError, match="not a NUL"), session_scope():  # others pass through
        raise ValueError("not a NUL")


def test_unreachable_database_is_a_clear_error(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal.db import reset_engine

    monkeypatch.setenv("PORTAL_DATABASE_URL", "postgresql+psycopg2://portal_app:x@127.0.0.1:9/x")
    reset_engine()
    with pytest.raises(DatabaseUnavailable, match="database is unavailable"), session_scope() as s:
        s.execute(text("SELECT 1"))


def test_status_reports_the_schema_revision_to_the_app_role(fresh_db: DatabaseHandle) -> None:
    from portal import migrate
    from portal.status import database_status

    status = database_status()
    assert status.connected_as == "portal_app"
    assert status.schema_revision == migrate.head_revision()
    assert status.up_to_date


def test_status_says_what_brings_an_old_or_a_newer_schema_in_line() -> None:
    """Home tells an admin what to do: a migration for an older schema; for one a newer portal
    wrote, that portal (`portal migrate` cannot go there, nor back)."""
    from portal import migrate
    from portal.status import DatabaseStatus

    head = migrate.head_revision()
    older = DatabaseStatus("15", "portal", "portal_app", "0010", head)
    newer = DatabaseStatus("15", "portal", "portal_app", "0099_newer", head)
    assert older.what_to_do == "run `portal migrate`"
    assert "newer version of the portal" in newer.what_to_do
    assert "portal migrate" not in newer.what_to_do
