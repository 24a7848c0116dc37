"""Opening and closing changesets inside the caller's transaction.

A changeset groups every data write of one unit of work (an upload, a commit of edits, a revert)
under who did it and why. ``open_changeset`` inserts it and tells the capture triggers, through
``SET LOCAL portal.changeset_id``, to file every row change of this transaction under it. The
database seals it into the hash chain when the transaction commits; a rollback leaves nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from portal.db import session_scope
from portal.errors import PortalError
from portal.models import CHANGESET_KINDS, Changeset

# One round trip: the INSERT and both SET LOCALs (set_config(..., true)) in one statement. Plain
# SQL: built with SQLAlchemy Core, the statement cost about a millisecond more per commit.
_OPEN = text(
    "WITH opened AS ("
    " INSERT INTO audit.changeset (kind, dataset_id, actor_username, actor_display_name, reason,"
    " client_info, detail, correlation_id)"
    " VALUES (:kind, :dataset_id, :actor_username, :actor_display_name, :reason,"
    " CAST(:client_info AS jsonb), CAST(:detail AS jsonb), CAST(:correlation_id AS uuid))"
    " RETURNING id)"
    " SELECT id, set_config('portal.changeset_id', id::text, true),"
    " set_config('portal.actor', :actor_username, true) FROM opened"
)


@dataclass(frozen=True)
class ChangesetCounts:
    changeset_id: int
    inserted: int
    updated: int
    deleted: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


def open_changeset(
    *,
    session: Session,
    kind: str,
    actor_username: str,
    actor_display_name: str,
    dataset_id: int | None = None,
    reason: str = "",
    client_info: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
    correlation_id: uuid.UUID | None = None,
) -> int:
    """Open a changeset in the session's transaction and return its id.

    Every data write that follows in this transaction is captured under it, until
    ``close_changeset`` or the end of the transaction.

    Raises:
        ValueError: ``kind`` is not a changeset kind the portal opens.
    """
    if kind not in CHANGESET_KINDS or kind == "out_of_band":
        raise ValueError(f"cannot open a changeset of kind {kind!r}")
    changeset_id: int = session.execute(
        _OPEN,
        {
            "kind": kind,
            "dataset_id": dataset_id,
            "actor_username": actor_username,
            "actor_display_name": actor_display_name,
            "reason": reason,
            "client_info": json.dumps(client_info or {}),
            "detail": json.dumps(detail or {}),
            "correlation_id": str(correlation_id or uuid.uuid4()),
        },
    ).scalar_one()
    return changeset_id


def close_changeset(*, session: Session, changeset_id: int) -> ChangesetCounts:
    """Stop filing writes under the changeset and return its counts (sealed at COMMIT)."""
    session.execute(
        select(
            func.set_config("portal.changeset_id", "", True),
            func.set_config("portal.actor", "", True),
        )
    )
    row = session.execute(
        text(
            "SELECT count(*) FILTER (WHERE op = 'insert')"
            " + (SELECT coalesce(sum(row_count), 0) FROM audit.bulk_load"
            "    WHERE changeset_id = :id) AS inserted,"
            " count(*) FILTER (WHERE op = 'update') AS updated,"
            " count(*) FILTER (WHERE op = 'delete') AS deleted"
            " FROM audit.row_change WHERE changeset_id = :id"
        ),
        {"id": changeset_id},
    ).one()
    return ChangesetCounts(changeset_id, row.inserted, row.updated, row.deleted)


def changeset_number(*, session: Session, changeset_id: int) -> int | None:
    """The number (``seq``) a changeset was given when it was sealed at its COMMIT: what History
    and the Audit page show as "#N" (its id, given when it was opened, can differ); None if it
    is not sealed."""
    seq: int | None = session.scalar(select(Changeset.seq).where(Changeset.id == changeset_id))
    return seq


def number_after_commit(changeset_id: int) -> int | None:
    """``changeset_number`` of a changeset just committed, read in a session of its own; None if
    that read fails (the database gone right after the COMMIT, say): the changeset is in all
    the same, and the caller must not say otherwise."""
    try:
        with session_scope() as session:
            return changeset_number(session=session, changeset_id=changeset_id)
    except PortalError:
        return None
