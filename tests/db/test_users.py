"""``portal.users`` against real PostgreSQL: the account rules the Users page and ``portal user``
share, when two admins act at once or a page's own checks are bypassed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from portal import signin, users
from portal.actor import Actor, cli_actor
from portal.config import get_settings
from portal.db import get_engine, session_scope
from portal.errors import AuthError, PermissionDenied, PortalError, ValidationError
from tests.conftest import DatabaseHandle
from tests.factories import all_at_once, make_user, user_admin_events

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
    said = []
    for name in ("typo", "target", "target"):
        with session_scope() as s:
            said.append(users.unlock(session=s, actor=cli_actor(), username=name).said(name))
    assert said == [
        "typo was not locked; its 1 failed sign-in has been cleared",
        "target has been unlocked",
        "target is not locked and has no failed sign-ins; nothing was changed",
    ]
    assert [e[1:] for e in admin_events(fresh_db) if e[2]["action"] == "unlock"] == [
        ("typo", {"action": "unlock", "failed_attempts": 1, "locked_until": None}),
        ("target", {"action": "unlock", "failed_attempts": 3, "locked_until": lock.isoformat()}),
    ]


@pytest.mark.parametrize(
    ("failed_attempts", "said", "recorded"),
    [
        (3, "ran-out was not locked; its 3 failed sign-ins have been cleared", True),
        (0, "ran-out is not locked and has no failed sign-ins; nothing was changed", False),
    ],
)
def test_a_lock_that_ran_out_is_not_unlocked(
    fresh_db: DatabaseHandle, failed_attempts: int, said: str, recorded: bool
) -> None:
    """A lock that ran out is no lock (the next attempt starts the count again): unlocking
    clears only a count left, and with none changes nothing and records no event."""
    add("ran-out")
    with fresh_db.owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE portal.users SET failed_attempts = :n,"
                " locked_until = now() - interval '1 minute' WHERE username = 'ran-out'"
            ),
            {"n": failed_attempts},
        )
    with session_scope() as s:
        unlocked = users.unlock(session=s, actor=cli_actor(), username="ran-out")
    assert (unlocked.lock_lifted, unlocked.failed_attempts) == (False, failed_attempts)
    assert unlocked.said("ran-out") == said
    unlocks = [e[2] for e in admin_events(fresh_db) if e[2]["action"] == "unlock"]
    assert unlocks == (
        [{"action": "unlock", "failed_attempts": 3, "locked_until": None}] if recorded else []
    )


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("kim.example.org", "is not an email address"),  # the @ forgotten
        ("kim@example.org, ann@example.org", "is not an email address"),
        ("kim @example.org", "is not an email address"),
        # A domain cut short: no mail reaches it.
        ("ed@example", "'ed@example' is not a whole email address: 'example', after the @"),
        ("ed@example.", "'example.', after the @, is no full domain name, such as example.org"),
        ("ed@.example.org", "'.example.org', after the @, is no full domain name"),
        ("ed@example..org", "'example..org', after the @, is no full domain name"),
        ("k" * 250 + "@example.org", "262 characters; use at most 254"),
        # Looks right on the Users page, yet no mail would reach it.
        ("kim@exam\u200bple.org", r"invisible or control character \(U\+200B, character 9\)"),
        ("kim\x1b[31m@example.org", r"invisible or control character \(U\+001B, character 4\)"),
    ],
)
def test_an_email_that_is_no_address_is_refused(
    fresh_db: DatabaseHandle, email: str, problem: str
) -> None:
    """It is kept beside the account for admins to write to: a typo would be kept silently."""
    with session_scope() as s, pytest.raises(ValidationError, match=problem):
        users.create_user(
            session=s,
            actor=cli_actor(),
            username="kim",
            display_name="",
            role="viewer",
            password="a temporary password",
            email=email,
        )
    assert admin_events(fresh_db) == []
    with session_scope() as s:
        users.create_user(
            session=s,
            actor=cli_actor(),
            username="kim",
            display_name="",
            role="viewer",
            password="a temporary password",
            email="  Kim.Doe+portal@example.org ",
        )
    with session_scope() as s:
        assert users.get_user(session=s, username="kim").email == "Kim.Doe+portal@example.org"


@contextmanager
def at_the_last_admin_check_together(db: DatabaseHandle) -> Iterator[None]:
    """Hold each thread that reaches the last-admin check (its locking of every active admin)
    until every other one has reached it too, or waits on a lock: the interleaving in which two
    changes have each locked their own account before either checks the admins."""
    arrived: set[int] = set()
    guard = threading.Lock()

    def hold(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "portal.users.active FOR UPDATE" not in statement:
            return
        with guard:
            arrived.add(threading.get_ident())
        with db.superuser.connect() as watch:
            for _ in range(400):
                if len(arrived) > 1 or watch.scalar(
                    text("SELECT count(*) FROM pg_locks WHERE NOT granted")
                ):
                    return
                time.sleep(0.01)
        raise AssertionError("the other admin's change never came")

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", hold)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", hold)


def admins(fresh_db: DatabaseHandle, *names: str) -> list[Actor]:
    with Session(fresh_db.app) as s, s.begin():
        for name in names:
            make_user(s, role="admin", username=name, display_name=name.title())
    return [Actor(name, name.title(), "admin") for name in names]


def run_together(*changes: Callable[[], object]) -> list[object]:
    """Each change in its own transaction and thread, released together: None or the error."""
    outcome: list[object] = [None] * len(changes)

    def work(n: int) -> None:
        try:
            with session_scope() as s:
                changes[n](s)
        except PortalError as exc:
            outcome[n] = exc

    all_at_once(len(changes), work)
    return outcome


def roles(fresh_db: DatabaseHandle) -> dict[str, str]:
    with fresh_db.owner.connect() as conn:
        return dict(conn.execute(text("SELECT username, role FROM portal.users")).all())


def test_two_admins_demoting_two_other_admins_at_once_both_succeed(
    fresh_db: DatabaseHandle,
) -> None:
    """Unrelated changes: each waits for the other's check of the admins, never deadlocks."""
    ann, bob, _, _ = admins(fresh_db, "ann", "bob", "cat", "dan")
    with at_the_last_admin_check_together(fresh_db):
        outcome = run_together(
            lambda s: users.set_role(session=s, actor=ann, username="cat", role="editor"),
            lambda s: users.set_active(session=s, actor=bob, username="dan", active=False),
        )
    assert outcome == [None, None]
    assert roles(fresh_db) == {"ann": "admin", "bob": "admin", "cat": "editor", "dan": "admin"}
    assert sorted(e[2]["action"] for e in admin_events(fresh_db)) == ["disable", "set_role"]


@pytest.mark.parametrize("admins_at_start", [2, 3])
def test_two_admins_demoting_each_other_at_once_one_is_refused_as_no_longer_an_admin(
    fresh_db: DatabaseHandle, admins_at_start: int
) -> None:
    """The first demotion wins; the second was asked by someone who is no longer an admin by
    then, so it is refused as such (not as a collision to try again) and changes nothing."""
    ann, bob, *_ = admins(fresh_db, *["ann", "bob", "cat"][:admins_at_start])
    with at_the_last_admin_check_together(fresh_db):
        outcome = run_together(
            lambda s: users.set_role(session=s, actor=ann, username="bob", role="editor"),
            lambda s: users.set_role(session=s, actor=bob, username="ann", role="editor"),
        )
    [refused] = [o for o in outcome if o is not None]
    assert isinstance(refused, PermissionDenied), repr(refused)
    assert "no longer an active admin" in str(refused)
    now = roles(fresh_db)
    assert sorted(now[name] for name in ("ann", "bob")) == ["admin", "editor"]
    assert [e[2]["action"] for e in admin_events(fresh_db)] == ["set_role"]


@pytest.mark.parametrize("demotion", ["role", "disable"])
def test_an_admin_demoted_a_moment_ago_cannot_reset_a_password_or_unlock(
    fresh_db: DatabaseHandle, demotion: str
) -> None:
    """Bob's page read him as an admin just before Ann demoted or disabled him: his reset of
    Ann's password (which would let him sign in as her, an admin), his new admin account and his
    unlock are refused as a role change of his would be, and change nothing."""
    ann, bob = admins(fresh_db, "ann", "bob")
    with session_scope() as s:
        if demotion == "role":
            users.set_role(session=s, actor=ann, username="bob", role="editor")
        else:
            users.set_active(session=s, actor=ann, username="bob", active=False)
    with fresh_db.owner.begin() as conn:
        conn.execute(text("UPDATE portal.users SET failed_attempts = 2 WHERE username = 'ann'"))
    for change in (
        lambda s: users.reset_password(
            session=s, actor=bob, username="ann", password="bob knows this one now"
        ),
        lambda s: users.create_user(
            session=s,
            actor=bob,
            username="bob2",
            display_name="",
            role="admin",
            password="bob knows this one now",
        ),
        lambda s: users.unlock(session=s, actor=bob, username="ann"),
    ):
        with session_scope() as s, pytest.raises(PermissionDenied, match="no longer an active"):
            change(s)
    with session_scope() as s:
        assert not users.has_password(session=s, username="ann", password="bob knows this one now")
        assert users.get_user(session=s, username="ann").failed_attempts == 2
        assert [u.username for u in users.list_users(session=s)] == ["ann", "bob"]
    assert len(admin_events(fresh_db)) == 1


def test_the_last_two_admins_demoting_themselves_at_once_leave_one(
    fresh_db: DatabaseHandle,
) -> None:
    ann, bob = admins(fresh_db, "ann", "bob")
    with at_the_last_admin_check_together(fresh_db):
        outcome = run_together(
            lambda s: users.set_role(session=s, actor=ann, username="ann", role="viewer"),
            lambda s: users.set_role(session=s, actor=bob, username="bob", role="viewer"),
        )
    [refused] = [o for o in outcome if o is not None]
    assert isinstance(refused, PermissionDenied), repr(refused)
    assert "last active admin" in str(refused)
    assert sorted(roles(fresh_db).values()) == ["admin", "viewer"]
