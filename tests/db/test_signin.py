"""Signing in against real PostgreSQL: passwords, lock-out, no user enumeration, revocation, and
the audit events each leaves."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import signin, users
from portal.actor import cli_actor
from portal.db import session_scope
from portal.errors import AuthError, PermissionDenied, ValidationError
from portal.signin import WRONG_CREDENTIALS
from portal.users import set_active, set_role, unlock
from tests.conftest import PRODUCTION_BCRYPT_ROUNDS, DatabaseHandle
from tests.db.test_users import wait_until_someone_waits_on_a_lock
from tests.factories import audit_events, make_user

pytestmark = pytest.mark.db


def new_user(db: DatabaseHandle, **kwargs: Any) -> tuple[str, str]:
    with Session(db.app) as s, s.begin():
        return make_user(s, **kwargs)


def events(db: DatabaseHandle, *kinds: str) -> list[dict[str, Any]]:
    """The events of ``kinds``; by default, of signing in and out."""
    return audit_events(db.owner, *(kinds or ("sign_in", "sign_in_failed", "lock_out", "sign_out")))


def user_row(db: DatabaseHandle, username: str) -> dict[str, Any]:
    with db.owner.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM portal.users WHERE username = :u"), {"u": username})
            .one()
            ._mapping
        )


def refused(username: str, password: str) -> str:
    with pytest.raises(AuthError) as info:
        signin.authenticate(username, password)
    return str(info.value)


def test_right_password_signs_in_and_is_recorded(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="editor")
    signed = signin.authenticate(f"  {name.upper()} ", password, client_info={"ip": "10.0.0.9"})
    assert (signed.username, signed.role, signed.actor.role) == (name, "editor", "editor")
    assert events(fresh_db) == [
        {
            "kind": "sign_in",
            "actor_username": name,
            "target": name,
            "detail": {"method": "password", "role": "editor"},
        }
    ]
    row = user_row(fresh_db, name)
    assert row["last_sign_in_at"] == signed.since
    assert row["failed_attempts"] == 0


def test_wrong_password_and_unknown_user_get_the_same_answer(fresh_db: DatabaseHandle) -> None:
    name, _ = new_user(fresh_db)
    assert refused(name, "not the password at all") == WRONG_CREDENTIALS
    assert refused("nobody-here", "not the password at all") == WRONG_CREDENTIALS
    assert events(fresh_db) == [
        {
            "kind": "sign_in_failed",
            "actor_username": None,
            "target": name,
            "detail": {"reason": "bad_password", "failed_attempts": 1},
        },
        {
            "kind": "sign_in_failed",
            "actor_username": None,
            "target": "nobody-here",
            "detail": {"reason": "unknown_user", "failed_attempts": 1},
        },
    ]
    assert user_row(fresh_db, name)["failed_attempts"] == 1


def test_unknown_user_costs_a_bcrypt_check_like_a_real_one(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing shortcut for names that do not exist (the real hash here is full-cost)."""
    monkeypatch.setattr(users, "BCRYPT_ROUNDS", PRODUCTION_BCRYPT_ROUNDS)
    with Session(fresh_db.app) as s, s.begin():
        from portal.users import create_user

        create_user(
            session=s,
            actor=cli_actor(),
            username="timed",
            display_name="Timed",
            role="viewer",
            password="correct horse battery",
        )

    def cost(username: str) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            with pytest.raises(AuthError):
                signin.authenticate(username, "wrong horse battery")
            best = min(best, time.perf_counter() - start)
        return best

    cost("nobody")  # warm the dummy hash
    real, unknown = cost("timed"), cost("nobody-at-all")
    assert unknown > 0.5 * real, (real, unknown)


def test_a_refused_cookie_is_recorded_and_locks_nothing_out(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forged or revoked cookie is a failed sign-in in the log (method=cookie), under the name
    it claims, escaped as a typed name is; no lock-out counts it, of the account or of a name
    with none: it guesses no password."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    name, password = new_user(fresh_db)
    client = {"user_agent": "forger"}
    for _ in range(3):
        signin.record_refused_cookie(name, reason="bad_cookie", client_info=client)
        signin.record_refused_cookie("ghost", reason="bad_cookie")
    signin.record_refused_cookie(name, reason="revoked_cookie")
    signin.record_refused_cookie("admin\u200b" + "x" * 100, reason="bad_cookie")
    signin.record_refused_cookie("", reason="bad_cookie")

    refused_ = events(fresh_db, "sign_in_failed")
    bad = {"reason": "bad_cookie", "method": "cookie"}
    assert [(e["target"], e["detail"]) for e in refused_] == [
        *[(name, bad), ("ghost", bad)] * 3,
        (name, {"reason": "revoked_cookie", "method": "cookie"}),
        ("admin\\u200b" + "x" * 58, bad),  # 64 characters, then escaped
        (None, bad),
    ]
    assert all(e["actor_username"] is None for e in refused_)
    assert user_row(fresh_db, name)["failed_attempts"] == 0
    assert signin.authenticate(name, password).username == name
    assert refused("ghost", "a wrong guess") == WRONG_CREDENTIALS  # not locked: the first guess
    assert events(fresh_db, "lock_out") == []


def test_lock_out_after_the_limit_then_open_again_when_it_expires(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "3")
    monkeypatch.setenv("PORTAL_LOCKOUT_MINUTES", "15")
    name, password = new_user(fresh_db)
    assert refused(name, "wrong one") == WRONG_CREDENTIALS
    assert refused(name, "wrong two") == WRONG_CREDENTIALS
    third = refused(name, "wrong three")
    assert "locked" in third
    assert "15 more minutes" in third
    # Locked: even the right password is refused, without saying it was right.
    assert "locked" in refused(name, password)

    row = user_row(fresh_db, name)
    assert row["failed_attempts"] == 3
    assert row["locked_until"] is not None
    kinds = [(e["kind"], e["detail"].get("reason")) for e in events(fresh_db)]
    assert kinds == [
        ("sign_in_failed", "bad_password"),
        ("sign_in_failed", "bad_password"),
        ("sign_in_failed", "bad_password"),
        ("lock_out", None),
        ("sign_in_failed", "locked"),
    ]
    lock = events(fresh_db, "lock_out")[0]
    # Not the account holder's doing: like the failed attempts, it has no actor.
    assert (lock["actor_username"], lock["target"]) == (None, name)
    assert all(e["actor_username"] is None for e in events(fresh_db, "sign_in_failed"))
    assert lock["detail"]["failed_attempts"] == 3
    assert lock["detail"]["minutes"] == 15

    # The lock runs out (moved into the past rather than waited for): the right password works
    # and the count starts again.
    with fresh_db.owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE portal.users SET locked_until = now() - interval '1 second'"
                " WHERE username = :u"
            ),
            {"u": name},
        )
    assert signin.authenticate(name, password).username == name
    row = user_row(fresh_db, name)
    assert (row["failed_attempts"], row["locked_until"]) == (0, None)


def test_expired_lock_gives_a_fresh_count(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    name, _ = new_user(fresh_db)
    refused(name, "wrong one")
    assert "locked" in refused(name, "wrong two")
    with fresh_db.owner.begin() as conn:
        conn.execute(
            text("UPDATE portal.users SET locked_until = now() - interval '1 s'"),
        )
    assert refused(name, "wrong three") == WRONG_CREDENTIALS
    assert user_row(fresh_db, name)["failed_attempts"] == 1


def test_unknown_user_is_locked_out_just_like_a_real_one(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise "locked" would tell an attacker which usernames exist."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "3")
    real, _ = new_user(fresh_db)
    answers = {who: [refused(who, f"wrong {i}") for i in range(4)] for who in (real, "ghost-user")}
    assert answers[real] == answers["ghost-user"]
    assert answers[real][:2] == [WRONG_CREDENTIALS] * 2
    assert all("locked" in a for a in answers[real][2:])
    ghost_locks = [e for e in events(fresh_db, "lock_out") if e["target"] == "ghost-user"]
    assert len(ghost_locks) == 1
    assert ghost_locks[0]["detail"]["unknown_user"] is True

    # Its lock expires too, and then counts afresh.
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("ALTER TABLE audit.event DISABLE TRIGGER USER"))
        conn.execute(
            text(
                "UPDATE audit.event SET occurred_at = occurred_at - interval '1 hour'"
                " WHERE target = 'ghost-user'"
            )
        )
        conn.execute(text("ALTER TABLE audit.event ENABLE TRIGGER USER"))
    assert refused("ghost-user", "again") == WRONG_CREDENTIALS


def test_disabled_user_is_refused(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, active=False)
    message = refused(name, password)
    assert "disabled" in message
    assert refused(name, "a wrong password") == WRONG_CREDENTIALS  # no hint without the password
    assert [(e["kind"], e["detail"]["reason"]) for e in events(fresh_db)] == [
        ("sign_in_failed", "disabled"),
        ("sign_in_failed", "bad_password"),
    ]


def test_admin_unlock_lets_the_user_in(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "1")
    name, password = new_user(fresh_db)
    assert "locked" in refused(name, "wrong")
    with Session(fresh_db.app) as s, s.begin():
        unlock(session=s, actor=cli_actor(), username=name)
    assert signin.authenticate(name, password).username == name
    [detail] = [e["detail"] for e in events(fresh_db, "user_admin")]
    assert (detail["action"], detail["failed_attempts"]) == ("unlock", 1)
    assert detail["locked_until"] is not None  # a lock in force was lifted


# -- sessions ---------------------------------------------------------------------------------


def test_resume_follows_the_database(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="editor")
    signed = signin.authenticate(name, password)
    assert signin.resume(name, since=signed.since).role == "editor"

    with Session(fresh_db.app) as s, s.begin():
        set_role(session=s, actor=cli_actor(), username=name, role="viewer")
    assert signin.resume(name, since=signed.since).role == "viewer"

    with Session(fresh_db.app) as s, s.begin():
        set_active(session=s, actor=cli_actor(), username=name, active=False)
    with pytest.raises(AuthError, match="disabled"):
        signin.resume(name, since=signed.since)
    with pytest.raises(AuthError, match="disabled or no longer exists"):
        signin.resume("never-existed", since=signed.since)


def test_disabling_an_account_ends_its_sign_ins_for_good(fresh_db: DatabaseHandle) -> None:
    """Enabled again, the account needs a new sign-in: a cookie from before (a lost laptop's)
    does not come back to life."""
    name, password = new_user(fresh_db, role="editor")
    before = signin.authenticate(name, password)
    for active in (False, True):
        with Session(fresh_db.app) as s, s.begin():
            set_active(session=s, actor=cli_actor(), username=name, active=active)
    with pytest.raises(AuthError, match="an admin disabled this account since you signed in"):
        signin.resume(name, since=before.since, from_cookie=True)
    after = signin.authenticate(name, password)
    assert signin.resume(name, since=after.since).username == name


def test_an_unknown_name_is_checked_under_its_lock_as_an_account_is_under_its_row_lock(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parallel attempts on one name queue alike whether the account exists or not, so their
    timing does not tell: the bcrypt check of an unknown name runs holding the name's lock."""
    held: list[bool] = []

    def spend(password: str) -> None:
        with fresh_db.app.connect() as other:  # another session tries to take the lock
            free = other.scalar(
                text("SELECT pg_try_advisory_xact_lock(hashtext('portal.signin:' || :n))"),
                {"n": "nobody-here"},
            )
            other.rollback()
        held.append(not free)

    monkeypatch.setattr(signin, "_spend_a_bcrypt_check", spend)
    refused("nobody-here", "a wrong password")
    assert held == [True]


def test_sign_out_ends_earlier_sign_ins_only(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db)
    first = signin.authenticate(name, password)
    signin.sign_out(name, since=first.since, client_info={"ip": "10.1.1.1"})
    with pytest.raises(AuthError, match="signed out"):
        signin.resume(name, since=first.since)
    second = signin.authenticate(name, password)
    assert signin.resume(name, since=second.since).username == name
    assert [e["kind"] for e in events(fresh_db)] == ["sign_in", "sign_out", "sign_in"]
    assert events(fresh_db, "sign_out")[0]["actor_username"] == name


def test_a_session_that_had_ended_signs_nobody_out(fresh_db: DatabaseHandle) -> None:
    """A tab whose session a password change ended still shows Sign out until its next run; its
    click must not be recorded as the person's sign-out, which would end the session they began
    with the new password."""
    name, password = new_user(fresh_db)
    old = signin.authenticate(name, password)
    new = signin.change_own_password(
        name,
        current_password=password,
        new_password="a brand new passphrase",
        confirm_password="a brand new passphrase",
    )
    with pytest.raises(AuthError, match="password was changed"):
        signin.sign_out(name, since=old.since)
    assert events(fresh_db, "sign_out") == []
    assert signin.resume(name, since=new.since).username == name


def test_signing_out_while_locked_out_still_ends_the_other_sessions(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock-out only pauses sessions (they resume once it ends): a sign-out clicked meanwhile
    is recorded, so the person's other browsers do not come back with the unlock."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "1")
    name, password = new_user(fresh_db)
    signed = signin.authenticate(name, password)
    refused(name, "someone guessing")
    signin.sign_out(name, since=signed.since)
    with Session(fresh_db.app) as s, s.begin():
        unlock(session=s, actor=cli_actor(), username=name)
    with pytest.raises(AuthError, match="signed out"):
        signin.resume(name, since=signed.since)


def test_resume_from_cookie_is_recorded(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db)
    signed = signin.authenticate(name, password)
    signin.resume(name, since=signed.since, from_cookie=True)
    assert [e["detail"]["method"] for e in events(fresh_db, "sign_in")] == ["password", "cookie"]


def test_password_reset_by_an_admin_ends_sessions(fresh_db: DatabaseHandle) -> None:
    from portal.users import reset_password

    name, password = new_user(fresh_db)
    signed = signin.authenticate(name, password)
    with Session(fresh_db.app) as s, s.begin():
        reset_password(session=s, actor=cli_actor(), username=name, password="a brand new password")
    with pytest.raises(AuthError, match="password was changed"):
        signin.resume(name, since=signed.since)
    again = signin.authenticate(name, "a brand new password")
    assert again.must_change_password is True


def test_a_password_reset_by_an_admin_lifts_the_lock_out(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone who forgot their password and locked the account trying is given a new one: it
    signs them in, and the guesses at the old one no longer count against them."""
    from portal.users import reset_password

    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    name, _ = new_user(fresh_db)
    refused(name, "forgotten one")
    assert "locked" in refused(name, "forgotten two")
    with Session(fresh_db.app) as s, s.begin():
        reset_password(session=s, actor=cli_actor(), username=name, password="a brand new password")
    assert signin.authenticate(name, "a brand new password").username == name
    row = user_row(fresh_db, name)
    assert (row["failed_attempts"], row["locked_until"]) == (0, None)
    [detail] = [e["detail"] for e in events(fresh_db, "user_admin")]
    assert (detail["action"], detail["failed_attempts"]) == ("reset_password", 2)
    assert detail["locked_until"] is not None  # a lock in force was lifted with it


# -- changing one's own password -----------------------------------------------------------------


def change(name: str, current: str, new: str, confirm: str | None = None) -> signin.SignedIn:
    return signin.change_own_password(
        name,
        current_password=current,
        new_password=new,
        confirm_password=new if confirm is None else confirm,
    )


def test_change_own_password(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, must_change_password=True)
    old = signin.authenticate(name, password)
    new = change(name, password, "my own long password")
    assert new.must_change_password is False
    assert signin.resume(name, since=new.since).username == name  # this session goes on
    with pytest.raises(AuthError, match="password was changed"):
        signin.resume(name, since=old.since)  # every other one ends
    assert signin.authenticate(name, "my own long password").username == name
    assert refused(name, password) == WRONG_CREDENTIALS
    assert events(fresh_db, "user_admin") == [
        {
            "kind": "user_admin",
            "actor_username": name,
            "target": name,
            "detail": {"action": "change_own_password"},
        }
    ]


@pytest.mark.parametrize(
    ("new", "confirm", "message"),
    [
        ("short pass", None, "at least 12"),
        ("é" * 40, None, "at most 72 bytes"),
        ("SAME-AS-NAME", None, "must not be the username"),
        ("a long enough password", "a different password", "differ"),
    ],
)
def test_change_own_password_rules(
    fresh_db: DatabaseHandle, new: str, confirm: str | None, message: str
) -> None:
    name, password = new_user(fresh_db, username="same-as-name")
    with pytest.raises(ValidationError, match=message):
        change(name, password, new, confirm)
    assert events(fresh_db, "user_admin") == []


def test_change_own_password_needs_the_current_one_and_counts_failures(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    name, password = new_user(fresh_db)
    with pytest.raises(ValidationError, match="current password is not correct"):
        change(name, "a guess at it", "a long enough password")
    with pytest.raises(AuthError, match="locked"):
        change(name, "another guess", "a long enough password")
    # Typed in the person's own signed-in session: they are the actor, unlike at the sign-in
    # form, where whoever typed is unknown.
    assert [
        (e["actor_username"], e["target"], e["detail"].get("reason"))
        for e in events(fresh_db, "sign_in_failed")
    ] == [(name, name, "bad_current_password")] * 2
    assert [(e["actor_username"], e["target"]) for e in events(fresh_db, "lock_out")] == [
        (name, name)
    ]
    with fresh_db.owner.begin() as conn:
        conn.execute(text("UPDATE portal.users SET locked_until = NULL, failed_attempts = 0"))
    with pytest.raises(ValidationError, match="same as the current"):
        change(name, password, password)


def test_admins_cannot_disable_themselves(fresh_db: DatabaseHandle) -> None:
    from portal.actor import Actor

    a, _ = new_user(fresh_db, role="admin")
    new_user(fresh_db, role="admin")
    me = Actor(username=a, display_name=a, role="admin")
    with Session(fresh_db.app) as s, s.begin(), pytest.raises(PermissionDenied, match="own"):
        set_active(session=s, actor=me, username=a, active=False)


def test_lock_minutes_in_the_message() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert "1 more minute." in signin.locked_message(now + timedelta(seconds=5), now)
    assert "15 more minutes" in signin.locked_message(now + timedelta(minutes=15), now)


@pytest.mark.parametrize("exists", [True, False], ids=["account", "no-account"])
def test_an_attempt_that_waited_for_the_lock_out_says_the_lock_s_length(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    """An attempt that came while another one was locking the name out waits for it, then is
    told the lock's time left from then: 15 minutes for a 15-minute lock, whether the account
    exists or not (a 16 for names with no account would tell which exist)."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "1")
    monkeypatch.setenv("PORTAL_LOCKOUT_MINUTES", "15")
    name = new_user(fresh_db)[0] if exists else "ghost-user"
    later: list[str] = []

    def attempt() -> None:
        later.append(refused(name, "a second guess"))

    waiter = threading.Thread(target=attempt)
    with session_scope() as s:
        # The first attempt has the name (its account row, or its lock) ...
        if exists:
            s.execute(
                text("SELECT 1 FROM portal.users WHERE username = :n FOR UPDATE"), {"n": name}
            )
        else:
            s.execute(
                text("SELECT pg_advisory_xact_lock(hashtext('portal.signin:' || :n))"), {"n": name}
            )
        waiter.start()  # ... when the second comes and waits for it
        wait_until_someone_waits_on_a_lock(fresh_db)
        first = signin._attempt(s, name, "a first guess", {})
    waiter.join(60)
    assert isinstance(first, AuthError)
    assert "15 more minutes" in str(first)
    assert later == [str(first)]


def test_a_burst_of_attempts_on_one_name_leaves_the_pool_to_everyone_else(
    fresh_db: DatabaseHandle,
) -> None:
    """Attempts on one name queue under its lock, each through a bcrypt check: without a bound,
    every attempt of a burst held a connection while it waited, and the pool ran dry for every
    other page. They now wait for a turn without one."""
    from portal.db import get_engine

    username, _ = new_user(fresh_db)
    attempts = signin.PASSWORD_CHECKS_AT_ONCE * 3
    answers: list[str] = []
    most = 0
    done = threading.Event()

    def attempt() -> None:
        answers.append(refused(username, "not the password at all"))

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for t in threads:
        t.start()
    pool = get_engine().pool
    while any(t.is_alive() for t in threads):
        most = max(most, pool.checkedout())  # type: ignore[attr-defined]
        done.wait(0.001)
    for t in threads:
        t.join()
    assert len(answers) == attempts  # each answered: refused or locked, none left waiting
    assert set(answers) <= {WRONG_CREDENTIALS} | {a for a in answers if "locked" in a}
    assert 1 <= most <= signin.PASSWORD_CHECKS_AT_ONCE
    assert user_row(fresh_db, username)["locked_until"] is not None


def test_a_typed_name_with_invisible_or_control_characters_is_recorded_escaped(
    fresh_db: DatabaseHandle,
) -> None:
    """Usernames are printable ASCII: a name with a zero-width space or an escape sequence is an
    outsider's text, kept escaped so it neither passes for "admin" nor reaches a terminal."""
    assert refused("admin\u200b", "not the password at all") == WRONG_CREDENTIALS
    assert refused("eve\x1b[2Jx", "not the password at all") == WRONG_CREDENTIALS
    assert refused("josé", "not the password at all") == WRONG_CREDENTIALS
    targets = [e["target"] for e in events(fresh_db, "sign_in_failed")]
    assert targets == ["admin\\u200b", "eve\\x1b[2jx", "jos\\xe9"]
    # Counted as one name still: its lock-out comes as an account's would.
    for _ in range(4):
        refused("admin\u200b", "not the password at all")
    assert "locked" in refused("admin\u200b", "not the password at all")


def test_a_lock_out_ends_sessions_only_when_their_own_session_caused_it(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong passwords at the sign-in form can come from anyone: the owner's session goes on,
    and so does a new tab's cookie. Wrong current passwords typed in the owner's own session
    (the Account page) end the sessions begun before the lock-out."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    name, password = new_user(fresh_db)
    signed = signin.authenticate(name, password)
    refused(name, "someone guessing")
    refused(name, "someone guessing")
    assert signin.resume(name, since=signed.since).username == name
    assert signin.resume(name, since=signed.since, from_cookie=True).username == name
    with pytest.raises(AuthError, match="locked"):
        signin.authenticate(name, password)
    with Session(fresh_db.app) as s, s.begin():
        unlock(session=s, actor=cli_actor(), username=name)
    for _ in range(2):
        with pytest.raises((AuthError, ValidationError)):
            signin.change_own_password(
                name,
                current_password="not it",
                new_password="a brand new passphrase",
                confirm_password="a brand new passphrase",
            )
    with pytest.raises(AuthError, match="wrong current passwords on the Account page"):
        signin.resume(name, since=signed.since)
