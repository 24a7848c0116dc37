"""Who is acting: the signed-in person (from ``portal.auth``) or an operator at the CLI."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}


@dataclass(frozen=True)
class Actor:
    username: str
    display_name: str
    role: str

    def can(self, role: str) -> bool:
        """True when this actor's role is ``role`` or above (viewer < editor < admin)."""
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def cli_actor() -> Actor:
    """The operator running the ``portal`` command: trusted as admin, named by OS user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        user = "unknown"
    return Actor(username=f"cli:{user}", display_name=f"{user} (command line)", role="admin")
