"""Restoring one row to an earlier version from its history: the values it had right after a
change, written as a new changeset of kind ``revert`` through ``portal.writes.commit``.

    plan_restore()   what restoring a row to one of its versions would write; writes nothing
    restore_row()    write that, if the row is still as the plan saw it

Decisions a reader needs:

- The version is the row's whole image right after one of its changes, as Row history shows it
  (``audit.trail.row_versions``: the log alone), numbered from 1, oldest first. A version in
  which the row was deleted cannot be chosen: deleting a row is done on the Edit page.
- What is written is the difference from the row now, in the columns the dataset has now. A row
  that exists gets only the cells that differ (against its ``_version`` now, so a change in
  between is caught); a row deleted since comes back under its own ``_row_id`` with the
  version's values, as a revert brings a deleted row back. A column removed since is skipped
  (its values left with it); a column added since keeps its value (a row brought back gets it
  empty, or is refused if the column is required).
- The person sees that difference before writing it. ``restore_row`` takes the ``_version`` the
  row had then (``None``: deleted), and refuses, writing nothing, if the row moved since: what
  would be written is no longer what was shown. The dataset is locked ``FOR UPDATE`` first, as
  for a revert.
- A reason is required, as for every revert; the changeset's detail names the row, the version
  and the changeset that made it (``{"restores": {"row_id", "version", "seq"}}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.orm import Session

from audit.trail import removed_columns, row_versions
from portal.actor import Actor
from portal.datasets import dataset_spec, get_dataset
from portal.diffs import ChangeSet, RowInsert, RowUpdate, same_value, show_value
from portal.errors import NotFound, PermissionDenied, ValidationError
from portal.spec import CellError, ColumnSpec, DatasetSpec, Value, stored_value
from portal.wording import agreeing, counted, quoted_names
from portal.writes import CommitResult, EditConflict, EditRefused, commit, current_rows

DELETED: Final = None
"""``RestorePlan.seen`` of a row deleted when the plan was made."""


@dataclass(frozen=True)
class RestorePlan:
    """Restoring row ``row_id`` to its ``version`` (made by changeset ``seq``): ``changes``
    against the row as it is now (its ``_version`` ``seen``, ``None``: deleted)."""

    dataset_id: int
    dataset_name: str
    row_id: int
    version: int
    seq: int
    spec: DatasetSpec
    spec_version: int
    seen: int | None
    changes: ChangeSet
    removed: tuple[str, ...] = ()  # labels of columns the version had that were removed since
    added: tuple[str, ...] = ()  # labels of columns added since: kept, or empty if brought back
    latest: str = ""  # the row's newest change: "#12 by Ann A"

    @property
    def brings_back(self) -> bool:
        return bool(self.changes.inserts)

    def summary(self) -> str:
        """``2 cells restored`` or ``the row brought back``; ``nothing`` when the row already
        holds the version's values."""
        if self.changes.inserts:
            return "the row brought back"
        if self.changes.updates:
            return f"{counted(self.changes.cells_updated, 'cell')} restored"
        return "nothing"


@dataclass(frozen=True)
class RestoreResult:
    changeset_id: int
    plan: RestorePlan
    commit: CommitResult


def plan_restore(
    *, session: Session, actor: Actor, dataset_id: int, row_id: int, version: int
) -> RestorePlan:
    """What restoring the row to ``version`` (1 = its first) would write. Writes nothing.

    Raises:
        PermissionDenied: the actor is a viewer.
        NotFound: no such dataset, or the row never existed in it.
        ValidationError: no such version, a version in which the row was deleted, a value the
            column can no longer hold, or a row to bring back without a value a column added
            since requires.
    """
    _require_editor(actor)
    dataset = get_dataset(session=session, dataset_id=dataset_id, for_update=True)
    spec = dataset_spec(dataset)
    versions = row_versions(session=session, dataset_id=dataset.id, row_id=row_id)
    if not versions:
        raise NotFound(f"Row {row_id} has never existed in dataset “{dataset.name}”.")
    if not 1 <= version <= len(versions):
        raise ValidationError(
            f"Row {row_id} has {counted(len(versions), 'version')}; there is no version "
            f"{version}. Choose one from its history."
        )
    chosen = versions[version - 1]
    if chosen.row is None:
        raise ValidationError(
            f"In version {version} row {row_id} was deleted (changeset #{chosen.change.seq}); "
            "choose a version in which it existed. To delete the row, use the Edit page."
        )
    columns = {c.name: c for c in spec.columns}
    target = {
        name: _typed(columns[name], raw, version)
        for name, raw in chosen.row.items()
        if name in columns
    }
    gone = removed_columns(session, dataset.id)
    removed = tuple(gone[n]["label"] if n in gone else n for n in chosen.row if n not in columns)
    added = [c for c in spec.columns if c.name not in chosen.row]
    now = current_rows(session=session, dataset=dataset, spec=spec, row_ids={row_id}).get(row_id)
    if now is None:
        required = [c.label for c in added if c.required]
        if required:
            raise ValidationError(
                f"Row {row_id} cannot come back as it was in version {version}: "
                f"{quoted_names(required)} {agreeing(len(required), 'was', 'were')} added to "
                "the dataset since as required, and the version has no value there. Nothing "
                "was written: add the row again on the Edit page, or have an admin make the "
                "column optional first."
            )
        values = {n: target.get(n) for n in spec.names}
        changes = ChangeSet(inserts=(RowInsert(values, row_id),))
        seen = DELETED
    else:
        seen, current = now
        before = {  # in the dataset's column order, as the review tables show cells
            n: current[n]
            for n in spec.names
            if n in target and not same_value(current[n], target[n])
        }
        after = {n: target[n] for n in before}
        changes = ChangeSet(updates=(RowUpdate(row_id, seen, before, after),) if after else ())
    return RestorePlan(
        dataset_id=dataset.id,
        dataset_name=dataset.name,
        row_id=row_id,
        version=version,
        seq=chosen.change.seq,
        spec=spec,
        spec_version=dataset.spec_version,
        seen=seen,
        changes=changes,
        removed=removed,
        added=tuple(c.label for c in added),
        latest=f"#{versions[-1].change.seq} by {versions[-1].change.actor_display_name}",
    )


def restore_row(
    *,
    session: Session,
    actor: Actor,
    dataset_id: int,
    row_id: int,
    version: int,
    seen: int | None,
    reason: str,
) -> RestoreResult:
    """Restore the row to ``version`` as one ``revert`` changeset, in the session's
    transaction, if the row still has the ``_version`` ``seen`` (``None``: still deleted) it
    had when the person looked at what would change.

    Raises:
        PermissionDenied, NotFound, ValidationError: as ``plan_restore``; also a missing
            reason, a row that changed since it was looked at, a row already holding the
            version's values, or a value the table's constraints refuse now. Nothing is
            written.
    """
    _require_editor(actor)
    if not reason.strip():
        raise ValidationError("Say why you are restoring this row; a reason is required.")
    plan = plan_restore(
        session=session, actor=actor, dataset_id=dataset_id, row_id=row_id, version=version
    )
    if plan.seen != seen:
        raise ValidationError(
            f"Row {row_id} was changed since you looked at what restoring it would change "
            f"(changeset {plan.latest}); nothing was written. Look at what restoring it would "
            "change now, then restore it if you still want to."
        )
    if plan.changes.empty:
        raise ValidationError(
            f"Row {row_id} already holds the values of version {version}; nothing to restore."
        )
    try:
        result = commit(
            session=session,
            actor=actor,
            dataset_id=dataset_id,
            spec_version=plan.spec_version,
            changes=plan.changes,
            reason=reason,
            kind="revert",
            detail={"restores": {"row_id": row_id, "version": version, "seq": plan.seq}},
        )
    except EditRefused as exc:
        raise ValidationError(
            f"Row {row_id} cannot be restored to version {version}: the database refused "
            f"column “{exc.column}”{_value_of(plan, exc.column)} — it is now used by another "
            "row or no longer allowed by the column's rules. Nothing was written; change that "
            "other row first, or edit this one on the Edit page."
        ) from None
    except EditConflict:  # a write from outside the portal between the plan and the write
        raise ValidationError(
            f"Row {row_id} was changed (outside the portal) while it was being restored; "
            "nothing was written. Look at its history again."
        ) from None
    return RestoreResult(result.changeset_id, plan, result)


def _value_of(plan: RestorePlan, label: str) -> str:
    """`` (“A2”)``: the value the plan would write to the column labelled ``label``, if any."""
    names = {c.label: c.name for c in plan.spec.columns}
    for row in (
        *(u.after for u in plan.changes.updates),
        *(i.values for i in plan.changes.inserts),
    ):
        if names.get(label) in row and row[names[label]] is not None:
            return f" (“{show_value(row[names[label]])}”)"
    return ""


def _require_editor(actor: Actor) -> None:
    if not actor.can("editor"):
        raise PermissionDenied(
            "Your role can view history but not restore rows; nothing was written."
        )


def _typed(column: ColumnSpec, raw: Any, version: int) -> Value:
    """A value of the version's image as the column's type now, exactly.

    Raises:
        ValidationError: a value the column can no longer hold.
    """
    value = stored_value(column, raw)
    if isinstance(value, CellError):
        raise ValidationError(
            f"Version {version} holds {raw!r} in column “{column.label}”, which is no longer "
            f"a {column.type} value; it cannot be restored."
        )
    return value
