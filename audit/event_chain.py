"""The hash chain over audit events: canonical encoding, verification, head.

Every ``audit.event`` row (sign-ins, failed sign-ins, lock-outs, sign-outs, user administration,
exports, views of the audit trail) is chained as it is inserted, by the database
(``audit.chain_event()``, migration 0008), which gives it the next gap-free ``seq`` and
``hash = H(prev_hash, line)``. This module re-implements the encoding independently in Python,
so ``portal audit verify`` does not trust any function stored in the database it checks. The
changesets' chain (``audit.chain``) is separate: an event is not a changeset, and sign-ins must
not wait for the sealing of data changes.

Canonical encoding, version 1 (``portal-event/1``, since migration 0008)
------------------------------------------------------------------------
Text, SHA-256, hex and JSON as in ``audit/chain.py``: JSON written the way PostgreSQL prints
``jsonb``, and the ``detail`` and ``client_info`` values used exactly as PostgreSQL prints them
(``column::text``).

1. ::

       line = ["portal-event/1", seq, id, occurred_at, kind, actor_username, target, detail,
               client_info]

   ``occurred_at`` is UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``actor_username`` and ``target``
   are strings or null; ``detail`` and ``client_info`` are jsonb (objects). The line contains no
   newline (JSON escapes it inside strings).
2. ``hash = hex(sha256(prev_hash + "\\n" + line))``, where ``prev_hash`` is the previous event's
   ``hash`` (by ``seq``) and, for ``seq`` 1, 64 zeros.

``occurred_at`` is the database's clock (``clock_timestamp()``) as the trigger starts, whatever
the INSERT supplied (since migration 0011; events recorded before keep the time they were
given). ``seq`` is given under the head's row lock, after ``id`` and ``occurred_at`` were
filled, so neither of those need rise with ``seq`` when events are recorded concurrently:
``seq`` alone is the chain's order. Events that existed before migration 0008 were chained in
``id`` order.

A verifier reads the head row ``audit.event_chain_head`` first, then walks the events by ``seq``
from 1 up to the head's and checks: seq has no gap; ``prev_hash`` equals the previous hash; the
recomputed hash equals the stored one; the last event is the one the head row records, by seq,
hash and id (a removed tail, or a head row altered); and no event lies outside the chain (no
seq, or a seq beyond the head: inserted with the trigger switched off). Editing, deleting or
reordering an event is thus detected even when a superuser does it with every trigger off,
except in one case: removing the newest events *and* rewriting the head row to match the event
left last. Only a head kept outside the database catches that, as for changesets: ``portal
audit head`` prints the events' head too (its ``events <seq> <hash>`` line), and ``portal audit
verify --expect-event-head HASH`` checks that an event with that hash is still in the chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import GENESIS_HASH, format_timestamp, json_array, json_scalar, readable_time
from portal.errors import AuditError

ENCODING_TAG = "portal-event/1"


@dataclass(frozen=True)
class ChainedEvent:
    """The chained fields of an event, as read back from the database."""

    seq: int
    id: int
    occurred_at: datetime
    kind: str
    actor_username: str | None
    target: str | None
    detail: str  # jsonb text
    client_info: str  # jsonb text

    def encode(self) -> str:
        return json_array(
            [
                json_scalar(ENCODING_TAG),
                str(self.seq),
                str(self.id),
                json_scalar(format_timestamp(self.occurred_at)),
                json_scalar(self.kind),
                json_scalar(self.actor_username),
                json_scalar(self.target),
                self.detail,
                self.client_info,
            ]
        )


def event_hash(prev_hash: str, event: ChainedEvent) -> str:
    """The hash an event must carry, given its predecessor's."""
    return hashlib.sha256(f"{prev_hash}\n{event.encode()}".encode()).hexdigest()


@dataclass(frozen=True)
class EventHead:
    seq: int
    hash: str
    event_id: int | None


@dataclass(frozen=True)
class EventVerifyResult:
    """The outcome of walking the event chain: ``ok`` or the first problem found."""

    ok: bool
    count: int
    head: EventHead
    problem: str | None = None
    failed_seq: int | None = None
    failed_event_id: int | None = None

    def summary(self) -> str:
        if self.ok:
            return f"event chain intact: {self.count} events, head {self.head.hash}"
        if self.failed_seq is None:
            where = (
                "event chain"
                if self.failed_event_id is None
                else f"event id {self.failed_event_id}"
            )
        else:
            where = f"event seq {self.failed_seq}"
            if self.failed_event_id is not None:
                where += f" (id {self.failed_event_id})"
        return f"event chain broken at {where}: {self.problem}"


_EVENTS = text(
    f"""
    SELECT id, seq, {readable_time("occurred_at")}, kind, actor_username, target,
           detail::text AS detail, client_info::text AS client_info, prev_hash, hash
      FROM audit.event WHERE seq <= :head_seq ORDER BY seq
    """
)
# One statement, so one snapshot: an event committed since the head was first read is under
# the head read here.
_OUTSIDE = text(
    """
    SELECT id, seq FROM audit.event
     WHERE seq IS NULL OR seq > (SELECT seq FROM audit.event_chain_head WHERE id = 1)
     ORDER BY seq NULLS FIRST, id LIMIT 1
    """
)


def read_event_head(*, session: Session) -> EventHead:
    """The newest event's seq and hash, as the event chain's head row records it.

    Raises:
        AuditError: the head row is missing (only a superuser with triggers off can delete it).
    """
    row = session.execute(
        text("SELECT seq, hash, event_id FROM audit.event_chain_head")
    ).one_or_none()
    if row is None:
        raise AuditError(
            "the event chain head row (audit.event_chain_head) is missing: it was deleted"
        )
    return EventHead(seq=row.seq, hash=row.hash, event_id=row.event_id)


def is_event_hash(*, session: Session, digest: str) -> bool:
    """True if some event carries ``digest`` as its hash (a head kept from ``portal audit head``
    given where the changesets' head was asked for, say)."""
    found = session.execute(
        text("SELECT EXISTS (SELECT 1 FROM audit.event WHERE hash = :h)"), {"h": digest}
    ).scalar_one()
    return bool(found)


def verify_events(*, session: Session, expect_head: str | None = None) -> EventVerifyResult:
    """Recompute the whole event chain and report the first event that no longer matches.

    ``expect_head``, an event chain head kept outside the database (an earlier ``hash``), must
    still be in the chain: that catches the newest events removed even when the head row was
    rewritten to match.

    The events are streamed, a few thousand at a time, however many there are. The head row is
    read first and the walk stops at its seq, so events recorded meanwhile (by other
    transactions, at READ COMMITTED) are neither reported nor needed.
    """
    try:
        head = read_event_head(session=session)
    except AuditError as exc:
        return EventVerifyResult(False, 0, EventHead(0, GENESIS_HASH, None), str(exc))
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    wanted = expect_head.strip().lower() if expect_head is not None else None
    seen_wanted = wanted == GENESIS_HASH
    last = EventHead(seq=0, hash=GENESIS_HASH, event_id=None)

    def broken(problem: str, seq: int | None, event_id: int | None) -> EventVerifyResult:
        return EventVerifyResult(False, count, last, problem, seq, event_id)

    events = session.execute(
        _EVENTS,
        {"head_seq": head.seq},
        execution_options={"yield_per": 5000, "stream_results": True},
    )
    try:
        for e in events:
            if e.seq != expected_seq:
                return broken(  # the missing one's id is not known; the one found is intact
                    f"expected seq {expected_seq} next, found {e.seq} (event id {e.id}): "
                    f"events {expected_seq}..{e.seq - 1} are missing or renumbered",
                    expected_seq,
                    None,
                )
            if e.occurred_at is None:
                return broken(
                    f"it occurred at {e.occurred_at_text}, a time the portal never records: it "
                    "was altered after it was recorded",
                    e.seq,
                    e.id,
                )
            if e.prev_hash != prev_hash:
                return broken(
                    f"its prev_hash {e.prev_hash} is not the hash of seq {e.seq - 1} "
                    f"({prev_hash}): an event before it was removed, reordered or altered",
                    e.seq,
                    e.id,
                )
            recomputed = event_hash(
                prev_hash,
                ChainedEvent(
                    seq=e.seq,
                    id=e.id,
                    occurred_at=e.occurred_at,
                    kind=e.kind,
                    actor_username=e.actor_username,
                    target=e.target,
                    detail=e.detail,
                    client_info=e.client_info,
                ),
            )
            if e.hash != recomputed:
                return broken(
                    f"its contents no longer match its hash (stored {e.hash}, recomputed "
                    f"{recomputed}): it was altered after it was recorded",
                    e.seq,
                    e.id,
                )
            prev_hash, expected_seq, count = e.hash, expected_seq + 1, count + 1
            seen_wanted = seen_wanted or e.hash == wanted
            last = EventHead(seq=e.seq, hash=e.hash, event_id=e.id)
    finally:
        events.close()

    outside = session.execute(_OUTSIDE).one_or_none()
    if outside is not None:
        return broken(
            f"event id {outside.id} is not in the chain ("
            + ("no seq" if outside.seq is None else f"seq {outside.seq}")
            + f", head seq {head.seq}): it was added with the chaining trigger switched off, "
            "or renumbered",
            outside.seq,
            outside.id,
        )
    if (head.seq, head.hash, head.event_id) != (last.seq, last.hash, last.event_id):
        missing = head.seq > last.seq
        return broken(
            f"the event chain head records seq {head.seq} ({head.hash}, event id "
            f"{head.event_id}) but the newest event is seq {last.seq} ({last.hash}, event id "
            f"{last.event_id}): "
            + ("events were removed from the end" if missing else "the head row was altered"),
            last.seq + 1 if missing else last.seq,
            None if missing else last.event_id,
        )
    if wanted is not None and not seen_wanted:
        return broken(
            f"the event head recorded earlier ({wanted}) is not in the event chain, whose "
            f"newest hash is {last.hash} at seq {last.seq}: the newest events were removed, or "
            "the events were rewritten, since that head was recorded",
            last.seq + 1,
            None,
        )
    return EventVerifyResult(True, count, last)
