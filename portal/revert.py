"""Reverting a changeset: its inverse, checked against every change made since, committed as a
new changeset of kind ``revert`` through ``portal.writes.commit``.

    plan_revert()   what reverting a changeset would write, and what it must leave alone
    revert()        write that plan as a ``revert`` changeset (or refuse all of it)

Decisions a reader needs:

- The inverse, per row the changeset touched (its captured row changes in order, then the rows
  its bulk loads inserted): an updated row gets its changed cells back (only those cells); an
  inserted row is deleted; a deleted row is inserted again with every value it had. Reverting a
  revert is the same rule, so it restores what the revert undid.
- Never overwrite a later change. A cell (or a row) that any later sealed changeset touched —
  in the portal or outside it (``out_of_band``), read from the audit log — is **held**: shown
  with who changed it, when, why, its value now and the value the revert would restore, and not
  written. A held cell already holding the value to restore needs nothing and is not held. Every
  cell nobody touched since is reverted. ``revert`` refuses to write anything while there are
  held cells the person has not seen (``skip``): they choose to revert only the untouched part,
  or cancel.
- A deleted row comes back **under its own ``_row_id``** with exactly the values it had
  (``RowInsert.row_id``: ``writes.commit`` inserts it with ``OVERRIDING SYSTEM VALUE``; the
  table never hands out a row id twice, so it is free), and its history goes on where it
  stopped. A row already back (an earlier revert of the same changeset) is not brought back
  twice; one brought back and changed or deleted again since is held like any later change. A
  row re-created by hand since under a new id is not recognised: a unique column refuses the
  second copy (nothing is written), a table without one would get it twice.
- Uploads can be reverted like any changeset, up to ``MAX_REVERT_ROWS`` rows: the rows the
  upload inserted are deleted (each one held if it changed since), and the rows a replacing
  upload deleted come back. A larger changeset is refused with what to do instead. Creating a
  dataset and changing its columns cannot be reverted here.
- The dataset is locked ``FOR UPDATE`` first (commits to it wait, as for an upload), so the
  check against later changes and the write see the same rows; a write from outside the portal
  in between is still caught by ``_version`` (which every UPDATE bumps, since migration 0010)
  and nothing is written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Text, cast, func, select, text
from sqlalchemy.orm import Session

from audit.search import BulkLoadInfo, ChangesetSummary, changeset_detail, loads
from audit.trail import bulk_rows, columns_changed_since, removed_columns
from portal import db
from portal.actor import Actor
from portal.datasets import dataset_spec, get_dataset
from portal.diffs import ChangeSet, RowDelete, RowInsert, RowUpdate, same_value, show_change
from portal.errors import AuditError, PermissionDenied, ValidationError
from portal.models import Changeset, RowChange
from portal.spec import CellError, ColumnSpec, DatasetSpec, Value, stored_value
from portal.trail_views import when
from portal.wording import agreeing, counted, quoted_names
from portal.writes import CommitResult, EditConflict, EditRefused, commit, current_rows

MAX_REVERT_ROWS: Final = 50_000
"""Rows one revert may touch: the inverse is written as one commit of explicit rows."""
REVERTIBLE_KINDS: Final = ("edit", "revert", "upload", "out_of_band")
ROW: Final = None
"""``RevertConflict.column`` for a whole row."""

ConflictKey = tuple[int, str | None]


@dataclass(frozen=True)
class LaterChange:
    """A change made to a row after the changeset being reverted."""

    seq: int
    kind: str
    by: str
    at: datetime
    reason: str
    op: str
    columns: frozenset[str]  # the cells it touched (every column for an insert or a delete)


@dataclass(frozen=True)
class RevertConflict:
    """A cell (``column``) or a whole row (``column`` is ``None``) changed since the changeset:
    shown, not written.

    For a cell, ``now`` and ``restore`` are values. For a row, ``now`` is the row's values
    (``None``: deleted since) and ``restore`` the row the revert would bring back (``None``:
    the revert would delete the row).
    """

    row_id: int
    column: str | None
    now: Any
    restore: Any
    since: LaterChange | None
    """The latest later change to that cell or row (``None``: none recorded, yet it differs)."""

    @property
    def key(self) -> ConflictKey:
        return (self.row_id, self.column)


@dataclass(frozen=True)
class RevertPlan:
    """What reverting ``target`` would write (``changes``, against the rows' current versions)
    and what it leaves alone (``conflicts``); ``already`` counts cells and rows that already
    hold what the revert would restore."""

    target: ChangesetSummary
    dataset_name: str
    spec: DatasetSpec
    spec_version: int
    changes: ChangeSet
    conflicts: tuple[RevertConflict, ...]
    already: int = 0
    removed: tuple[str, ...] = ()  # labels of columns it changed that were removed since
    added: tuple[str, ...] = ()  # labels of columns added since: empty in rows brought back

    @property
    def keys(self) -> frozenset[ConflictKey]:
        return frozenset(c.key for c in self.conflicts)

    def summary(self) -> str:
        """``2 cells in 1 row restored, 1 row deleted, 1 row inserted again``, leaving out what
        it does not do (as ``ChangeSet.summary``); ``nothing`` for none."""
        c = self.changes
        parts = []
        if c.updates:
            parts.append(
                f"{counted(c.cells_updated, 'cell')} in {counted(len(c.updates), 'row')} restored"
            )
        if c.deletes:
            parts.append(f"{counted(len(c.deletes), 'row')} deleted")
        if c.inserts:
            parts.append(f"{counted(len(c.inserts), 'row')} inserted again")
        return ", ".join(parts) or "nothing"


@dataclass(frozen=True)
class RevertResult:
    changeset_id: int
    plan: RevertPlan
    commit: CommitResult


class RevertRefused(ValidationError):
    """Cells or rows changed since the changeset that the person has not agreed to leave alone;
    nothing was written. ``plan`` is the plan as it is now."""

    def __init__(self, message: str, plan: RevertPlan) -> None:
        super().__init__(message)
        self.plan = plan


# ---------------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------------


def plan_revert(*, session: Session, actor: Actor, changeset_id: int) -> RevertPlan:
    """What reverting the sealed changeset would write, and the cells and rows changed since
    it that the revert would leave alone. Writes nothing.

    Raises:
        PermissionDenied: the actor is a viewer.
        NotFound: no such sealed changeset, or its dataset was removed.
        ValidationError: a changeset that cannot be reverted (no dataset, creating a dataset or
            changing its columns, more than ``MAX_REVERT_ROWS`` rows, columns changed since).
        AuditError: a bulk load's stored rows no longer match their SHA-256.
    """
    _require_editor(actor)
    detail = changeset_detail(session=session, changeset_id=changeset_id)
    target = detail.summary
    if target.dataset_id is None:
        raise ValidationError(f"Changeset #{target.seq} belongs to no dataset; nothing to revert.")
    if target.kind not in REVERTIBLE_KINDS:
        raise ValidationError(
            f"Changeset #{target.seq} is a {target.kind} change (creating a dataset or changing "
            "its columns), which cannot be reverted here; only changes to rows can."
        )
    rows = sum(detail.row_ops.values()) + sum(b.row_count for b in detail.bulk_loads)
    if rows > MAX_REVERT_ROWS:
        raise ValidationError(
            f"Changeset #{target.seq} changed {rows:,} rows; a revert handles at most "
            f"{MAX_REVERT_ROWS:,}. {_instead(session, target)}"
        )
    # Alone on the dataset (FOR UPDATE, as an upload): the rows checked for later changes are
    # the rows written.
    dataset = get_dataset(session=session, dataset_id=target.dataset_id, for_update=True)
    spec = dataset_spec(dataset)
    columns = {c.name: c for c in spec.columns}
    since = columns_changed_since(session, dataset.id, target.seq)
    # A column removed since is no longer there to revert: its values left with it.
    removed: dict[str, None] = {}  # the removed columns it changed, in the order met
    net = _net_changes(session, target, detail.bulk_loads, columns, since["remove_column"], removed)

    restores: dict[int, tuple[dict[str, Value], dict[str, Value]]] = {}  # expected, restore
    removes: dict[int, dict[str, Value]] = {}  # rows it inserted: their values after it
    inserts: list[tuple[int, dict[str, Value]]] = []  # rows it deleted: their values before it
    for row_id, row in sorted(net.items()):
        if row.existed and row.after is not None:
            cells = {k: v for k, v in row.after.items() if not same_value(row.before[k], v)}
            if cells:
                restores[row_id] = (cells, {k: row.before[k] for k in cells})
        elif row.existed:
            missing = set(spec.names) - set(row.before)
            if missing - since["add_column"]:
                raise AuditError(
                    f"The audit log holds only part of row {row_id} as deleted by changeset "
                    f"#{target.seq}; it cannot be inserted again."
                )
            _require_added_optional(spec, missing, row_id, target.seq)
            inserts.append((row_id, {n: row.before.get(n) for n in spec.names}))
        elif row.after is not None:
            removes[row_id] = row.after

    watched = set(restores) | set(removes) | {row_id for row_id, _ in inserts}
    later = _later_changes(session, dataset.id, target.seq, watched)
    now = current_rows(session=session, dataset=dataset, spec=spec, row_ids=watched)

    updates: list[RowUpdate] = []
    deletes: list[RowDelete] = []
    conflicts: list[RevertConflict] = []
    already = 0
    # A row it deleted comes back under its own _row_id, unless it is back already (an earlier
    # revert of it brought it back) or was brought back and changed or deleted again since.
    back: list[RowInsert] = []
    for row_id, values in inserts:
        changes = later.get(row_id, [])
        current = now.get(row_id)
        if current is None and not changes:
            back.append(RowInsert(values, row_id))
        elif current is not None and all(same_value(current[1][n], values[n]) for n in values):
            already += 1
        else:
            now_values = current[1] if current is not None else None
            conflicts.append(
                RevertConflict(row_id, ROW, now_values, values, _latest(changes, None))
            )
    for row_id, (expected, restore) in restores.items():
        changes = later.get(row_id, [])
        current = now.get(row_id)
        if current is None:
            conflicts.append(RevertConflict(row_id, ROW, None, restore, _latest(changes, None)))
            continue
        version, values = current
        before: dict[str, Value] = {}
        after: dict[str, Value] = {}
        for name, value in restore.items():
            if same_value(values[name], value):
                already += 1
            elif _touched(changes, name) or not same_value(values[name], expected[name]):
                conflicts.append(
                    RevertConflict(row_id, name, values[name], value, _latest(changes, name))
                )
            else:
                before[name], after[name] = values[name], value
        if after:
            updates.append(RowUpdate(row_id, version, before, after))
    for row_id, expected in removes.items():
        changes = later.get(row_id, [])
        current = now.get(row_id)
        if current is None:
            already += 1  # deleted since: nothing left to delete
            continue
        version, values = current
        if changes or any(not same_value(values[n], v) for n, v in expected.items()):
            conflicts.append(RevertConflict(row_id, ROW, values, None, _latest(changes, None)))
        else:
            deletes.append(RowDelete(row_id, version, values))
    return RevertPlan(
        target=target,
        dataset_name=dataset.name,
        spec=spec,
        spec_version=dataset.spec_version,
        changes=ChangeSet(
            updates=tuple(updates),
            inserts=tuple(back),
            deletes=tuple(deletes),
        ),
        conflicts=tuple(conflicts),
        already=already,
        removed=tuple(removed_columns(session, dataset.id)[n]["label"] for n in removed),
        added=tuple(c.label for c in spec.columns if c.name in since["add_column"]),
    )


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def revert(
    *,
    session: Session,
    actor: Actor,
    changeset_id: int,
    reason: str,
    skip: Collection[ConflictKey] = (),
) -> RevertResult:
    """Revert the sealed changeset as one new changeset of kind ``revert``, in the session's
    transaction: every cell and row nobody changed since, leaving alone the conflicts listed in
    ``skip`` (the ones the person saw and agreed to leave). Refuses all of it if any other cell
    or row changed since.

    Raises:
        PermissionDenied: the actor is a viewer.
        NotFound, ValidationError, AuditError: as ``plan_revert``; also a missing reason, nothing
            left to revert, or a value the table's constraints refuse now.
        RevertRefused: conflicts not in ``skip``, or nothing revertible without overwriting a
            later change; nothing is written.
    """
    _require_editor(actor)
    if not reason.strip():
        raise ValidationError("Say why you are reverting this changeset; a reason is required.")
    plan = plan_revert(session=session, actor=actor, changeset_id=changeset_id)
    seq = plan.target.seq
    unseen = plan.keys - set(skip)
    if unseen:
        raise RevertRefused(
            f"{counted(len(unseen), 'cell or row', 'cells or rows')} of changeset #{seq} changed "
            "since it was made and a revert would overwrite them; nothing was written. Review "
            "the changes made since, then revert only the untouched part or cancel.",
            plan,
        )
    if plan.changes.empty:
        if plan.conflicts:
            done = (
                f"{counted(plan.already, 'cell or row', 'cells or rows')} already "
                f"{agreeing(plan.already, 'holds the value', 'hold the values')} from before "
                "it (it may have been reverted in part already) and the rest was changed "
                "again since"
                if plan.already
                else "everything it changed has been changed again since"
            )
            raise RevertRefused(
                f"Nothing of changeset #{seq} is left to revert: {done}, so nothing can be "
                "reverted without overwriting those changes; nothing was written.",
                plan,
            )
        if plan.removed:
            raise ValidationError(
                f"Nothing to revert: changeset #{seq} changed {quoted_names(plan.removed)}, "
                "which an admin removed from the dataset since (the values left with the "
                "column), and nothing else that does not already hold its value from before it."
            )
        raise ValidationError(
            f"Nothing to revert: the rows changeset #{seq} changed already hold the values "
            "from before it (it may have been reverted already)."
        )
    skipped = sorted(plan.keys, key=lambda k: (k[0], k[1] or ""))
    try:
        result = commit(
            session=session,
            actor=actor,
            dataset_id=plan.target.dataset_id or 0,
            spec_version=plan.spec_version,
            changes=plan.changes,
            reason=reason,
            kind="revert",
            detail={
                "reverts": {"changeset_id": plan.target.id, "seq": seq},
                "skipped_count": len(skipped),
                "skipped": [list(k) for k in skipped],
            },
        )
    except EditRefused as exc:
        raise ValidationError(
            f"The revert of changeset #{seq} cannot be written: the database refused "
            f"{exc.row}, column “{exc.column}” — a value it would restore is now used by "
            "another row or no longer allowed. Nothing was written; change that other row "
            "first if the old value should come back."
        ) from None
    except EditConflict:
        raise ValidationError(
            f"Rows of changeset #{seq} were changed (outside the portal) while the revert was "
            "being written; nothing was written. Open the changeset again to see what changed."
        ) from None
    return RevertResult(result.changeset_id, plan, result)


def conflict_records(plan: RevertPlan) -> list[dict[str, Any]]:
    """The plan's conflicts as lines to show side by side: row, column (label), the value now,
    the value the revert would restore, and who changed it since, when and why."""
    labels = {c.name: c.label for c in plan.spec.columns}
    records: list[dict[str, Any]] = []
    for c in plan.conflicts:
        if c.column is None:
            column = "(whole row)"
            now = "(deleted since)" if c.now is None else _row_text(c.now, labels)
            restore = "(delete the row)" if c.restore is None else _row_text(c.restore, labels)
        else:
            column = labels.get(c.column, c.column)
            now, restore = show_change(c.now), show_change(c.restore)
        s = c.since
        records.append(
            {
                "Row id": c.row_id,
                "Column": column,
                "Now": now,
                "Revert would restore": restore,
                "Changed by": s.by if s else "unknown (not in the audit log)",
                "When": when(s.at) if s else "",
                "In": f"#{s.seq} ({s.kind})" if s else "",
                "Why": s.reason if s else "",
            }
        )
    return records


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class _Net:
    """One row's net change in the changeset: did it exist before, its values before (the
    cells it touched; every cell for a deleted row) and after (``None``: gone after)."""

    existed: bool
    before: dict[str, Value] = field(default_factory=dict)
    after: dict[str, Value] | None = None


def _instead(session: Session, target: ChangesetSummary) -> str:
    """What to do instead of reverting ``target``, a changeset too large to revert: upload the
    table as of the dataset's changeset before it, named, with Replace."""
    before = session.scalar(
        select(func.max(Changeset.seq)).where(
            Changeset.dataset_id == target.dataset_id, Changeset.seq < target.seq
        )
    )
    if before is None:
        return (
            f"#{target.seq} is the first change to this dataset, so there is no earlier table "
            "to go back to; nothing was written."
        )
    return (
        f"To go back to the table as it was, download the table as of #{before}, the changeset "
        f"before it (open #{before} in this dataset's history and show the table as it stood "
        "right after it), and upload that file with Replace, which undoes every later change "
        "too."
    )


def _require_added_optional(spec: DatasetSpec, added: set[str], row_id: int, seq: int) -> None:
    """A row deleted before columns were added comes back with them empty, if they may be.

    Raises:
        ValidationError: one of them is required.
    """
    required = [c.label for c in spec.columns if c.name in added and c.required]
    if required:
        raise ValidationError(
            f"Row {row_id} was deleted by changeset #{seq}, before {quoted_names(required)} "
            f"{agreeing(len(required), 'was', 'were')} added to the dataset as required, so "
            "it cannot come back without a value there. Nothing was reverted: add the row "
            "again on the Edit page, or have an admin make the column optional first."
        )


def _require_editor(actor: Actor) -> None:
    if not actor.can("editor"):
        raise PermissionDenied(
            "Your role can view history but not revert changes; nothing was written."
        )


def _net_changes(
    session: Session,
    target: ChangesetSummary,
    bulk_loads: Iterable[BulkLoadInfo],
    columns: Mapping[str, ColumnSpec],
    removed: Collection[str],
    met: dict[str, None],
) -> dict[int, _Net]:
    """Every row the changeset touched, folded in capture order into its net change, without
    the columns ``removed`` since (those it changed are added to ``met``)."""
    net: dict[int, _Net] = {}
    captured = session.execute(
        select(
            RowChange.row_id,
            RowChange.op,
            cast(RowChange.before, Text),
            cast(RowChange.after, Text),
        )
        # Only this dataset's: an out-of-band changeset sealed before migration 0010 may hold
        # another dataset's rows too, under row ids of their own table.
        .where(RowChange.changeset_id == target.id, RowChange.dataset_id == target.dataset_id)
        .order_by(RowChange.id)
    )
    for row_id, op, before_json, after_json in captured:
        before = _typed(columns, _without(loads(before_json), removed, met), target.seq)
        after = _typed(columns, _without(loads(after_json), removed, met), target.seq)
        row = net.setdefault(row_id, _Net(existed=op != "insert"))
        for name, value in before.items():
            row.before.setdefault(name, value)
        if op == "insert":
            row.after = after
        elif op == "update":
            row.after = {**(row.after or {}), **after}
        else:
            row.after = None
    for bulk in bulk_loads:
        for row_id, image in bulk_rows(session=session, bulk_load_id=bulk.id, exact=True).items():
            after = _typed(columns, _without(image, removed, met), target.seq)
            net[row_id] = _Net(existed=False, after=after)
    return net


def _without(
    image: Mapping[str, Any] | None, removed: Collection[str], met: dict[str, None]
) -> dict[str, Any]:
    kept = {}
    for name, value in (image or {}).items():
        if name in removed:
            met[name] = None
        else:
            kept[name] = value
    return kept


def _typed(
    columns: Mapping[str, ColumnSpec], image: Mapping[str, Any], seq: int
) -> dict[str, Value]:
    """A row image from the audit log as typed values, exactly: text as stored (an empty
    string stays one), other types read as the column's type.

    Raises:
        ValidationError: a column that no longer exists, or a value it can no longer hold.
    """
    typed: dict[str, Value] = {}
    for name, raw in image.items():
        column = columns.get(name)
        if column is None:
            raise ValidationError(
                f"Changeset #{seq} changed column {name!r}, which the dataset no longer has; "
                "it cannot be reverted."
            )
        value = stored_value(column, raw)
        if isinstance(value, CellError):
            raise ValidationError(
                f"Changeset #{seq} holds {raw!r} in column “{column.label}”, which is no "
                f"longer a {column.type} value; it cannot be reverted."
            )
        typed[name] = value
    return typed


_LATER = text(
    """
    SELECT r.row_id, r.op, r.after::text AS after, r.before::text AS before, c.seq, c.kind,
           c.actor_display_name, c.committed_at, c.reason
      FROM audit.row_change r JOIN audit.changeset c ON c.id = r.changeset_id
     WHERE r.dataset_id = :dataset AND r.row_id = ANY(CAST(:ids AS bigint[])) AND c.seq > :seq
     ORDER BY c.seq, r.id
    """
)


def _later_changes(
    session: Session, dataset_id: int, seq: int, row_ids: set[int]
) -> dict[int, list[LaterChange]]:
    """Every sealed change after changeset ``seq`` to the rows of ``row_ids``, oldest first.
    (Bulk loads only insert rows with new ids, so captured row changes are all there is.)"""
    found: dict[int, list[LaterChange]] = {}
    if not row_ids:
        return found
    for r in session.execute(
        _LATER, {"dataset": dataset_id, "ids": db.id_array(sorted(row_ids)), "seq": seq}
    ):
        image = loads(r.after if r.op == "update" else None) or {}
        touched = (
            frozenset(image) if r.op == "update" else frozenset(loads(r.before or r.after) or {})
        )
        found.setdefault(r.row_id, []).append(
            LaterChange(
                r.seq, r.kind, r.actor_display_name, r.committed_at, r.reason, r.op, touched
            )
        )
    return found


def _touched(changes: list[LaterChange], column: str) -> bool:
    return any(c.op != "update" or column in c.columns for c in changes)


def _latest(changes: list[LaterChange], column: str | None) -> LaterChange | None:
    """The latest change touching ``column`` (any change, for a whole row)."""
    for c in reversed(changes):
        if column is None or c.op != "update" or column in c.columns:
            return c
    return None


def _row_text(values: Mapping[str, Value], labels: Mapping[str, str]) -> str:
    return ", ".join(f"{labels.get(k, k)}: {show_change(v)}" for k, v in values.items())
