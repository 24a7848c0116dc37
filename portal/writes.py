"""Committing a checked ChangeSet to a dataset: one transaction, one changeset, set-based SQL.

    read_window()    a page of rows for the editor, with each row's ``_version``
    commit()         apply a ChangeSet under a new changeset, or refuse all of it
    current_rows()   the rows as they are now, for a three-way merge after a conflict

Decisions a reader needs:

- Optimistic concurrency: every update and delete says ``WHERE _row_id = v._row_id AND
  _version = v._seen`` and bumps ``_version``; ``RETURNING`` tells which rows matched. If any
  row's version moved (someone committed it since it was read, or deleted it), the savepoint
  around the writes is rolled back — the changeset and its captured rows with it — and
  ``EditConflict`` lists each such row with who changed it last, when, why and to what, read from
  the audit log. Nothing is ever half-written.
- Set-based: one ``UPDATE … FROM (VALUES …)`` per set of changed columns, one ``DELETE …
  USING (VALUES …)``, one ``INSERT … VALUES … RETURNING``, each sent in one round trip by
  psycopg2's ``execute_values``. Rows are locked in ``_row_id`` order, so two commits touching
  the same rows wait for each other instead of deadlocking; commits to one dataset otherwise
  run side by side (the dataset row is only locked ``FOR KEY SHARE``).
- The backstop: a value that slipped past ``portal.diffs`` (or a unique value held by a row
  outside the window) is refused by the table's constraints; ``EditRefused`` names the row and
  the column, and nothing is written. UNIQUE constraints are deferrable and deferred until all
  the commit's rows are written, so rows may swap or pass on their values.
- Permissions are checked here again, whatever the page did: viewers cannot commit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any, Final

import psycopg2
import psycopg2.errors
from psycopg2.extras import execute_values
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Text,
    UniqueConstraint,
    any_,
    cast,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from audit.capture import qualified_table
from audit.changesets import changeset_number as changeset_number  # the Edit page's
from audit.changesets import number_after_commit as number_after_commit
from audit.search import loads
from portal import db, diffs, estimates, indexes
from portal.actor import Actor
from portal.browse import RowFilter, Sort, condition, known_column
from portal.datasets import (
    check_reason_length,
    dataset_spec,
    get_dataset,
    guarded_columns,
    open_dataset_changeset,
    too_long_for_an_index,
    too_long_for_index_message,
)
from portal.diffs import ChangeSet, RowDelete, RowUpdate
from portal.errors import NotFound, PermissionDenied, PortalError, ValidationError
from portal.merge import Current
from portal.models import Changeset, Dataset
from portal.spec import (
    DATA_SCHEMA,
    ROW_ID,
    SQL_TYPE_NAMES,
    CellError,
    DatasetSpec,
    Value,
    check_rule,
    dataset_table,
    index_name,
    stored_value,
    taken_value,
)
from portal.wording import agreeing, counted

WINDOW_SIZES: Final = (100, 500, 1_000, 5_000)
COUNT_CAP: Final = 1_000
"""``read_window`` counts matching rows up to this many past the window's end, never further:
an exact ``count(*)`` reads every matching row, so on a 10,000,000-row table it costs seconds
where the page itself costs milliseconds. Past the cap the total is PostgreSQL's estimate (the
dataset's row count when nothing is filtered), shown as "about"."""


@dataclass(frozen=True, eq=False)
class EditWindow:
    """A window of rows read for editing: ``rows`` as ``(_row_id, *values)`` in spec order,
    ``versions`` by ``_row_id``, and how many rows match (``total``, see ``COUNT_CAP``)."""

    dataset_id: int
    name: str
    spec: DatasetSpec
    spec_version: int
    reason_required: bool
    rows: list[tuple[Any, ...]]
    versions: dict[int, int]
    total: int
    offset: int
    total_is_exact: bool = True
    """False when more rows matched than ``COUNT_CAP`` past the window: ``total`` is then an
    estimate (never below what was counted); ``total_text`` says "about"."""
    has_more: bool = False
    """Whether rows follow this window (known exactly: one row more than the window is read)."""
    indexing: tuple[str, ...] = ()
    """Columns (physical names) of this read whose index is still being built: the read was
    slower than it will be (see ``portal.indexes``)."""

    @property
    def total_text(self) -> str:
        """The total for people: "1,234", or an estimate to two significant digits, "about
        1,200,000"."""
        return estimates.total_text(self.total, self.total_is_exact)


@dataclass(frozen=True)
class CommitResult:
    changeset_id: int
    updated_rows: int
    updated_cells: int
    inserted_ids: tuple[int, ...]
    deleted_rows: int


@dataclass(frozen=True)
class Conflict:
    """A row whose version moved since it was read: its values now (``None``: deleted), and
    the newest change to it in the audit log (who, when, why, what)."""

    row_id: int
    mine: RowUpdate | RowDelete
    now: dict[str, Value] | None
    version: int | None
    op: str
    changeset_id: int | None
    by: str
    at: datetime | None
    reason: str
    last_image: dict[str, Value]
    """The row as the newest change left it (for a deleted row: as it was when deleted)."""
    their_change: dict[str, tuple[Value, Value]] = field(default_factory=dict)
    """The cells the newest change updated, before and after (empty unless it was an update)."""


class EditConflict(PortalError):
    """Some rows changed since they were read; nothing was written."""

    def __init__(self, conflicts: Sequence[Conflict]) -> None:
        self.conflicts = tuple(conflicts)
        n = len(self.conflicts)
        super().__init__(
            f"{counted(n, 'row')} you changed {agreeing(n, 'was', 'were')} "
            f"changed by someone else since you loaded {agreeing(n, 'it', 'them')}, so nothing "
            "was written. See what they did below, then reload and re-apply your edits."
        )


class SpecChanged(ValidationError):
    """The dataset's rules changed (``rule_changes.change_rules``) since the rows were read:
    the edits were checked under the old ones; nothing was written."""


class ReasonRequired(ValidationError):
    """No reason was given for a commit to a dataset that needs one (its setting may have
    changed since the rows were read); nothing was written."""


# ---------------------------------------------------------------------------------------------
# Reading a window
# ---------------------------------------------------------------------------------------------


def read_window(
    *,
    session: Session,
    dataset_id: int,
    offset: int = 0,
    limit: int = 1_000,
    sort: Sort | None = None,
    filters: Sequence[RowFilter] = (),
) -> EditWindow:
    """``limit`` rows from ``offset`` of the rows matching every filter, in ``sort`` order (ties
    by ``_row_id``), with their versions, whether more follow, and the matching total.

    The total is exact on the last window (no count needed) and up to ``COUNT_CAP`` rows past
    the window's end; past that, or when PostgreSQL expects more than four times that many
    (then nothing is counted), it is the estimate, with ``total_is_exact`` false.

    Raises:
        NotFound: no such dataset.
        ValidationError: a window size outside ``WINDOW_SIZES``'s range, an unknown column, or
            a filter value that does not fit its column.
    """
    if not 1 <= limit <= max(WINDOW_SIZES):
        raise ValidationError(f"Show between 1 and {max(WINDOW_SIZES):,} rows at a time.")
    sort = sort or Sort()
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    spec = dataset_spec(dataset)
    want = indexes.wanted(spec, dataset.row_count, sort, filters)
    building = indexes.ensure(session, dataset.table_name, want) if want else []
    table = dataset_table(spec, dataset.table_name)
    where = [condition(table, spec, f) for f in filters]
    key = table.c[known_column(spec, sort.column)]
    keys = [key] if key.name == ROW_ID else [key, table.c[ROW_ID]]
    order = [k.desc() if sort.descending else k.asc() for k in keys]
    start = max(0, offset)
    stmt: Select[Any] = (
        select(table.c["_row_id"], table.c["_version"], *(table.c[n] for n in spec.names))
        .where(*where)
        .order_by(*order)
        .limit(limit + 1)  # one more: whether rows follow, without counting them
        .offset(start)
    )
    found = session.execute(stmt).all()
    has_more = len(found) > limit
    found = found[:limit]
    total, exact = estimates.matching_total(
        session=session,
        table=table,
        spec=spec,
        filters=filters,
        where=where,
        row_count=dataset.row_count,
        start=start,
        found=len(found),
        has_more=has_more,
        cap=start + limit + COUNT_CAP,
    )
    return EditWindow(
        dataset_id=dataset.id,
        name=dataset.name,
        spec=spec,
        spec_version=dataset.spec_version,
        reason_required=dataset.reason_required,
        rows=[(r[0], *r[2:]) for r in found],
        versions={int(r[0]): int(r[1]) for r in found},
        total=total,
        offset=start,
        total_is_exact=exact,
        has_more=has_more,
        indexing=tuple(building),
    )


# ---------------------------------------------------------------------------------------------
# Committing
# ---------------------------------------------------------------------------------------------


def changed_labels(spec: DatasetSpec, changes: ChangeSet) -> list[str]:
    """The labels of the columns whose cells ``changes`` updates, in the spec's order."""
    changed = {name for u in changes.updates for name in u.after}
    return [c.label for c in spec.columns if c.name in changed]


def commit(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    spec_version: int,
    changes: ChangeSet,
    reason: str,
    kind: str = "edit",
    detail: dict[str, Any] | None = None,
    client_info: dict[str, Any] | None = None,
    correlation_id: uuid.UUID | None = None,
) -> CommitResult:
    """Apply ``changes`` to the dataset as one changeset of ``kind``, in the session's
    transaction (sealed when it commits); ``correlation_id`` names the click that asked for it
    (``changeset_of_click`` finds it again).

    Raises:
        PermissionDenied: the actor is a viewer.
        NotFound: no such dataset.
        ValidationError: no changes, a missing reason (``ReasonRequired``), a spec changed
            since the rows were read (``SpecChanged``), or a value the table's constraints
            refuse (``EditRefused``); nothing is written.
        EditConflict: rows changed since they were read; nothing is written.
    """
    if not actor.can("editor"):
        raise PermissionDenied(
            "Your role can view datasets but not change them; nothing was written."
        )
    if changes.empty:
        raise ValidationError("There are no changes to commit.")
    reason = reason.strip()
    check_reason_length(reason)
    dataset = _locked_dataset(session, dataset_id)
    if dataset.reason_required and not reason:
        raise ReasonRequired(
            "Say why you are making these changes: this dataset needs a reason; nothing was "
            "written."
        )
    if dataset.spec_version != spec_version:
        raise SpecChanged(
            f"The column rules of “{dataset.name}” changed since its rows were read for these "
            "changes; nothing was written. Start again from the rows as they are now, so that "
            "the changes are checked under the new rules."
        )
    spec = dataset_spec(dataset)
    if kind == "edit" and detail is None and changes.updates:
        detail = {"columns": changed_labels(spec, changes)}  # what the lists say it changed
    table = qualified_table(session, dataset.table_name)
    savepoint = session.begin_nested()
    try:
        changeset_id = open_dataset_changeset(
            session=session,
            actor=actor,
            dataset=dataset,
            kind=kind,
            reason=reason,
            detail=detail,
            client_info=client_info,
            correlation_id=correlation_id,
        )
        raw: Any = session.connection().connection.dbapi_connection
        with raw.cursor() as cursor:
            # Identifiers quoted as everywhere else (a physical name may be an SQL keyword).
            quoted = _quoted_names(session, spec)
            unique = _unique_constraints(session, spec, dataset.table_name)
            if unique:  # checked once all rows are written: values may move between rows
                cursor.execute(f"SET CONSTRAINTS {unique} DEFERRED")
            _lock_rows(cursor, table, changes)
            moved = _apply(cursor, table, spec, quoted, changes)
            inserted = (
                _insert(cursor, table, dataset.id, spec, quoted, changes) if not moved else ()
            )
            if unique:
                cursor.execute(f"SET CONSTRAINTS {unique} IMMEDIATE")
    except psycopg2.Error as exc:
        if db.is_disconnect(exc):
            raise  # nothing to roll back on a dead connection: session_scope says it was lost
        savepoint.rollback()
        raise _refused(exc, spec, dataset.table_name, changes) from None
    except BaseException:
        savepoint.rollback()
        raise
    if moved:
        savepoint.rollback()
        raise EditConflict(_conflicts(session, dataset, spec, changes, moved))
    savepoint.commit()
    delta = len(inserted) - len(changes.deletes)
    if delta:  # last of all: commits changing the count take turns only from here to COMMIT
        session.execute(
            text(
                "UPDATE portal.datasets SET row_count = row_count + :delta, updated_at = now()"
                " WHERE id = :id"
            ),
            {"delta": delta, "id": dataset.id},
        )
    return CommitResult(
        changeset_id=changeset_id,
        updated_rows=len(changes.updates),
        updated_cells=changes.cells_updated,
        inserted_ids=inserted,
        deleted_rows=len(changes.deletes),
    )


def changeset_of_transaction(
    *, session: Session, dataset_id: int, actor: Actor, xid: str
) -> int | None:
    """The id of the changeset of the dataset that ``actor``'s transaction ``xid``
    (``CommitOutcomeUnknown.xid``) opened, if it committed; None if there is none: that
    transaction did not commit (the server's "committed" for ``xid`` can be a later
    transaction's after a crash, ``db.transaction_status``)."""
    return _own_changeset(session, dataset_id, actor, Changeset.txid == int(xid))


def changeset_of_click(
    *, session: Session, dataset_id: int, actor: Actor, correlation_id: uuid.UUID
) -> int | None:
    """The id of the changeset of the dataset that ``actor``'s commit with ``correlation_id``
    wrote, if it committed; None if it did not (it failed, or was rolled back)."""
    return _own_changeset(session, dataset_id, actor, Changeset.correlation_id == correlation_id)


def number_if_landed(*, session: Session, changeset_id: int | None) -> int | None:
    """``changeset_number`` of a commit found after all (``changeset_of_transaction``,
    ``changeset_of_click``); None when none was found."""
    return (
        None
        if changeset_id is None
        else changeset_number(session=session, changeset_id=changeset_id)
    )


def _own_changeset(
    session: Session, dataset_id: int, actor: Actor, which: ColumnElement[bool]
) -> int | None:
    """The id of ``actor``'s changeset of the dataset that ``which`` picks, if there is one."""
    found: int | None = session.scalar(
        select(Changeset.id).where(
            Changeset.dataset_id == dataset_id, Changeset.actor_username == actor.username, which
        )
    )
    return found


def _locked_dataset(session: Session, dataset_id: int) -> Dataset:
    """The dataset, read and locked ``FOR KEY SHARE`` in one round trip.

    Commits to one dataset share that lock and run side by side (``_lock_rows`` orders their
    row locks); an upload, which locks the dataset ``FOR UPDATE``, waits for the commits under
    way and they for it, so no commit runs under a replace.

    Raises:
        NotFound: no such dataset.
    """
    dataset = session.scalars(
        select(Dataset)
        .where(Dataset.id == dataset_id)
        .with_for_update(read=True, key_share=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if dataset is None:
        raise NotFound(f"There is no dataset with id {dataset_id}; it may have been removed.")
    return dataset


LOCK_ROWS: Final = (
    "SELECT _row_id FROM {table} WHERE _row_id = ANY(%s::bigint[]) ORDER BY _row_id FOR UPDATE"
)


def _lock_rows(cursor: Any, table: str, changes: ChangeSet) -> None:
    """Lock the rows the commit updates or deletes, in ``_row_id`` order, before writing them:
    an ``UPDATE … FROM (VALUES …)`` locks its rows in whatever order its join reads the table,
    so two commits sharing rows could otherwise deadlock."""
    if changes.updates or changes.deletes:
        cursor.execute(LOCK_ROWS.format(table=table), (db.id_array(sorted(changes.row_ids())),))


def _apply(
    cursor: Any, table: str, spec: DatasetSpec, quoted: dict[str, str], changes: ChangeSet
) -> set[int]:
    """Run the updates and deletes; the ids of rows whose version had moved."""
    types = {c.name: SQL_TYPE_NAMES[c.type] for c in spec.columns}
    order = {name: k for k, name in enumerate(spec.names)}
    moved: set[int] = set()

    def columns_of(u: RowUpdate) -> tuple[str, ...]:
        return tuple(sorted(u.after, key=order.__getitem__))

    cells = [u for u in changes.updates if u.after]  # an update of no cell has nothing to write
    for names, group in groupby(sorted(cells, key=columns_of), key=columns_of):
        updates = sorted(group, key=lambda u: u.row_id)
        sets = ", ".join(f"{quoted[n]} = v.{quoted[n]}" for n in names)
        matched = execute_values(
            cursor,
            f"UPDATE {table} AS t SET {sets}, _version = t._version + 1"
            f" FROM (VALUES %s) AS v(_row_id, _seen, {', '.join(quoted[n] for n in names)})"
            " WHERE t._row_id = v._row_id AND t._version = v._seen RETURNING t._row_id",
            [(u.row_id, u.version, *(u.after[n] for n in names)) for u in updates],
            template=f"(%s::bigint, %s::integer, {', '.join(_cast(types[n]) for n in names)})",
            page_size=len(updates),
            fetch=True,
        )
        moved |= {u.row_id for u in updates} - {r[0] for r in matched}
    if changes.deletes:
        deletes = sorted(changes.deletes, key=lambda d: d.row_id)
        matched = execute_values(
            cursor,
            f"DELETE FROM {table} AS t USING (VALUES %s) AS v(_row_id, _seen)"
            " WHERE t._row_id = v._row_id AND t._version = v._seen RETURNING t._row_id",
            [(d.row_id, d.version) for d in deletes],
            template="(%s::bigint, %s::integer)",
            page_size=len(deletes),
            fetch=True,
        )
        moved |= {d.row_id for d in deletes} - {r[0] for r in matched}
    return moved


def _cast(sql_type: str) -> str:
    """A value's placeholder cast to its column's type. ``CAST(… AS …)``, not ``…::type``: the
    driver writes a negative number bare, and ``-9223372036854775808::bigint`` casts before the
    minus (out of range), though the smallest bigint is a valid value."""
    return f"CAST(%s AS {sql_type})"


def _insert(
    cursor: Any,
    table: str,
    dataset_id: int,
    spec: DatasetSpec,
    quoted: dict[str, str],
    changes: ChangeSet,
) -> tuple[int, ...]:
    """Insert the new rows; their ``_row_id`` in the order of ``changes.inserts``. A row that
    brings back a deleted one keeps its old ``_row_id`` (``OVERRIDING SYSTEM VALUE``), at a
    ``_version`` above any it had before (``_BROUGHT_BACK_VERSIONS``): an edit or delete made
    against the row as someone read it before it was deleted is then a conflict, not a write
    to a row they never saw."""
    if not changes.inserts:
        return ()
    names = ", ".join(quoted[n] for n in spec.names)
    template = ", ".join(_cast(SQL_TYPE_NAMES[c.type]) for c in spec.columns)
    fresh = [i for i in changes.inserts if i.row_id is None]
    given = [i for i in changes.inserts if i.row_id is not None]
    given_ids = [i.row_id for i in given if i.row_id is not None]
    numbered: list[int] = []
    if fresh:
        returned = execute_values(
            cursor,
            f"INSERT INTO {table} ({names}) VALUES %s RETURNING _row_id",
            [tuple(i.values.get(n) for n in spec.names) for i in fresh],
            template=f"({template})",
            page_size=len(fresh),
            fetch=True,
        )
        numbered = [int(r[0]) for r in returned]
    if given:
        cursor.execute(_BROUGHT_BACK_VERSIONS, (dataset_id, db.id_array(sorted(given_ids))))
        versions = dict(cursor.fetchall())
        execute_values(
            cursor,
            f"INSERT INTO {table} (_row_id, _version, {names}) OVERRIDING SYSTEM VALUE VALUES %s",
            [
                (i.row_id, versions.get(i.row_id, 1), *(i.values.get(n) for n in spec.names))
                for i in given
            ],
            template=f"(%s::bigint, %s::integer, {template})",
            page_size=len(given),
        )
    ids = iter(numbered)
    return tuple(i.row_id if i.row_id is not None else next(ids) for i in changes.inserts)


_BROUGHT_BACK_VERSIONS: Final = """
SELECT row_id, count(*) + 1 FROM audit.row_change
 WHERE dataset_id = %s AND row_id = ANY(%s::bigint[])
 GROUP BY row_id
"""
"""The ``_version`` a row brought back under its own id starts at: one more than the changes
the audit log holds for it. A row starts at version 1, or at this number when brought back; each
update that raises it by one is logged, and so is each deletion, so the count passes every
version it ever had (only an UPDATE from outside the portal that changes no value but bumps
``_version`` goes unlogged)."""


def _unique_constraints(session: Session, spec: DatasetSpec, table_name: str) -> str:
    """The table's UNIQUE constraints, qualified and quoted, comma-separated ('' if none)."""
    if not any(c.unique for c in spec.columns):
        return ""
    preparer = session.get_bind().dialect.identifier_preparer
    table = dataset_table(spec, table_name)
    return ", ".join(
        f"{preparer.quote_schema(DATA_SCHEMA)}.{preparer.quote(str(con.name))}"
        for con in table.constraints
        if isinstance(con, UniqueConstraint)
    )


def _quoted_names(session: Session, spec: DatasetSpec) -> dict[str, str]:
    """Each physical column name quoted by SQLAlchemy's PostgreSQL identifier preparer."""
    preparer = session.get_bind().dialect.identifier_preparer
    return {name: preparer.quote(name) for name in spec.names}


# ---------------------------------------------------------------------------------------------
# Conflicts
# ---------------------------------------------------------------------------------------------

_LAST_CHANGES = text(
    """
    SELECT DISTINCT ON (r.row_id) r.row_id, r.op, r.before::text AS before,
           r.after::text AS after, c.id AS changeset_id, c.actor_display_name,
           c.committed_at, c.reason
      FROM audit.row_change r JOIN audit.changeset c ON c.id = r.changeset_id
     WHERE r.dataset_id = :dataset AND r.row_id = ANY(CAST(:ids AS bigint[]))
     ORDER BY r.row_id, r.changeset_id DESC, r.id DESC
    """
)


def _conflicts(
    session: Session, dataset: Dataset, spec: DatasetSpec, changes: ChangeSet, moved: set[int]
) -> list[Conflict]:
    now = current_rows(session=session, dataset=dataset, spec=spec, row_ids=moved)
    last = {
        r.row_id: r
        for r in session.execute(
            _LAST_CHANGES, {"dataset": dataset.id, "ids": db.id_array(sorted(moved))}
        )
    }
    mine: dict[int, RowUpdate | RowDelete] = {u.row_id: u for u in changes.updates}
    mine |= {d.row_id: d for d in changes.deletes}
    found: list[Conflict] = []
    for row_id in sorted(moved):
        change = last.get(row_id)
        current = now.get(row_id)
        image = change.before if change is not None and change.op == "delete" else None
        cells: dict[str, tuple[Value, Value]] = {}
        if change is not None and change.op == "update":
            before, after = typed_image(spec, change.before), typed_image(spec, change.after)
            changed = loads(change.after)  # an update's images hold just its changed cells
            cells = {n: (before[n], after[n]) for n in spec.names if n in changed}
        found.append(
            Conflict(
                row_id=row_id,
                mine=mine[row_id],
                now=current[1] if current else None,
                version=current[0] if current else None,
                op=change.op if change is not None else ("update" if current else "delete"),
                changeset_id=change.changeset_id if change is not None else None,
                by=change.actor_display_name if change is not None else "someone",
                at=change.committed_at if change is not None else None,
                reason=change.reason if change is not None else "",
                last_image=(typed_image(spec, image) if image else (current[1] if current else {})),
                their_change=cells,
            )
        )
    return found


def current_rows(
    *, session: Session, dataset: Dataset, spec: DatasetSpec, row_ids: set[int]
) -> dict[int, tuple[int, dict[str, Value]]]:
    """``{_row_id: (_version, values)}`` for the rows of ``row_ids`` that exist now."""
    table = dataset_table(spec, dataset.table_name)
    ids = cast(literal(db.id_array(sorted(row_ids)), Text), ARRAY(BigInteger))
    rows = session.execute(
        select(table.c["_row_id"], table.c["_version"], *(table.c[n] for n in spec.names)).where(
            table.c["_row_id"] == any_(ids)
        )
    ).all()
    return {
        int(r[0]): (int(r[1]), {n: diffs.plain(v) for n, v in zip(spec.names, r[2:], strict=True)})
        for r in rows
    }


def rows_now(*, session: Session, dataset_id: int, row_ids: set[int]) -> dict[int, Current]:
    """The rows of ``row_ids`` as they are now, for ``portal.merge.rebase``: a row deleted
    since comes with its values when it was deleted (from the audit log)."""
    dataset = get_dataset(session=session, dataset_id=dataset_id)
    spec = dataset_spec(dataset)
    now = current_rows(session=session, dataset=dataset, spec=spec, row_ids=row_ids)
    found = {row_id: Current(version, values) for row_id, (version, values) in now.items()}
    missing = sorted(row_ids - set(now))
    if missing:
        for r in session.execute(
            _LAST_CHANGES, {"dataset": dataset.id, "ids": db.id_array(missing)}
        ):
            image = r.before if r.op == "delete" else r.after
            found[r.row_id] = Current(None, typed_image(spec, image) if image else {})
        for row_id in missing:
            found.setdefault(row_id, Current(None, {}))
    return found


def typed_image(spec: DatasetSpec, image_json: str) -> dict[str, Value]:
    """A row image from the audit log (JSON text, numbers read exactly) as typed values; a text
    is kept exactly as stored (an empty text is not a missing value here)."""
    image = loads(image_json)
    typed: dict[str, Value] = {}
    for c in spec.columns:
        value = stored_value(c, image.get(c.name))
        typed[c.name] = None if isinstance(value, CellError) else value
    return typed


# ---------------------------------------------------------------------------------------------
# The backstop: what the table's constraints refused
# ---------------------------------------------------------------------------------------------

_FAILING_ROW = re.compile(r"Failing row contains \((\d+),")


class EditRefused(ValidationError):
    """The table's constraints refused a value; ``row`` and ``column`` say where."""

    def __init__(self, message: str, row: str, column: str) -> None:
        super().__init__(message)
        self.row = row
        self.column = column


def _too_long_for_index(
    exc: psycopg2.Error, spec: DatasetSpec, table_name: str, changes: ChangeSet
) -> EditRefused:
    """A value too long for its column's index: the column the server names (by its index), or
    else the one with the longest text of the commit, and the row holding that value."""
    message = exc.diag.message_primary or ""
    named = [c for c in spec.columns if f'"{index_name(table_name, c.name)}"' in message]
    cells = [(f"row {u.row_id}", n, v) for u in changes.updates for n, v in u.after.items()]
    cells += [("a new row", n, v) for i in changes.inserts for n, v in i.values.items()]
    texts = [
        (len(v.encode()), row, name)
        for row, name, v in cells
        if isinstance(v, str) and (not named or name == named[0].name)
    ]
    size, row, name = max(texts, default=(0, "a row", named[0].name if named else ""))
    column = next((c.label for c in spec.columns if c.name == name), "a column")
    return EditRefused(
        too_long_for_index_message(row, column, size, again="commit again"), row, column
    )


def _refused(
    exc: psycopg2.Error, spec: DatasetSpec, table_name: str, changes: ChangeSet
) -> PortalError:
    fault = db.translate(exc)  # the server's resources, grants or mode: not the values
    if fault is not None:
        return fault
    if too_long_for_an_index(exc):
        return _too_long_for_index(exc, spec, table_name, changes)
    if not isinstance(exc, psycopg2.IntegrityError | psycopg2.DataError):
        return PortalError(
            "The database refused the commit "
            f"({(exc.pgerror or str(exc)).strip().splitlines()[0]}); nothing was written. "
            "Try again; if it keeps happening, tell an admin."
        )
    diag = exc.diag
    labels = {c.name: c.label for c in spec.columns}
    guarded = guarded_columns(spec, table_name)
    name = guarded.get(diag.constraint_name or "") or (diag.column_name or "")
    column = labels.get(name, name or "a column")
    detail = diag.message_detail or ""
    # A row a revert brings back has its old _row_id: it is named by it, not as a new row.
    brought_back = {i.row_id: i.values for i in changes.inserts if i.row_id is not None}
    row = "a new row"
    failing = _FAILING_ROW.search(detail)
    if failing and int(failing.group(1)) in changes.row_ids() | brought_back.keys():
        row = f"row {failing.group(1)}"
    taken = taken_value(spec, name, detail)
    if taken:
        value, typed = taken
        holding = [(u.row_id, u.after) for u in changes.updates]
        holding += brought_back.items()
        row = next(
            (
                f"row {row_id}"
                for row_id, values in holding
                if name in values and diffs.same_value(values[name], typed)
            ),
            "a new row",
        )
        why = f"the value “{value}” is already used by another row and must be unique"
    elif (checked := check_rule(spec, diag.constraint_name or "")) is not None:
        why = f"its value breaks the rule “{checked[1]}” as PostgreSQL checks it"
    else:
        why = (diag.message_primary or str(exc)).strip()
    return EditRefused(
        f"The database refused {row}, column “{column}”: {why}. Nothing was written; "
        "correct the value and commit again.",
        row,
        column,
    )
