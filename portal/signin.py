"""A person's own credentials: sign in, resume a session, sign out, change one's own password.

No Streamlit here: ``portal.auth`` is the UI and cookie layer on top, and these rules are tested
against PostgreSQL directly. Every public function is one transaction of its own, because a refused
attempt must still be recorded: the failed-attempt counter, the lock-out and their audit events are
committed before ``AuthError`` is raised.

Lock-out
    Each wrong password adds one to ``users.failed_attempts``; the ``PORTAL_LOCKOUT_ATTEMPTS``-th
    sets ``users.locked_until`` to now + ``PORTAL_LOCKOUT_MINUTES``. While locked, every attempt is
    refused without looking at the password. A success, an admin's unlock, or the first attempt
    after the lock has run out starts the count again. All of it lives in PostgreSQL, so it holds
    across reruns, sessions, replicas and restarts.

No user enumeration
    An unknown username gets the same message as a wrong password, costs the same bcrypt check, and
    is even locked out the same way: its failures are counted from the audit events, so "locked"
    never tells an attacker that an account exists.

Sessions
    A sign-in starts at ``since`` (the database's clock). It stays valid while the account exists
    and is active, its password has not changed since, and its owner has not signed out (nor
    locked it from a session of their own) since; ``resume`` checks exactly that, on every rerun
    and for every cookie. A lock-out from the sign-in form refuses passwords only: anyone can
    type wrong ones for a known username, and must not sign its owner out by that.

    sign_in          a password (detail method=password) or a cookie (method=cookie) was accepted
    sign_in_failed   refused; detail.reason = bad_password | unknown_user | locked | disabled, or
                     bad_current_password (changing one's own password: its actor is the person),
                     or a cookie (method=cookie): bad_cookie | revoked_cookie
    lock_out         the attempt that locked the account (no actor: the account is its target;
                     the person, when their own wrong current passwords locked it)
    sign_out         the person signed out
    user_admin       action=change_own_password
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from audit.events import record_event
from portal import users
from portal.actor import Actor
from portal.config import get_settings
from portal.db import session_scope
from portal.errors import AuthError, ValidationError
from portal.models import Event, User
from portal.users import (
    check_password,
    database_now,
    hash_password,
    normalise_username,
    password_matches,
)
from portal.wording import agreeing

WRONG_CREDENTIALS = "Wrong username or password."
ACCOUNT_DISABLED = "This account is disabled. Ask an admin to enable it."
MAX_ATTEMPTED_NAME = 64  # longer names cannot exist (users.username is 1-64 characters)
# How far back failures of a username with no account are remembered. A real account's count
# never expires, so an attacker who waits this long between guesses could tell the two apart:
# a day per guess makes that useless for enumeration.
UNKNOWN_USER_MEMORY = timedelta(days=1)
PASSWORD_CHECKS_AT_ONCE: Final = 4
"""Password checks (sign-ins, changes of one's own password) this process runs at once. Each
holds a database connection through its bcrypt check (about a fifth of a second), and attempts
on one name queue under its lock: unbounded, a burst of attempts on one name took every
connection of the pool (10 + 20) and every other page waited, then failed."""
PASSWORD_CHECK_WAIT_S: Final = 20.0
BUSY = "The portal is busy checking other sign-ins; nothing was recorded. Try again in a moment."
_password_checks = threading.BoundedSemaphore(PASSWORD_CHECKS_AT_ONCE)


@contextmanager
def _password_check_turn() -> Iterator[None]:
    """Wait (without a connection) for one of ``PASSWORD_CHECKS_AT_ONCE`` turns.

    Raises:
        AuthError: no turn came within ``PASSWORD_CHECK_WAIT_S``; nothing was checked.
    """
    if not _password_checks.acquire(timeout=PASSWORD_CHECK_WAIT_S):
        raise AuthError(BUSY)
    try:
        yield
    finally:
        _password_checks.release()


@dataclass(frozen=True)
class SignedIn:
    """A signed-in person as of this rerun: who, their role now, and when the sign-in began."""

    username: str
    display_name: str
    role: str
    must_change_password: bool
    since: datetime

    @property
    def actor(self) -> Actor:
        return Actor(username=self.username, display_name=self.display_name, role=self.role)


def _signed_in(user: User, since: datetime) -> SignedIn:
    return SignedIn(
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        must_change_password=user.must_change_password,
        since=since,
    )


def locked_message(until: datetime, now: datetime) -> str:
    minutes = max(1, math.ceil((until - now).total_seconds() / 60))
    return (
        "Too many failed sign-ins: this account is locked for "
        f"{minutes} more {agreeing(minutes, 'minute', 'minutes')}. "
        "Try again later, or ask an admin to unlock it."
    )


@lru_cache(maxsize=1)
def _dummy_hash(rounds: int) -> str:
    """A hash of the cost new ones get (``rounds``, ``users.BCRYPT_ROUNDS``), checked when there
    is no real one to check."""
    return hash_password("not a password anyone has")


def _spend_a_bcrypt_check(password: str) -> None:
    password_matches(password, _dummy_hash(users.BCRYPT_ROUNDS))


# -- signing in -------------------------------------------------------------------------------


def authenticate(
    username: str, password: str, *, client_info: dict[str, Any] | None = None
) -> SignedIn:
    """Check a username and password, with lock-out, and record the outcome.

    Raises:
        AuthError: wrong username or password (one message for both), account locked or
            disabled. The refusal and its events are committed before this is raised.
        DatabaseUnavailable: PostgreSQL could not be reached.
    """
    with _password_check_turn(), session_scope() as session:
        outcome = _attempt(session, username, password, client_info or {})
    if isinstance(outcome, AuthError):
        raise outcome
    return outcome


def _attempt(
    session: Session, username: str, password: str, client_info: dict[str, Any]
) -> SignedIn | AuthError:
    name = normalise_username(username)[:MAX_ATTEMPTED_NAME]
    user = session.scalars(select(User).where(User.username == name).with_for_update()).first()
    if user is None:
        return _unknown_user(session, as_recorded(name), password, client_info)
    now = database_now(session)
    if user.locked_until is not None and user.locked_until > now:
        _spend_a_bcrypt_check(password)
        _record_refusal(session, user.username, "locked", client_info)
        return AuthError(locked_message(user.locked_until, now))
    if user.locked_until is not None:  # the lock ran out: a fresh count
        user.locked_until = None
        user.failed_attempts = 0
    if not password_matches(password, user.password_hash):
        return _count_failure(session, user, now, client_info, reason="bad_password")
    if not user.active:
        _record_refusal(session, user.username, "disabled", client_info)
        return AuthError(ACCOUNT_DISABLED)
    user.failed_attempts = 0
    user.last_sign_in_at = now
    session.flush()
    record_event(
        session=session,
        kind="sign_in",
        actor_username=user.username,
        target=user.username,
        detail={"method": "password", "role": user.role},
        client_info=client_info,
    )
    return _signed_in(user, since=now)


def as_recorded(name: str) -> str:
    """A typed name that is no account's, as the audit log keeps it: printable ASCII as typed,
    anything else escaped (``admin\\u200b``). Usernames are printable ASCII, so the rest comes
    from someone unauthenticated: a zero-width space would read as "admin" on the Audit page, and
    a control character would reach a terminal through an export."""
    if name.isascii() and name.isprintable():
        return name
    return name.encode("unicode_escape").decode("ascii")


def _record_refusal(
    session: Session,
    target: str | None,
    reason: str,
    client_info: dict[str, Any],
    actor: str | None = None,
    **detail: Any,
) -> None:
    record_event(
        session=session,
        kind="sign_in_failed",
        actor_username=actor,
        target=target,
        detail={"reason": reason, **detail},
        client_info=client_info,
    )


def _count_failure(
    session: Session,
    user: User,
    now: datetime,
    client_info: dict[str, Any],
    *,
    reason: str,
    actor: str | None = None,
) -> AuthError:
    """One more failed attempt on a real account; locks it at the limit. ``actor``: who typed
    it, when known (the account's own signed-in session, changing its password)."""
    settings = get_settings()
    user.failed_attempts += 1
    _record_refusal(
        session, user.username, reason, client_info, actor, failed_attempts=user.failed_attempts
    )
    if user.failed_attempts < settings.lockout_attempts:
        session.flush()
        return AuthError(WRONG_CREDENTIALS)
    user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
    session.flush()
    # At the sign-in form whoever typed the wrong passwords is unknown, as for each failed
    # attempt: the account is the lock-out's target, not its actor.
    record_event(
        session=session,
        kind="lock_out",
        actor_username=actor,
        target=user.username,
        detail={
            "failed_attempts": user.failed_attempts,
            "minutes": settings.lockout_minutes,
            "locked_until": user.locked_until.isoformat(),
        },
        client_info=client_info,
    )
    return AuthError(locked_message(user.locked_until, now))


def _unknown_user(
    session: Session, name: str, password: str, client_info: dict[str, Any]
) -> AuthError:
    """Refuse a username with no account exactly as a real one: same cost, same lock-out.

    The count lives in the audit events (the account has no row): failures since the name's last
    lock-out, and that lock-out's time, looking back at most ``UNKNOWN_USER_MEMORY`` so each
    attempt reads a bounded range of the (kind, occurred_at) index. An advisory lock on the name
    serialises concurrent attempts so the count is exact — taken before the bcrypt check, as a
    real account's row lock is, so parallel attempts queue alike and their timing does not tell
    whether the account exists.
    """
    settings = get_settings()
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext("portal.signin:" + name))))
    # The time once it is this attempt's turn, as for an account once its row is locked: read
    # before, it would date a lock-out made meanwhile from after this attempt, and say 16
    # minutes left of a 15-minute lock where an account says 15.
    now = database_now(session)
    _spend_a_bcrypt_check(password)
    window_start = now - UNKNOWN_USER_MEMORY
    last_lock = session.execute(
        select(func.max(Event.occurred_at)).where(
            Event.kind == "lock_out", Event.occurred_at > window_start, Event.target == name
        )
    ).scalar_one()
    failures_since = [
        Event.kind == "sign_in_failed",
        Event.occurred_at > (last_lock or window_start),
        Event.target == name,
        Event.detail["reason"].astext == "unknown_user",
    ]
    if last_lock is not None:
        until = last_lock + timedelta(minutes=settings.lockout_minutes)
        if until > now:
            _record_refusal(session, name, "locked", client_info, unknown_user=True)
            return AuthError(locked_message(until, now))
    earlier = session.execute(
        select(func.count()).select_from(Event).where(*failures_since)
    ).scalar_one()
    failures = earlier + 1
    _record_refusal(session, name, "unknown_user", client_info, failed_attempts=failures)
    if failures < settings.lockout_attempts:
        return AuthError(WRONG_CREDENTIALS)
    until = now + timedelta(minutes=settings.lockout_minutes)
    record_event(
        session=session,
        kind="lock_out",
        actor_username=None,
        target=name,
        detail={
            "failed_attempts": failures,
            "minutes": settings.lockout_minutes,
            "locked_until": until.isoformat(),
            "unknown_user": True,
        },
        client_info=client_info,
    )
    return AuthError(locked_message(until, now))


# -- sessions ---------------------------------------------------------------------------------


def resume(
    username: str,
    *,
    since: datetime,
    client_info: dict[str, Any] | None = None,
    from_cookie: bool = False,
) -> SignedIn:
    """Re-read a signed-in person from PostgreSQL; called on every rerun and for every cookie.

    ``from_cookie=True`` records a ``sign_in`` event (method=cookie): a new browser session began.

    A lock-out refuses passwords, not sessions: wrong passwords typed at the sign-in form by
    anyone who knows a username must not sign its owner out (nor the last admin, whom nobody
    could then unlock in the browser). Only a lock-out the account's own session caused, by
    wrong current passwords on the Account page, ends its sessions begun before it.

    Raises:
        AuthError: the account is gone or disabled, its password changed after ``since``, or
            its owner signed out, an admin disabled it, or its own session locked it, after
            ``since``; the message says which.
        DatabaseUnavailable: PostgreSQL could not be reached.
    """
    name = normalise_username(username)
    signed_out_since = exists().where(
        and_(Event.actor_username == name, Event.occurred_at > since, Event.kind == "sign_out")
    )
    # Disabling an account ends its sessions for good: enabled again, it needs a new sign-in.
    disabled_since = exists().where(
        and_(
            Event.target == name,
            Event.occurred_at > since,
            Event.kind == "user_admin",
            Event.detail["action"].astext == "disable",
        )
    )
    locked_from_a_session_since = exists().where(
        and_(
            Event.target == name,
            Event.actor_username == name,
            Event.occurred_at > since,
            Event.kind == "lock_out",
        )
    )
    with session_scope() as session:
        row = session.execute(
            select(
                User,
                signed_out_since.label("signed_out"),
                disabled_since.label("disabled"),
                locked_from_a_session_since.label("locked"),
                func.clock_timestamp(),
            ).where(User.username == name)
        ).one_or_none()
        if row is None or not row[0].active:
            raise AuthError(
                "Your session has ended: this account is disabled or no longer exists. "
                "Ask an admin if you need access."
            )
        user, signed_out, disabled, locked, now = row
        if locked:
            raise AuthError(
                "Your session has ended: this account was locked after too many wrong current "
                "passwords on the Account page. Sign in again once the lock-out ends, or ask "
                "an admin to unlock it."
            )
        if user.password_changed_at is not None and user.password_changed_at > since:
            raise AuthError(
                "Your session has ended because the password was changed. "
                "Sign in with the new password."
            )
        if signed_out:
            raise AuthError("You signed out in another window or tab. Sign in again.")
        if disabled:
            raise AuthError(
                "Your session has ended: an admin disabled this account since you signed in. "
                "Sign in again."
            )
        if from_cookie:
            user.last_sign_in_at = now
            record_event(
                session=session,
                kind="sign_in",
                actor_username=user.username,
                target=user.username,
                detail={"method": "cookie", "role": user.role},
                client_info=client_info or {},
            )
        return _signed_in(user, since=since)


def record_refused_cookie(
    claimed: str, *, reason: str, client_info: dict[str, Any] | None = None
) -> None:
    """Record a sign-in cookie the portal refused, as ``sign_in_failed`` with method=cookie:
    ``reason`` is ``bad_cookie`` (not signed with this portal's key, malformed or expired: a
    forgery, or a cookie from before the key changed) or ``revoked_cookie`` (``resume`` refused
    it: its owner signed out or changed password since, or the account is disabled or gone).
    ``claimed``: the username the cookie names, unverified for a bad cookie and kept as a typed
    name is (``as_recorded``). No lock-out counts it: only passwords are guessed.

    Raises:
        DatabaseUnavailable: PostgreSQL could not be reached.
    """
    name = as_recorded(claimed[:MAX_ATTEMPTED_NAME])
    with session_scope() as session:
        _record_refusal(session, name or None, reason, client_info or {}, method="cookie")


def sign_out(username: str, *, since: datetime, client_info: dict[str, Any] | None = None) -> None:
    """Record the sign-out of the session that began at ``since``; every session and cookie of
    this person that began earlier ends.

    Raises:
        AuthError: that session had ended already (see ``resume``; a tab still showing Sign out
            after a password change elsewhere, say): nothing is recorded, so the sessions the
            person began since then go on. Signing out while locked out is recorded like any
            other.
        DatabaseUnavailable: PostgreSQL could not be reached.
    """
    resume(username, since=since)
    name = normalise_username(username)
    with session_scope() as session:
        record_event(
            session=session,
            kind="sign_out",
            actor_username=name,
            target=name,
            client_info=client_info or {},
        )


def change_own_password(
    username: str,
    *,
    current_password: str,
    new_password: str,
    confirm_password: str,
    client_info: dict[str, Any] | None = None,
) -> SignedIn:
    """Change one's own password; returns the sign-in that continues under the new password.

    A wrong current password counts as a failed sign-in (it can lock the account), so this form
    cannot be used to guess passwords past the lock-out.

    Raises:
        ValidationError: the new password breaks a rule, the two entries differ, it equals the
            current one, or the current password is wrong.
        AuthError: the account is locked (or became locked by this attempt) or disabled.
        DatabaseUnavailable: PostgreSQL could not be reached.
    """
    if new_password != confirm_password:
        raise ValidationError("The new password and its confirmation differ; type them again.")
    name = normalise_username(username)
    check_password(new_password, username=name)
    with _password_check_turn(), session_scope() as session:
        outcome = _change_own_password(
            session, name, current_password, new_password, client_info or {}
        )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _wrong_current_password(failed_attempts: int) -> str:
    """The refusal of a wrong current password, with how many more lock the account (which
    ends this session too): the person is signed in, so this tells no stranger anything."""
    settings = get_settings()
    left = settings.lockout_attempts - failed_attempts
    minutes = settings.lockout_minutes
    return (
        "The current password is not correct; nothing was changed. "
        f"{left} more wrong {agreeing(left, 'try locks', 'tries lock')} this account for "
        f"{minutes} {agreeing(minutes, 'minute', 'minutes')}, which signs you out."
    )


def _change_own_password(
    session: Session,
    name: str,
    current_password: str,
    new_password: str,
    client_info: dict[str, Any],
) -> SignedIn | AuthError | ValidationError:
    user = session.scalars(select(User).where(User.username == name).with_for_update()).first()
    now = database_now(session)
    if user is None or not user.active:
        return AuthError(ACCOUNT_DISABLED)
    if user.locked_until is not None and user.locked_until > now:
        return AuthError(locked_message(user.locked_until, now))
    if user.locked_until is not None:
        user.locked_until = None
        user.failed_attempts = 0
    if not password_matches(current_password, user.password_hash):
        refused = _count_failure(
            session, user, now, client_info, reason="bad_current_password", actor=user.username
        )
        if user.locked_until is not None:
            return refused
        return ValidationError(_wrong_current_password(user.failed_attempts))
    if password_matches(new_password, user.password_hash):
        return ValidationError("The new password is the same as the current one; choose another.")
    user.password_hash = hash_password(new_password)
    user.must_change_password = False
    user.failed_attempts = 0
    user.password_changed_at = user.updated_at = now
    session.flush()
    record_event(
        session=session,
        kind="user_admin",
        actor_username=user.username,
        target=user.username,
        detail={"action": "change_own_password"},
        client_info=client_info,
    )
    return _signed_in(user, since=now)
