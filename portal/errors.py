"""The portal's exception tree.

Every error a user can cause or meet is a ``PortalError`` whose message says what is wrong and what
to do; pages catch ``PortalError`` and show ``str(exc)``. Anything else is a bug and propagates.

    PortalError
    ├── ConfigError            settings missing or unsafe (names the variable and a fix)
    ├── DatabaseUnavailable    PostgreSQL cannot be reached
    ├── AuthError              sign-in refused, account locked or disabled
    ├── PermissionDenied       the actor's role does not allow the action
    ├── NotFound               a user, dataset or changeset that does not exist
    ├── ValidationError        input that breaks a rule (a password, a value, a file)
    └── AuditError             the audit log refused a write or failed verification
"""

from __future__ import annotations


class PortalError(Exception):
    """Base of every error the portal reports to a person."""


class ConfigError(PortalError):
    """A setting is missing or unsafe."""


class DatabaseUnavailable(PortalError):
    """PostgreSQL cannot be reached."""


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
