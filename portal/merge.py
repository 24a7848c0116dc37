"""Re-applying my edits after a conflict: a three-way merge per cell, pure.

After ``portal.writes.EditConflict`` the rows I changed have moved on. For each of them there are
three values per cell: the **original** I loaded (``RowUpdate.before``), **theirs** (the row
now) and **mine** (``RowUpdate.after``).

    rebase()    my ChangeSet + the rows as they are now -> what re-applies by itself, and what
                needs my decision
    resolve()   those decisions -> the ChangeSet to commit against the current versions

Rules, cell by cell: theirs == original -> mine is re-applied; theirs == mine -> nothing left to
do; otherwise a **clash**, shown side by side for me to choose. Cells only they changed stay
theirs. A row I edited that someone deleted is kept as a **lost row** (their last values with
mine on top) that I may re-create as a new row. A row I deleted that they changed since is a
**changed delete**: I confirm deleting it as it is now, or keep it; one nobody touched is deleted
as planned. My inserts never clash.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from portal.diffs import ChangeSet, RowDelete, RowInsert, RowUpdate, same_value
from portal.spec import Value

Choice = Literal["mine", "theirs"]


@dataclass(frozen=True)
class Current:
    """A row as it is now: ``version`` and ``values`` (every column); for a row deleted since,
    ``version`` is ``None`` and ``values`` are its values when it was deleted."""

    version: int | None
    values: Mapping[str, Value]


@dataclass(frozen=True)
class Clash:
    row_id: int
    version: int  # the row's, now
    column: str
    original: Value
    theirs: Value
    mine: Value


@dataclass(frozen=True)
class LostRow:
    """A row I edited that was deleted since: my edit on top of its last values."""

    row_id: int
    values: Mapping[str, Value]
    mine: RowUpdate


@dataclass(frozen=True)
class ChangedDelete:
    """A row I deleted that was changed since: its values now."""

    row_id: int
    version: int
    now: Mapping[str, Value]


@dataclass(frozen=True)
class Rebased:
    """What re-applies by itself (``auto``, against the current versions) and what waits for
    a decision (``clashes``, ``lost``, ``changed_deletes``)."""

    auto: ChangeSet
    clashes: tuple[Clash, ...]
    lost: tuple[LostRow, ...]
    changed_deletes: tuple[ChangedDelete, ...]
    reapplied_cells: int

    @property
    def needs_decisions(self) -> bool:
        return bool(self.clashes or self.lost or self.changed_deletes)


def rebase(changes: ChangeSet, current: Mapping[int, Current]) -> Rebased:
    """My ``changes`` against the rows as they are now (``current``: every row I updated or
    deleted; a row missing from it is taken as unchanged since I read it)."""
    updates: list[RowUpdate] = []
    deletes: list[RowDelete] = []
    clashes: list[Clash] = []
    lost: list[LostRow] = []
    changed_deletes: list[ChangedDelete] = []
    reapplied = 0
    for u in changes.updates:
        now = current.get(u.row_id)
        if now is None:
            updates.append(u)
            continue
        if now.version is None:
            lost.append(LostRow(u.row_id, {**now.values, **u.after}, u))
            continue
        before: dict[str, Value] = {}
        after: dict[str, Value] = {}
        for name, mine in u.after.items():
            theirs, original = now.values.get(name), u.before[name]
            if same_value(theirs, mine):
                continue
            if same_value(theirs, original):
                before[name], after[name] = theirs, mine
                reapplied += 1
            else:
                clashes.append(Clash(u.row_id, now.version, name, original, theirs, mine))
        # Rebased on the row's current version; a row left with no cell of mine (they made the
        # same change, or every cell clashes: resolve() adds those I keep) writes nothing.
        if after:
            updates.append(RowUpdate(u.row_id, now.version, before, after))
    for d in changes.deletes:
        now = current.get(d.row_id)
        if now is None or now.version == d.version:  # untouched since I read it
            deletes.append(d)
        elif now.version is not None:
            changed_deletes.append(ChangedDelete(d.row_id, now.version, now.values))
        # deleted by them too: nothing left to do
    return Rebased(
        auto=ChangeSet(
            updates=tuple(updates),
            inserts=changes.inserts,
            deletes=tuple(deletes),
        ),
        clashes=tuple(clashes),
        lost=tuple(lost),
        changed_deletes=tuple(changed_deletes),
        reapplied_cells=reapplied,
    )


def resolve(
    rebased: Rebased,
    choices: Mapping[tuple[int, str], Choice],
    *,
    recreate: Collection[int] = (),
    delete_anyway: Collection[int] = (),
) -> ChangeSet:
    """The ChangeSet to commit: ``auto``, plus each clash as ``choices[(row_id, column)]``
    says (default: theirs, which changes nothing), lost rows in ``recreate`` as new rows, and
    changed deletes in ``delete_anyway`` deleted as they are now."""
    by_row = {u.row_id: u for u in rebased.auto.updates}
    for clash in rebased.clashes:
        if choices.get((clash.row_id, clash.column), "theirs") != "mine":
            continue
        u = by_row.get(clash.row_id, RowUpdate(clash.row_id, clash.version, {}, {}))
        by_row[clash.row_id] = replace(
            u,
            before={**u.before, clash.column: clash.theirs},
            after={**u.after, clash.column: clash.mine},
        )
    updates = tuple(u for _, u in sorted(by_row.items()))
    inserts = rebased.auto.inserts + tuple(
        RowInsert(dict(row.values)) for row in rebased.lost if row.row_id in recreate
    )
    deletes = rebased.auto.deletes + tuple(
        RowDelete(d.row_id, d.version, dict(d.now))
        for d in rebased.changed_deletes
        if d.row_id in delete_anyway
    )
    return ChangeSet(
        updates=updates,
        inserts=inserts,
        deletes=tuple(sorted(deletes, key=lambda d: d.row_id)),
    )
