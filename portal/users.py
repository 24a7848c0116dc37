"""User accounts: creation, passwords, roles, activation and lock-outs, each leaving an event.

The rules live here so the Users page and the ``portal user`` command behave the same.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import bcrypt
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit.events import record_event
from portal.actor import Actor
from portal.errors import NotFound, PermissionDenied, ValidationError
from portal.models import ROLES, User
from portal.names import hidden_character
from portal.wording import agreeing, counted

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_BYTES = 72  # bcrypt ignores (newer versions refuse) anything past 72 bytes
BCRYPT_ROUNDS = 12
"""bcrypt's cost for new hashes (2**12 rounds: about 0.3 s a hash here). The test-suite lowers
it for hashes it makes in its own process (tests/conftest.py); nothing else may."""
MIN_DISTINCT_CHARS = 5  # "            " and "abababababab" are no passwords
PASSWORD_RULES = (
    f"At least {MIN_PASSWORD_CHARS} characters and at most {MAX_PASSWORD_BYTES} bytes (accented "
    "letters and emoji take 2-4 bytes each); not the username, nor a repeat or run of characters "
    "(aaaa…, 1234…). A few unrelated words make a good one."
)
"""What ``check_password`` asks, for the help of every password field."""
MAX_DISPLAY_NAME_CHARS = 100
MAX_EMAIL_CHARS = 254  # RFC 5321's longest path, less its angle brackets
EMAIL_RE = re.compile(r"[^\s@,;<>]+@[^\s@,;<>]+")  # one address, nothing around it
EMAIL_DOMAIN_RE = re.compile(r"[^.]+(\.[^.]+)+")  # example.org: dotted, no empty part
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
FIRST_ADMIN = "admin"  # the account ``portal dev`` creates in an empty database


def database_now(session: Session) -> datetime:
    """The database's clock: sign-in times, lock-outs and password changes are compared on it."""
    now: datetime = session.execute(select(func.clock_timestamp())).scalar_one()
    return now


def normalise_username(username: str) -> str:
    """Lower-case and trim; the sign-in form lower-cases too."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """Return the normalised username.

    Raises:
        ValidationError: it is empty or has characters other than a-z, 0-9, '.', '_', '-'.
    """
    name = normalise_username(username)
    if not USERNAME_RE.fullmatch(name):
        shown = repr(username) if len(username) <= 80 else f"of {len(username):,} characters"
        raise ValidationError(
            f"Username {shown} is not allowed: use 1 to 64 characters from a-z, 0-9, "
            "'.', '_' and '-', starting with a letter or digit."
        )
    return name


def check_display_name(display_name: str, *, username: str) -> str:
    """Return the display name with its spaces tidied (the username when it is empty).

    It is shown beside everything the person does and kept in the audit log, so it must not be
    able to pass for someone else's.

    Raises:
        ValidationError: it is over ``MAX_DISPLAY_NAME_CHARS`` or holds an invisible or control
            character (a zero-width space, a bidi override).
    """
    name = " ".join(display_name.split()) or username
    if len(name) > MAX_DISPLAY_NAME_CHARS:
        raise ValidationError(
            f"The display name is {len(name)} characters; use at most {MAX_DISPLAY_NAME_CHARS}."
        )
    hidden = hidden_character(name)
    if hidden is not None:
        raise ValidationError(
            f"The display name has an invisible or control character ({hidden[1]}, character "
            f"{hidden[0]}), so it could look like another person's: type it again without it."
        )
    return name


def normalise_password(password: str) -> str:
    """The password as it is checked, hashed and compared: Unicode NFC (RFC 8265's
    OpaqueString), so that an accented letter typed as one code point ("é") or as a letter and
    a combining accent ("e" + U+0301), as input methods and password managers differ, is one
    password."""
    return unicodedata.normalize("NFC", password)


def check_email(email: str | None) -> str | None:
    """Return the address trimmed, or None when it is empty (it is optional).

    Raises:
        ValidationError: it is longer than ``MAX_EMAIL_CHARS``, is not one address
            (``name@domain``: no spaces, no list), its domain has no dot or an empty part
            (``ed@example``, ``ed@example.``: a name cut short, which no mail reaches), or it
            holds an invisible or control character (it would look right on the Users page,
            yet no mail would reach it).
    """
    address = (email or "").strip()
    if not address:
        return None
    if len(address) > MAX_EMAIL_CHARS:
        raise ValidationError(
            f"The email address is {len(address)} characters; use at most {MAX_EMAIL_CHARS}."
        )
    hidden = hidden_character(address)
    if hidden is not None:
        raise ValidationError(
            f"The email address has an invisible or control character ({hidden[1]}, character "
            f"{hidden[0]}), so it is not the address it looks like: type it again without it."
        )
    if not EMAIL_RE.fullmatch(address):
        raise ValidationError(
            f"{address!r} is not an email address: write one address, as name@example.org, or "
            "leave the field empty."
        )
    domain = address.rpartition("@")[2]
    if not EMAIL_DOMAIN_RE.fullmatch(domain):
        raise ValidationError(
            f"{address!r} is not a whole email address: {domain!r}, after the @, is no full "
            "domain name, such as example.org. Write the whole address, or leave the field "
            "empty."
        )
    return address


def check_password(password: str, *, username: str) -> None:
    """Refuse a password that is too short, too long for bcrypt, the username, or a repeat or
    run of characters (NIST SP 800-63B: "repetitive or sequential characters"); measured as
    normalised (``normalise_password``), as it is stored.

    Raises:
        ValidationError: with what is wrong and what to do.
    """
    password = normalise_password(password)
    try:
        password.encode()
    except UnicodeEncodeError:  # bytes an environment or a file gave in another encoding
        raise ValidationError(
            "The password is not UTF-8 text (it was saved or set as Latin-1 or Windows-1252, "
            "say); nothing was changed. Set it again as UTF-8."
        ) from None
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValidationError(
            f"The password is {len(password)} characters long; use at least "
            f"{MIN_PASSWORD_CHARS} (a few unrelated words make a good one)."
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValidationError(
            f"The password is {len(password.encode())} bytes long; passwords can be at most "
            f"{MAX_PASSWORD_BYTES} bytes (bcrypt's limit; accented letters and emoji take 2-4 "
            "bytes each). Use a shorter one."
        )
    if not password.strip():
        raise ValidationError(
            "The password is only spaces; use letters, digits or other characters too (a few "
            "unrelated words make a good one)."
        )
    if password.strip().lower() == normalise_username(username):
        raise ValidationError("The password must not be the username.")
    if len(set(password.lower())) < MIN_DISTINCT_CHARS or _mostly_a_run(password):
        raise ValidationError(
            "The password is a repeated or running sequence of characters (like “aaaa…” or "
            "“1234…”), which is guessed first whatever its length; a few unrelated words make a "
            "good one."
        )


def _mostly_a_run(password: str) -> bool:
    """Whether three in four neighbouring characters step by one, up or down (``abcdef…``,
    ``1234567890…``, ``987…``): a keyboard run is no better than a repeat."""
    steps = [
        abs(ord(a) - ord(b)) == 1 or {a, b} == {"9", "0"} for a, b in pairwise(password.lower())
    ]
    return sum(steps) * 4 >= len(steps) * 3


def hash_password(password: str) -> str:
    salt = bcrypt.gensalt(BCRYPT_ROUNDS)
    return bcrypt.hashpw(normalise_password(password).encode(), salt).decode()


def password_matches(password: str, password_hash: str) -> bool:
    """Whether ``password``, normalised, is the one hashed; one typed exactly as a hash made
    before passwords were normalised also matches (a second bcrypt check, only for a password
    that normalising changes)."""
    normalised = normalise_password(password)
    if _bcrypt_matches(normalised, password_hash):
        return True
    return normalised != password and _bcrypt_matches(password, password_hash)


def _bcrypt_matches(password: str, password_hash: str) -> bool:
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(password.encode(), password_hash.encode())
    except ValueError:
        return False


def _require_admin(actor: Actor) -> None:
    if not actor.can("admin"):
        raise PermissionDenied("Only an admin can manage users.")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}.")


def get_user(*, session: Session, username: str, for_update: bool = False) -> User:
    """Raises: NotFound: no such user."""
    stmt = select(User).where(User.username == normalise_username(username))
    if for_update:
        stmt = stmt.with_for_update()
    user = session.scalars(stmt).one_or_none()
    if user is None:
        raise NotFound(f"There is no user {normalise_username(username)!r}.")
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


@dataclass(frozen=True)
class UserSummary:
    """One account as the Users page and ``portal user list`` show it."""

    username: str
    display_name: str
    email: str | None
    role: str
    active: bool
    locked_until: datetime | None
    failed_attempts: int
    must_change_password: bool
    last_sign_in_at: datetime | None

    @property
    def locked(self) -> bool:
        return self.locked_until is not None


def summarise_users(*, session: Session, actor: Actor) -> list[UserSummary]:
    """Every account, ordered by username; ``locked_until`` only for locks still in force.

    Raises:
        PermissionDenied: the actor is not an admin (e-mail addresses and lock-outs are theirs
            to see).
    """
    _require_admin(actor)
    now = database_now(session)
    return [
        UserSummary(
            username=u.username,
            display_name=u.display_name,
            email=u.email,
            role=u.role,
            active=u.active,
            locked_until=u.locked_until if u.locked_until and u.locked_until > now else None,
            failed_attempts=u.failed_attempts,
            must_change_password=u.must_change_password,
            last_sign_in_at=u.last_sign_in_at,
        )
        for u in list_users(session=session)
    ]


def _admin_event(session: Session, actor: Actor, target: str, action: str, **detail: Any) -> None:
    record_event(
        session=session,
        kind="user_admin",
        actor_username=actor.username,
        target=target,
        detail={"action": action, **detail},
    )


def create_user(
    *,
    session: Session,
    actor: Actor,
    username: str,
    display_name: str,
    role: str,
    password: str,
    email: str | None = None,
    must_change_password: bool = False,
) -> User:
    """Create an account.

    Raises:
        PermissionDenied: the actor is not (or no longer) an active admin.
        ValidationError: bad username, display name, email address, role or password, or the
            username is taken.
    """
    _admins_turn(session, actor)
    name = check_username(username)
    shown = check_display_name(display_name, username=name)
    address = check_email(email)
    _check_role(role)
    check_password(password, username=name)
    # Two admins adding one name take turns here, so the second is told it is taken rather
    # than refused by the unique constraint.
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext("portal.username:" + name))))
    check_username_free(session=session, username=name)
    user = User(
        username=name,
        display_name=shown,
        email=address,
        role=role,
        password_hash=hash_password(password),
        must_change_password=must_change_password,
        password_changed_at=database_now(session),
    )
    session.add(user)
    session.flush()
    _admin_event(
        session, actor, name, "create", role=role, must_change_password=must_change_password
    )
    return user


def check_username_free(*, session: Session, username: str) -> str:
    """Return the normalised username if it is allowed and no account has it yet.

    Raises:
        ValidationError: the username is not allowed (``check_username``), or is taken.
    """
    name = check_username(username)
    if session.scalar(select(func.count()).where(User.username == name)):
        raise ValidationError(f"The username {name!r} is taken; choose another.")
    return name


def _admins_turn(session: Session, actor: Actor) -> None:
    """Take this transaction's turn at changing accounts, then check that the actor is still an
    active admin. Every admin change takes it: creating, role, access, password reset, unlock.

    Changes of role and access take turns before they lock the account they change: each locks
    every active admin (``_guard_last_admin``), so two changes that had each locked their own
    account first would deadlock. Once it is this change's turn, the changes that came first
    are committed and seen: an admin demoted or disabled by one of them a moment ago cannot go
    on as an admin — not even to reset an admin's password or create an admin account, which
    would give them back what they lost (a command-line operator has no account and is trusted).

    Raises:
        PermissionDenied: the actor is not, or no longer, an active admin.
    """
    _require_admin(actor)
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext("portal.admins"))))
    now = session.execute(
        select(User.role, User.active).where(User.username == actor.username)
    ).one_or_none()
    if now is not None and (now.role != "admin" or not now.active):
        now_is = f"is {now.role} now" if now.active else "was disabled"
        raise PermissionDenied(
            f"You are no longer an active admin: your account {now_is}, changed a moment ago. "
            "Nothing was changed."
        )


def _active_admins(session: Session) -> int:
    admins = session.scalars(
        select(User.id).where(User.role == "admin", User.active).with_for_update()
    ).all()
    return len(admins)


def _guard_last_admin(session: Session, user: User) -> None:
    if user.role == "admin" and user.active and _active_admins(session) <= 1:
        raise PermissionDenied(
            f"{user.username!r} is the last active admin: make another user an admin first."
        )


def set_role(
    *, session: Session, actor: Actor, username: str, role: str, expected: str | None = None
) -> User:
    """Change a user's role — from ``expected``, when given (what the admin was shown).

    Raises:
        PermissionDenied: the actor is not (or no longer) an active admin, or the user is the
            last admin.
        NotFound: no such user.
        ValidationError: an unknown role, or the role is no longer ``expected``.
    """
    _admins_turn(session, actor)
    _check_role(role)
    user = get_user(session=session, username=username, for_update=True)
    if expected is not None and user.role != expected:
        raise ValidationError(
            f"The role of {user.username} changed since you opened this: it is {user.role} now, "
            f"not {expected}. Nothing was changed; look again and choose."
        )
    if user.role == role:
        return user
    if role != "admin":
        _guard_last_admin(session, user)
    old = user.role
    user.role = role
    user.updated_at = database_now(session)
    session.flush()
    _admin_event(session, actor, user.username, "set_role", old_role=old, new_role=role)
    return user


def set_active(*, session: Session, actor: Actor, username: str, active: bool) -> User:
    """Enable or disable an account; a disabled user loses access at their next click.

    Raises:
        PermissionDenied: the actor is not (or no longer) an active admin, is disabling their
            own account, or the user is the last active admin.
        NotFound: no such user.
    """
    _admins_turn(session, actor)
    user = get_user(session=session, username=username, for_update=True)
    if user.active == active:
        return user
    if not active:
        if user.username == actor.username:
            raise PermissionDenied(
                "You cannot disable your own account; ask another admin to do it."
            )
        _guard_last_admin(session, user)
    user.active = active
    user.updated_at = database_now(session)
    session.flush()
    _admin_event(session, actor, user.username, "enable" if active else "disable")
    return user


def reset_password(
    *,
    session: Session,
    actor: Actor,
    username: str,
    password: str,
    must_change_password: bool = True,
) -> User:
    """An admin sets another user's password, and lifts any lock-out: the failed guesses were
    at the old password, and whoever is given the new one must be able to sign in with it.

    Raises:
        PermissionDenied: the actor is not (or no longer) an active admin, or is resetting
            their own password (the Account page changes it, asking for the current one first).
        NotFound: no such user.
        ValidationError: the password breaks a rule.
    """
    _admins_turn(session, actor)
    user = get_user(session=session, username=username, for_update=True)
    if user.username == actor.username:
        raise PermissionDenied(
            "An admin cannot reset their own password; nothing was changed. Change your own "
            "password on the Account page, which asks for your current one."
        )
    check_password(password, username=user.username)
    now = database_now(session)
    cleared = _lock_out_cleared(user, now)
    user.password_hash = hash_password(password)
    user.must_change_password = must_change_password
    user.failed_attempts = 0
    user.locked_until = None
    # Sessions and cookies that began before this moment end (portal.signin.resume).
    user.password_changed_at = user.updated_at = now
    session.flush()
    # False: the admin chose a password the person may keep, and so knows it.
    _admin_event(
        session,
        actor,
        user.username,
        "reset_password",
        must_change_password=must_change_password,
        **cleared,
    )
    return user


def _lock_out_cleared(user: User, now: datetime) -> dict[str, Any]:
    """What clearing ``user``'s lock-out and failed-attempt count clears, for its event: the
    count, and the lock only if still in force (lifting a lock is not clearing a count of
    typos); nothing when there is neither (a lock that ran out is none: the next sign-in
    attempt starts the count again anyway)."""
    in_force = user.locked_until is not None and user.locked_until > now
    if not user.failed_attempts and not in_force:
        return {}
    return {
        "failed_attempts": user.failed_attempts,
        "locked_until": user.locked_until.isoformat() if in_force and user.locked_until else None,
    }


@dataclass(frozen=True)
class Unlocked:
    """What ``unlock`` cleared: a lock in force, failed sign-ins (``failed_attempts``), or
    nothing."""

    username: str
    lock_lifted: bool
    failed_attempts: int

    def said(self, name: str) -> str:
        """What happened, in a sentence about ``name`` (the username as the caller shows it),
        without a full stop: the Users page and ``portal user unlock`` say the same."""
        if self.lock_lifted:
            return f"{name} has been unlocked"
        if self.failed_attempts:
            count = self.failed_attempts
            return (
                f"{name} was not locked; its {counted(count, 'failed sign-in')} "
                f"{agreeing(count, 'has', 'have')} been cleared"
            )
        return f"{name} is not locked and has no failed sign-ins; nothing was changed"


def unlock(*, session: Session, actor: Actor, username: str) -> Unlocked:
    """Clear a lock-out and the failed-attempt counter, recording both as they were (the lock
    only if still in force); nothing (no event) when there is neither, as ``set_role`` and
    ``set_active`` skip what changes nothing. Returns what it cleared.

    Raises:
        PermissionDenied: the actor is not (or no longer) an active admin.
        NotFound: no such user.
    """
    _admins_turn(session, actor)
    user = get_user(session=session, username=username, for_update=True)
    now = database_now(session)
    cleared = _lock_out_cleared(user, now)
    if not cleared:
        return Unlocked(user.username, lock_lifted=False, failed_attempts=0)
    user.failed_attempts = 0
    user.locked_until = None
    user.updated_at = now
    session.flush()
    _admin_event(session, actor, user.username, "unlock", **cleared)
    return Unlocked(
        user.username,
        lock_lifted=cleared["locked_until"] is not None,
        failed_attempts=cleared["failed_attempts"],
    )


def ensure_first_admin(
    *, session: Session, actor: Actor, password: str, must_change_password: bool
) -> bool:
    """Create the ``admin`` account when no user exists yet; True if it was created.

    ``must_change_password`` for a password the portal made up and showed: its first sign-in
    then goes to the Account page until admin chooses their own.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return False
    create_user(
        session=session,
        actor=actor,
        username=FIRST_ADMIN,
        display_name="Administrator",
        role="admin",
        password=password,
        must_change_password=must_change_password,
    )
    return True


def has_password(*, session: Session, username: str, password: str) -> bool:
    """True if ``username`` exists and ``password`` is their password now (one bcrypt check; no
    event, no failed-attempt count: this is not a sign-in)."""
    user = session.scalars(
        select(User).where(User.username == normalise_username(username))
    ).one_or_none()
    return user is not None and password_matches(password, user.password_hash)
