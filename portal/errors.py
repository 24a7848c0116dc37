"""The portal's exception tree.

Every error a user can cause or meet is a ``PortalError`` whose message says what is wrong and what
to do; pages catch ``PortalError`` and show ``str(exc)``. Anything else is a bug and propagates.

    PortalError
    ├── ConfigError            settings missing or unsafe (names the variable and a fix)
    ├── DatabaseUnavailable    PostgreSQL cannot be reached (down, restarting, unreachable)
    │   ├── ConnectionLost         the connection broke mid-transaction: rolled back, nothing saved
    │   └── CommitOutcomeUnknown   it broke during COMMIT and the database is not back to say
    ├── DatabaseRefused        PostgreSQL refused the work for a reason on its side
    │   ├── DatabaseFull           out of disk (53100), memory (53200) or a set limit (53400)
    │   ├── DatabasePrivilege      the portal's database role lacks a privilege (42501)
    │   ├── DatabaseReadOnly       the database accepts no writes now (25006)
    │   └── DatabaseLoginRefused   the database refused the portal's login (password, role, …)
    ├── AuthError              sign-in refused, account locked or disabled
    ├── PermissionDenied       the actor's role does not allow the action
    ├── NotFound               a user, dataset or changeset that does not exist
    ├── ValidationError        input that breaks a rule (a password, a value, a file)
    └── AuditError             the audit log refused a write or failed verification

``portal.db.session_scope`` turns the driver's errors into the ``Database*`` classes; a page
retries ``DatabaseUnavailable`` by itself (``portal.ui.db_retry``) and shows the others.
"""

from __future__ import annotations


class PortalError(Exception):
    """Base of every error the portal reports to a person."""


class ConfigError(PortalError):
    """A setting is missing or unsafe."""


class DatabaseUnavailable(PortalError):
    """PostgreSQL cannot be reached (down, restarting, unreachable); nothing was saved."""


class ConnectionLost(DatabaseUnavailable):
    """The connection broke while a transaction was open (a restart, ``pg_terminate_backend``,
    the network); PostgreSQL rolled the transaction back, so nothing of it was saved."""


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection broke while PostgreSQL was committing, and the database could not be asked
    afterwards whether that commit landed. ``xid`` is the transaction's id, to ask again later
    (``portal.db.commit_outcome``)."""

    def __init__(self, message: str, xid: str | None = None) -> None:
        super().__init__(message)
        self.xid = xid


class DatabaseRefused(PortalError):
    """PostgreSQL refused the work for a reason on its side (resources, grants, read-only);
    nothing was saved. ``sqlstate`` is PostgreSQL's error code."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseFull(DatabaseRefused):
    """The database server ran out of disk space or memory, or hit a configured limit."""


class DatabasePrivilege(DatabaseRefused):
    """The portal's database role lacks a privilege it needs (a deployment fault)."""


class DatabaseReadOnly(DatabaseRefused):
    """The database accepts no writes now (a standby, or read-only by setting)."""


class DatabaseLoginRefused(DatabaseRefused):
    """The database refused the portal's own login: a wrong password, a role that does not exist
    or may not log in, no CONNECT privilege, ``pg_hba.conf``, a database that does not exist. A
    set-up fault that waiting does not fix. ``reason`` is what PostgreSQL (libpq) said, for the
    server's log and the ``portal`` command, not for the page: it names the role and the host."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class AuthError(PortalError):
    """Sign-in refused, or the account is locked or disabled."""


class PermissionDenied(PortalError):
    """The actor's role does not allow the action."""


class NotFound(PortalError):
    """A user, dataset or changeset that does not exist."""


class ValidationError(PortalError):
    """Input that breaks a rule."""


class AuditError(PortalError):
    """The audit log refused a write or failed verification."""
