"""Audit events: things people do that are not data changes (sign-ins, user admin, exports)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from portal.models import EVENT_KINDS, Event


def record_event(
    *,
    session: Session,
    kind: str,
    actor_username: str | None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    client_info: dict[str, Any] | None = None,
) -> int:
    """Append an event in the session's transaction and return its id.

    Raises:
        ValueError: ``kind`` is not one of ``portal.models.EVENT_KINDS``.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    event_id: int = session.execute(
        insert(Event)
        .values(
            kind=kind,
            actor_username=actor_username,
            target=target,
            detail=detail or {},
            client_info=client_info or {},
        )
        .returning(Event.id)
    ).scalar_one()
    return event_id
