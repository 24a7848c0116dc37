"""Searching the audit trail: changesets and events, newest first, filtered and keyset-paged;
one changeset's row changes; activity per day; every version of one row.

    search_changesets()   sealed changesets matching a ``TrailFilter``, a page at a time
    search_events()       audit events matching a ``TrailFilter``, a page at a time
    changeset_detail()    one changeset's header, its bulk loads and counts per operation
    row_changes()         a page of one changeset's row changes, optionally of one operation
    activity()            row changes per day (UTC) by actor or by dataset
    display_names()       each actor's display name as their latest changeset recorded it
    row_history()         every captured change of one row, oldest first
    actors()              every actor name in the log, for a filter's choices

Decisions a reader needs:

- Order and paging. Changesets come newest first by ``(committed_at, seq)``; events by
  ``(occurred_at, id)``. The second key makes the order total even when timestamps tie, and a
  page is "the next ``limit`` after this key" (keyset paging), so paging never skips or repeats
  a row while new ones arrive and costs the same on page 1,000 as on page 1. ``seq`` follows
  ``committed_at`` (both are taken under the chain head's lock), so this is also chain order.
- Indexes (migration 0004): every changeset filter combination the page offers leads with an
  equality column of a btree ending in ``committed_at DESC, seq DESC`` (dataset, actor, dataset
  and actor, kind, or none), so a page is an index range scan that stops after ``limit`` rows.
  Events use the ``(column, occurred_at DESC)`` indexes of migration 0001 with an incremental
  sort on ``id`` for ties. The keyset condition repeats ``committed_at <= :t`` beside the row
  comparison so the planner can always use it as an index bound.
- Free text is not indexed: it matches the reason (case-insensitively, ``%`` and ``_`` literal)
  or any cell value before or after of the changeset's row changes (bulk-loaded rows are not
  searched: they are stored as one compressed stream). It is checked along the index order
  above until a page is full, so narrow it with a dataset or a date range on a large log; a
  search that runs longer than ``FREE_TEXT_TIMEOUT`` is cancelled with a message saying so.
  For events it matches the target or any value, at any depth, of the detail (not its keys).
- Cell values are read from the ``jsonb`` text with decimals as ``Decimal``, so ``12.10`` stays
  ``12.10``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, Generic, Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    Date,
    Row,
    Select,
    Text,
    and_,
    cast,
    func,
    or_,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from portal.db import time_limited
from portal.errors import NotFound, ValidationError
from portal.models import (
    CHANGESET_KINDS,
    EVENT_KINDS,
    BulkLoad,
    Changeset,
    Dataset,
    Event,
    RowChange,
)

PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
FREE_TEXT_TIMEOUT: Final = "20s"
ActivityBy = Literal["actor", "dataset"]
K = TypeVar("K")
T = TypeVar("T")


_EXACT = json.JSONDecoder(parse_float=Decimal)
_PLAIN = json.JSONDecoder()


def loads(document: str | None, *, exact: bool = True) -> Any:
    """A ``jsonb`` value's text as Python, numbers with a point as ``Decimal`` (``exact``) or
    ``float``. One decoder each, made once: ``json.loads`` with options builds one per call."""
    if document is None:
        return None
    return (_EXACT if exact else _PLAIN).decode(document)


def day_start(day: date) -> datetime:
    """Midnight UTC opening ``day``: the trail's dates are UTC days (``TrailFilter.since``)."""
    return datetime.combine(day, time(), tzinfo=UTC)


def day_after(day: date) -> datetime:
    """Midnight UTC closing ``day``: ``TrailFilter.until`` for a range that includes it."""
    return day_start(day) + timedelta(days=1)


@dataclass(frozen=True)
class TrailFilter:
    """What the Audit page filters on; every field is optional and they combine with AND.

    ``since`` is inclusive and ``until`` exclusive; ``kind`` is a changeset kind for changesets
    and an event kind for events (a kind of the other sort matches nothing); ``dataset_id``
    matches events whose target is ``dataset:<id>``.
    """

    dataset_id: int | None = None
    actor: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "actor": self.actor,
            "kind": self.kind,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "text": self.text,
        }


@dataclass(frozen=True)
class ChangesetKey:
    """Where a page of changesets ends: the next page starts strictly after (older than) it."""

    committed_at: datetime
    seq: int


@dataclass(frozen=True)
class EventKey:
    occurred_at: datetime
    id: int


@dataclass(frozen=True)
class Page(Generic[T, K]):
    """Up to ``limit`` items and the key to ask for the next page with (``None``: no more)."""

    items: list[T]
    next_key: K | None


@dataclass(frozen=True)
class ChangesetSummary:
    id: int
    seq: int
    committed_at: datetime
    kind: str
    dataset_id: int | None
    dataset_name: str | None
    actor_username: str
    actor_display_name: str
    reason: str
    inserted: int
    updated: int
    deleted: int
    facts: dict[str, Any] = field(default_factory=dict)
    """What its detail says it did, the few keys a list shows (``SUMMARY_FACTS``): an upload's
    ``mode`` and whether it ``created`` its dataset, a schema or dataset change's ``action``
    and ``column`` (a label), whether it names each of ``SETTINGS``, the reason setting's new
    value (``reason_required_after``), a revert's ``reverts`` (a seq) or, restoring a row,
    ``restores`` (``row_id``, ``version``, ``seq``), an edit's ``columns`` (the labels of the
    columns whose cells it changed); null or false where the detail has none."""

    @property
    def key(self) -> ChangesetKey:
        return ChangesetKey(self.committed_at, self.seq)

    @property
    def out_of_band(self) -> bool:
        """Written outside the portal (psql, another tool): captured, but nobody said why."""
        return self.kind == "out_of_band"

    @property
    def changes(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class EventSummary:
    id: int
    occurred_at: datetime
    kind: str
    actor_username: str | None
    target: str | None
    detail: dict[str, Any]

    @property
    def key(self) -> EventKey:
        return EventKey(self.occurred_at, self.id)


@dataclass(frozen=True)
class BulkLoadInfo:
    id: int
    first_row_id: int
    last_row_id: int
    row_count: int


@dataclass(frozen=True)
class ChangesetDetail:
    """A changeset's sealed header and how its changes split by operation."""

    summary: ChangesetSummary
    client_info: dict[str, Any]
    detail: dict[str, Any]
    correlation_id: str | None
    prev_hash: str
    hash: str
    row_ops: dict[str, int]  # captured row changes per op (bulk-loaded rows not included)
    bulk_loads: list[BulkLoadInfo] = field(default_factory=list)
    first_ids: dict[str, int] = field(default_factory=dict)  # each op's first row change id


@dataclass(frozen=True)
class RowChangeView:
    """One captured row change. Updates hold only the changed cells, before and after."""

    id: int
    row_id: int
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class ActivityPoint:
    day: date
    key: str  # the actor's username, or the dataset's name (or "dataset <id>", or "none")
    changes: int
    changesets: int


@dataclass(frozen=True)
class RowEvent:
    """One change of one row, with the changeset that made it. A bulk-loaded row's event has
    ``op`` ``"insert"`` and ``bulk_load_id`` set; its image is read from the bulk stream."""

    seq: int
    changeset_id: int
    committed_at: datetime
    kind: str
    actor_username: str
    actor_display_name: str
    reason: str
    op: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    bulk_load_id: int | None = None


# ---------------------------------------------------------------------------------------------
# Changesets
# ---------------------------------------------------------------------------------------------


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _values_match(pattern: str) -> ColumnElement[bool]:
    """Some cell value, before or after, of the changeset's row changes is like ``pattern``."""
    clause: ColumnElement[bool] = text(
        "EXISTS (SELECT 1 FROM audit.row_change r"
        " CROSS JOIN LATERAL (SELECT value FROM jsonb_each_text(r.before)"
        "                     UNION ALL SELECT value FROM jsonb_each_text(r.after)) v"
        " WHERE r.changeset_id = audit.changeset.id AND v.value ILIKE :values_pattern"
        " ESCAPE '\\')"
    ).bindparams(values_pattern=pattern)  # type: ignore[assignment]
    return clause


def _changeset_conditions(
    trail_filter: TrailFilter, after: ChangesetKey | None = None
) -> list[ColumnElement[bool]]:
    f = trail_filter
    conditions: list[ColumnElement[bool]] = [Changeset.seq.is_not(None)]
    if f.dataset_id is not None:
        conditions.append(Changeset.dataset_id == f.dataset_id)
    if f.actor:
        conditions.append(Changeset.actor_username == f.actor)
    if f.kind:
        conditions.append(Changeset.kind == f.kind)
    if f.since is not None:
        conditions.append(Changeset.committed_at >= f.since)
    if f.until is not None:
        conditions.append(Changeset.committed_at < f.until)
    if after is not None:
        conditions.append(Changeset.committed_at <= after.committed_at)
        conditions.append(
            tuple_(Changeset.committed_at, Changeset.seq) < tuple_(after.committed_at, after.seq)
        )
    if f.text.strip():
        pattern = _like(f.text.strip())
        conditions.append(or_(Changeset.reason.ilike(pattern, escape="\\"), _values_match(pattern)))
    return conditions


_DETAIL = Changeset.detail
SETTINGS: Final = ("name", "description")
"""Settings a ``dataset`` changeset's detail names when it changes them (the reason setting is
read by its new value)."""
SUMMARY_FACTS: Final = func.jsonb_build_object(
    "action",
    _DETAIL["action"].astext,
    "mode",
    _DETAIL["mode"].astext,
    "created",
    _DETAIL.has_key("created"),
    "column",
    _DETAIL["column"]["label"].astext,
    *(item for key in SETTINGS for item in (key, _DETAIL.has_key(key))),
    "reason_required_after",  # a setting's change is {"before", "after"}
    _DETAIL["reason_required"]["after"],
    "reverts",
    _DETAIL["reverts"]["seq"],
    "restores",
    _DETAIL["restores"],
    "columns",  # an edit's: the labels of the columns it changed
    _DETAIL["columns"],
    type_=JSONB,
)

_SUMMARY_COLUMNS: Final = (
    Changeset.id,
    Changeset.seq,
    Changeset.committed_at,
    Changeset.kind,
    Changeset.dataset_id,
    Dataset.name,
    Changeset.actor_username,
    Changeset.actor_display_name,
    Changeset.reason,
    Changeset.inserted,
    Changeset.updated,
    Changeset.deleted,
    SUMMARY_FACTS,
)
"""A ``ChangesetSummary``'s fields, in its order (the changeset list and a changeset's detail)."""
_SUMMARY_WIDTH: Final = len(_SUMMARY_COLUMNS)


def changesets_statement(
    trail_filter: TrailFilter, after: ChangesetKey | None = None, limit: int = PAGE_SIZE
) -> Select[Any]:
    """The query behind ``search_changesets`` (``limit`` + 1 rows, to know if more follow)."""
    stmt: Any = (
        select(*_SUMMARY_COLUMNS)
        .outerjoin(Dataset, Dataset.id == Changeset.dataset_id)
        .where(and_(*_changeset_conditions(trail_filter, after)))
        .order_by(Changeset.committed_at.desc(), Changeset.seq.desc())
        .limit(limit + 1)
    )
    return stmt  # type: ignore[no-any-return]


def explain(session: Session, stmt: Select[Any], *, analyze: bool = False) -> str:
    """PostgreSQL's plan for ``stmt`` (with ``analyze``: run, with timings and buffers)."""
    compiled = stmt.compile(session.get_bind())
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    rows = session.connection().exec_driver_sql(prefix + str(compiled), compiled.params)
    return "\n".join(str(r[0]) for r in rows)


def _summary(row: Any) -> ChangesetSummary:
    return ChangesetSummary(*row)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationError(f"Choose a page size between 1 and {MAX_PAGE_SIZE}.")


def _run_search(session: Session, stmt: Select[Any], free_text: bool) -> Sequence[Row[Any]]:
    if not free_text:
        return session.execute(stmt).all()
    with time_limited(
        session,
        FREE_TEXT_TIMEOUT,
        f"The text search ran longer than {FREE_TEXT_TIMEOUT} and was stopped. Narrow it with a "
        "dataset, an actor or a shorter date range, then search again.",
    ):
        return session.execute(stmt).all()


def search_changesets(
    *,
    session: Session,
    trail_filter: TrailFilter,
    after: ChangesetKey | None = None,
    limit: int = PAGE_SIZE,
) -> Page[ChangesetSummary, ChangesetKey]:
    """The newest ``limit`` sealed changesets matching the filter, older than ``after``.

    Raises:
        ValidationError: a page size outside 1 to ``MAX_PAGE_SIZE``, or a free-text search
            that ran too long.
    """
    _check_limit(limit)
    stmt = changesets_statement(trail_filter, after, limit)
    rows = _run_search(session, stmt, bool(trail_filter.text.strip()))
    items = [_summary(r) for r in rows[:limit]]
    return Page(items, items[-1].key if len(rows) > limit else None)


def changeset_detail(*, session: Session, changeset_id: int) -> ChangesetDetail:
    """The changeset's header, its bulk loads, and its row changes counted per operation with
    each operation's first row change id (where ``row_changes`` of that op starts reading).

    Raises:
        NotFound: no sealed changeset with that id.
    """
    row = session.execute(
        select(
            *_SUMMARY_COLUMNS,
            Changeset.client_info,
            Changeset.detail,
            cast(Changeset.correlation_id, Text).label("correlation_id"),
            Changeset.prev_hash,
            Changeset.hash,
        )
        .outerjoin(Dataset, Dataset.id == Changeset.dataset_id)
        .where(Changeset.id == changeset_id, Changeset.seq.is_not(None))
    ).one_or_none()
    if row is None:
        raise NotFound(f"There is no sealed changeset with id {changeset_id}.")
    counts = session.execute(
        select(RowChange.op, func.count(), func.min(RowChange.id))
        .where(RowChange.changeset_id == changeset_id)
        .group_by(RowChange.op)
    ).all()
    ops: dict[str, int] = {op: n for op, n, _ in counts}
    bulks = [
        BulkLoadInfo(*b)
        for b in session.execute(
            select(BulkLoad.id, BulkLoad.first_row_id, BulkLoad.last_row_id, BulkLoad.row_count)
            .where(BulkLoad.changeset_id == changeset_id)
            .order_by(BulkLoad.id)
        )
    ]
    return ChangesetDetail(
        summary=_summary(row[:_SUMMARY_WIDTH]),
        client_info=row.client_info,
        detail=row.detail,
        correlation_id=row.correlation_id,
        prev_hash=row.prev_hash,
        hash=row.hash,
        row_ops={op: int(ops.get(op, 0)) for op in ("insert", "update", "delete")},
        bulk_loads=bulks,
        first_ids={op: first for op, _, first in counts},
    )


def row_changes(
    *,
    session: Session,
    changeset_id: int,
    op: str | None = None,
    after_id: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page[RowChangeView, int]:
    """A page of the changeset's row changes in capture order (by id), after ``after_id``.

    Read along the row changes' primary key ``(changeset_id, id)``.

    Raises:
        ValidationError: a page size outside 1 to ``MAX_PAGE_SIZE``.
    """
    _check_limit(limit)
    stmt = (
        select(
            RowChange.id,
            RowChange.row_id,
            RowChange.op,
            cast(RowChange.before, Text),
            cast(RowChange.after, Text),
        )
        .where(RowChange.changeset_id == changeset_id)
        .order_by(RowChange.id)
        .limit(limit + 1)
    )
    if op is not None:
        stmt = stmt.where(RowChange.op == op)
    if after_id is not None:
        stmt = stmt.where(RowChange.id > after_id)
    rows = session.execute(stmt).all()
    items = [RowChangeView(r[0], r[1], r[2], loads(r[3]), loads(r[4])) for r in rows[:limit]]
    return Page(items, items[-1].id if len(rows) > limit else None)


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


def _detail_values_match(pattern: str) -> ColumnElement[bool]:
    """Some value (string, number or boolean), at any depth, of the event's detail is like
    ``pattern``: the values as they read, not the JSON text, whose escapes (``\\"``) and keys
    (``"rows"``, ``"filter"``) a search would otherwise meet."""
    clause: ColumnElement[bool] = text(
        "EXISTS (SELECT 1 FROM jsonb_path_query(audit.event.detail, 'strict $.**') v"
        " WHERE jsonb_typeof(v) IN ('string', 'number', 'boolean')"
        " AND v #>> '{}' ILIKE :detail_pattern ESCAPE '\\')"
    ).bindparams(detail_pattern=pattern)  # type: ignore[assignment]
    return clause


def events_statement(
    trail_filter: TrailFilter, after: EventKey | None = None, limit: int = PAGE_SIZE
) -> Select[Any]:
    """The query behind ``search_events``."""
    f = trail_filter
    conditions: list[ColumnElement[bool]] = [true()]
    if f.dataset_id is not None:
        conditions.append(Event.target == f"dataset:{f.dataset_id}")
    if f.actor:
        conditions.append(Event.actor_username == f.actor)
    if f.kind:
        conditions.append(Event.kind == f.kind)
    if f.since is not None:
        conditions.append(Event.occurred_at >= f.since)
    if f.until is not None:
        conditions.append(Event.occurred_at < f.until)
    if after is not None:
        conditions.append(Event.occurred_at <= after.occurred_at)
        conditions.append(tuple_(Event.occurred_at, Event.id) < tuple_(after.occurred_at, after.id))
    if f.text.strip():
        pattern = _like(f.text.strip())
        conditions.append(
            or_(
                Event.target.ilike(pattern, escape="\\"),
                _detail_values_match(pattern),
            )
        )
    return (
        select(
            Event.id,
            Event.occurred_at,
            Event.kind,
            Event.actor_username,
            Event.target,
            Event.detail,
        )
        .where(and_(*conditions))
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit + 1)
    )


def search_events(
    *,
    session: Session,
    trail_filter: TrailFilter,
    after: EventKey | None = None,
    limit: int = PAGE_SIZE,
) -> Page[EventSummary, EventKey]:
    """The newest ``limit`` events matching the filter, older than ``after``.

    Raises:
        ValidationError: as ``search_changesets``.
    """
    _check_limit(limit)
    stmt = events_statement(trail_filter, after, limit)
    rows = _run_search(session, stmt, bool(trail_filter.text.strip()))
    items = [EventSummary(*tuple(r)) for r in rows[:limit]]
    return Page(items, items[-1].key if len(rows) > limit else None)


# ---------------------------------------------------------------------------------------------
# Activity, actors
# ---------------------------------------------------------------------------------------------


def activity_statement(trail_filter: TrailFilter, by: ActivityBy = "actor") -> Select[Any]:
    """The query behind ``activity``: (UTC day, actor or dataset id, row changes, changesets)."""
    f = trail_filter
    no_text = TrailFilter(f.dataset_id, f.actor, f.kind, f.since, f.until)
    day = cast(func.timezone("UTC", Changeset.committed_at), Date)
    key = Changeset.actor_username if by == "actor" else Changeset.dataset_id
    stmt: Any = (
        select(
            day,
            key,
            func.sum(Changeset.inserted + Changeset.updated + Changeset.deleted),
            func.count(),
        )
        .where(*_changeset_conditions(no_text))
        .group_by(day, key)
        .order_by(day, key)
    )
    return stmt  # type: ignore[no-any-return]


def activity(
    *, session: Session, trail_filter: TrailFilter, by: ActivityBy = "actor"
) -> list[ActivityPoint]:
    """Row changes (the sealed counts of inserted, updated and deleted rows) and changesets per
    UTC day, per actor or per dataset, over the changesets matching the filter. Free text is
    not applied: a chart of a text search would need every changeset's row changes."""
    rows = session.execute(activity_statement(trail_filter, by)).all()
    names: dict[Any, str] = {}
    if by == "dataset":
        ids = {r[1] for r in rows if r[1] is not None}
        found = session.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(ids)))
        names = dict(found.all())
    points = []
    for d, k, n, c in rows:
        if by == "actor":
            label = str(k)
        else:
            label = names.get(k, f"dataset {k}") if k is not None else "no dataset"
        points.append(ActivityPoint(day=d, key=label, changes=int(n or 0), changesets=int(c)))
    return points


_LATEST_DISPLAY_NAME = text(
    """
SELECT u.name, (
  SELECT c.actor_display_name FROM audit.changeset c
  WHERE c.actor_username = u.name ORDER BY c.committed_at DESC, c.seq DESC LIMIT 1
)
FROM unnest(CAST(:names AS text[])) AS u(name)
"""
)


def display_names(*, session: Session, usernames: Collection[str]) -> dict[str, str]:
    """Each of ``usernames`` with the display name their latest changeset recorded (the name a
    chart's series goes by; a changeset keeps the name of its own time): one index lookup each
    (``ix_changeset_actor_committed_seq``). A username with no changeset is left out."""
    if not usernames:
        return {}
    rows = session.execute(_LATEST_DISPLAY_NAME, {"names": sorted(set(usernames))})
    return {name: shown for name, shown in rows if shown is not None}


_LOOSE_SCAN = """
WITH RECURSIVE a(u) AS (
  SELECT min({col}) FROM audit.{table}
  UNION ALL
  SELECT (SELECT min({col}) FROM audit.{table} WHERE {col} > a.u) FROM a WHERE a.u IS NOT NULL
)
SELECT u FROM a WHERE u IS NOT NULL
"""


def actors(*, session: Session) -> list[str]:
    """Every username that made a changeset or an event, sorted: a skip scan of the actor
    indexes, so its cost grows with the number of actors, not of changesets."""
    found: set[str] = set()
    for table in ("changeset", "event"):
        found |= set(session.scalars(text(_LOOSE_SCAN.format(col="actor_username", table=table))))
    return sorted(found)


def kinds() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The changeset kinds and the event kinds, for a filter's choices."""
    return CHANGESET_KINDS, EVENT_KINDS


# ---------------------------------------------------------------------------------------------
# One row
# ---------------------------------------------------------------------------------------------


def row_history(*, session: Session, dataset_id: int, row_id: int) -> list[RowEvent]:
    """Every sealed change of row ``row_id`` of the dataset in chain order: its insert (captured
    or bulk-loaded; a bulk event has no image here), updates (changed cells) and delete.

    Reads ``ix_row_change_dataset_row`` for the captured changes and the dataset's bulk loads
    (``ix_bulk_load_dataset``) for the one that may have inserted the row.
    """
    who = (
        Changeset.seq,
        Changeset.id,
        Changeset.committed_at,
        Changeset.kind,
        Changeset.actor_username,
        Changeset.actor_display_name,
        Changeset.reason,
    )
    captured = session.execute(
        select(
            *who,
            RowChange.id,
            RowChange.op,
            cast(RowChange.before, Text),
            cast(RowChange.after, Text),
        )
        .join(Changeset, Changeset.id == RowChange.changeset_id)
        .where(
            RowChange.dataset_id == dataset_id,
            RowChange.row_id == row_id,
            Changeset.seq.is_not(None),
        )
    ).all()
    bulk = session.execute(
        select(*who, BulkLoad.id)
        .join(Changeset, Changeset.id == BulkLoad.changeset_id)
        .where(
            BulkLoad.dataset_id == dataset_id,
            BulkLoad.first_row_id <= row_id,
            BulkLoad.last_row_id >= row_id,
            Changeset.seq.is_not(None),
        )
    ).all()
    ordered: list[tuple[tuple[int, int, int], RowEvent]] = []
    r: Any
    b: Any
    for r in captured:
        event = RowEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[8], loads(r[9]), loads(r[10]))
        ordered.append(((r[0], 0, r[7]), event))
    for b in bulk:
        event = RowEvent(b[0], b[1], b[2], b[3], b[4], b[5], b[6], "insert", None, None, b[7])
        ordered.append(((b[0], 1, b[7]), event))
    ordered.sort(key=lambda pair: pair[0])
    return [event for _, event in ordered]
