"""The three-way merge after a conflict, cell by cell (``portal.merge``): what re-applies by
itself, what waits for a decision, and that nothing of mine is dropped unasked."""

from __future__ import annotations

from portal.diffs import ChangeSet, RowDelete, RowUpdate
from portal.merge import Current, rebase, resolve

ANN = {"name": "ann", "qty": 1, "note": "first"}
BOB = {"name": "bob", "qty": 2, "note": None}


def test_a_row_they_changed_exactly_as_i_did_writes_nothing() -> None:
    mine = ChangeSet(updates=(RowUpdate(1, 1, {"qty": 1}, {"qty": 7}),))
    rebased = rebase(mine, {1: Current(2, {**ANN, "qty": 7})})
    assert rebased.auto.updates == ()
    assert not rebased.needs_decisions
    assert resolve(rebased, {}).empty


def test_cells_only_i_changed_are_reapplied_on_the_current_version() -> None:
    mine = ChangeSet(
        updates=(RowUpdate(1, 1, {"qty": 1, "note": "first"}, {"qty": 7, "note": "x"}),)
    )
    rebased = rebase(mine, {1: Current(2, {**ANN, "qty": 7})})  # they made my qty change
    assert rebased.auto.updates == (RowUpdate(1, 2, {"note": "first"}, {"note": "x"}),)
    assert rebased.reapplied_cells == 1


def test_a_delete_of_a_row_nobody_touched_is_kept_without_asking() -> None:
    mine = ChangeSet(
        updates=(RowUpdate(1, 1, {"qty": 1}, {"qty": 7}),),
        deletes=(RowDelete(2, 1, BOB),),
    )
    rebased = rebase(mine, {1: Current(2, {**ANN, "qty": 5}), 2: Current(1, BOB)})
    assert rebased.auto.deletes == (RowDelete(2, 1, BOB),)
    assert rebased.changed_deletes == ()
    assert resolve(rebased, {(1, "qty"): "mine"}).deletes == (RowDelete(2, 1, BOB),)


def test_a_delete_of_a_row_they_changed_waits_for_my_decision() -> None:
    mine = ChangeSet(deletes=(RowDelete(2, 1, BOB),))
    rebased = rebase(mine, {2: Current(2, {**BOB, "qty": 9})})
    assert [d.row_id for d in rebased.changed_deletes] == [2]
    assert resolve(rebased, {}).empty
    assert resolve(rebased, {}, delete_anyway={2}).deletes == (RowDelete(2, 2, {**BOB, "qty": 9}),)


def test_a_row_whose_every_cell_clashes_takes_the_cells_i_keep() -> None:
    mine = ChangeSet(updates=(RowUpdate(1, 1, {"note": "first"}, {"note": "mine"}),))
    rebased = rebase(mine, {1: Current(3, {**ANN, "note": "theirs"})})
    assert rebased.auto.updates == ()
    assert [(c.row_id, c.version, c.column) for c in rebased.clashes] == [(1, 3, "note")]
    assert resolve(rebased, {}).empty  # theirs, by default
    assert resolve(rebased, {(1, "note"): "mine"}).updates == (
        RowUpdate(1, 3, {"note": "theirs"}, {"note": "mine"}),
    )
