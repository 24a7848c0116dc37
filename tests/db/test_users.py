"""``portal.users`` against real PostgreSQL: the account rules the Users page and ``portal user``
share, when two admins act at once or a page's own checks are bypassed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from portal import signin, users
from portal.actor import Actor, cli_actor
from portal.config import get_settings
from portal.db import session_scope
from portal.errors import AuthError, PermissionDenied, ValidationError
from tests.conftest import DatabaseHandle
from tests.factories import user_admin_events

pytestmark = pytest.mark.db


def admin_events(db: DatabaseHandle) -> list[tuple[str, str, dict[str, Any]]]:
    return user_admin_events(db.owner)


def wait_until_someone_waits_on_a_lock(db: DatabaseHandle) -> None:
    with db.superuser.connect() as conn:
        for _ in range(200):
            if conn.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                return
            time.sleep(0.05)
    raise AssertionError("the second admin never waited for the first")


def add(username: str) -> None:
    with session_scope() as s:
        users.create_user(
            session=s,
            actor=cli_actor(),
            username=username,
            display_name="",
            role="viewer",
            password="a temporary password",
        )


def test_two_admins_adding_one_username_at_once_are_told_it_is_taken(
    fresh_db: DatabaseHandle,
) -> None:
    """The second is told the name is taken, as when they add it one after the other, rather
    than meeting the unique constraint as an unexplained database error."""
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            add("kim")
        except BaseException as exc:  # looked at below
            outcome.append(exc)
        else:
            outcome.append(None)

    other = threading.Thread(target=second)
    with session_scope() as s:
        users.create_user(
            session=s,
            actor=cli_actor(),
            username="kim",
            display_name="",
            role="editor",
            password="the first temporary password",
        )
        other.start()
        wait_until_someone_waits_on_a_lock(fresh_db)
    other.join(timeout=60)
    assert len(outcome) == 1
    assert isinstance(outcome[0], ValidationError), repr(outcome[0])
    assert "'kim' is taken" in str(outcome[0])
    assert [e[2] for e in admin_events(fresh_db)] == [
        {"action": "create", "role": "editor", "must_change_password": False}
    ]


def test_an_admin_cannot_reset_their_own_password(fresh_db: DatabaseHandle) -> None:
    """Their own is changed on the Account page, which asks for the current one first."""
    with session_scope() as s:
        boss = users.create_user(
            session=s,
            actor=cli_actor(),
            username="boss",
            display_name="",
            role="admin",
            password="the boss's password",
        )
        me = Actor(username=boss.username, display_name="Boss", role="admin")
    with session_scope() as s, pytest.raises(PermissionDenied, match="Account page"):
        users.reset_password(
            session=s, actor=me, username="Boss", password="a password of my choosing"
        )
    assert [e[2]["action"] for e in admin_events(fresh_db)] == ["create"]
    with session_scope() as s:
        assert users.has_password(session=s, username="boss", password="the boss's password")


def test_a_display_name_is_at_most_100_characters(fresh_db: DatabaseHandle) -> None:
    """The Users page's field stops at 100; ``portal user add --display-name`` is held to it
    here."""
    with session_scope() as s, pytest.raises(ValidationError, match="101 characters; use at most"):
        users.create_user(
            session=s,
            actor=cli_actor(),
            username="wordy",
            display_name="x" * 101,
            role="viewer",
            password="a temporary password",
        )
    with session_scope() as s:
        created = users.create_user(
            session=s,
            actor=cli_actor(),
            username="wordy",
            display_name=" Just  a\tname " + "x" * 86,
            role="viewer",
            password="a temporary password",
        )
        assert created.display_name == "Just a name " + "x" * 86
    assert [e[1] for e in admin_events(fresh_db)] == ["wordy"]


def test_an_unlock_is_recorded_with_what_it_cleared(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lifting a lock in force (perhaps mid-attack) and clearing a count of typos are told
    apart in the log: the event keeps the count and the lock as they were."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "3")
    get_settings.cache_clear()
    add("typo")
    add("target")
    for name, guesses in (("typo", 1), ("target", 3)):
        for _ in range(guesses):
            with pytest.raises(AuthError):
                signin.authenticate(name, "a wrong guess")
    with fresh_db.owner.connect() as conn:
        lock = conn.scalar(text("SELECT locked_until FROM portal.users WHERE username = 'target'"))
    for name in ("typo", "target"):
        with session_scope() as s:
            users.unlock(session=s, actor=cli_actor(), username=name)
    assert [e[1:] for e in admin_events(fresh_db) if e[2]["action"] == "unlock"] == [
        ("typo", {"action": "unlock", "failed_attempts": 1, "locked_until": None}),
        ("target", {"action": "unlock", "failed_attempts": 3, "locked_until": lock.isoformat()}),
    ]
