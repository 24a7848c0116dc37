"""Restoring a row to an earlier version from its history: exactly the version's values come
back (only the cells that differ are written; a deleted row comes back under its own id), as one
audited ``revert`` changeset; a row changed since it was looked at, a version in which it was
deleted, a missing reason or a viewer writes nothing; columns removed or added since are handled;
the log still rebuilds every state."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.reconcile import check_datasets
from audit.trail import row_versions
from portal import restore, trail_views, writes
from portal.actor import Actor
from portal.db import session_scope
from portal.diffs import ChangeSet, RowDelete, RowUpdate
from portal.errors import NotFound, PermissionDenied, ValidationError
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import (
    add_column,
    data_table,
    edit_row,
    make_user,
    remove_column,
    upload_dataset,
)

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True, unique=True),
        ColumnSpec("Qty", "qty", "integer", min=0),
        ColumnSpec("Price", "price", "decimal", scale=2),
    )
)
CSV = b"Name,Qty,Price\nann,1,1.50\nbob,2,2.00\n"


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="eddie", display_name="Eddie E.")
    return Actor(name, "Eddie E.", "editor")


@pytest.fixture
def dataset(editor: Actor) -> int:
    return upload_dataset(editor, CSV, spec=SPEC, name="Stock")


def rows(db: DatabaseHandle, dataset_id: int) -> dict[int, tuple[Any, ...]]:
    with db.app.connect() as conn:
        found = conn.execute(
            text(f"SELECT _row_id, name, qty, price FROM {data_table(db.app, dataset_id)}")
        )
        return {r[0]: tuple(r[1:]) for r in found}


edit = edit_row


def delete(actor: Actor, dataset_id: int, row_id: int) -> None:
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id)
        writes.commit(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=ChangeSet(deletes=(RowDelete(row_id, read.versions[row_id], {}),)),
            reason="gone",
        )


def plan(actor: Actor, dataset_id: int, row_id: int, version: int) -> restore.RestorePlan:
    with session_scope() as s:
        return restore.plan_restore(
            session=s, actor=actor, dataset_id=dataset_id, row_id=row_id, version=version
        )


def do_restore(
    actor: Actor, dataset_id: int, row_id: int, version: int, **given: Any
) -> restore.RestoreResult:
    seen = given.pop("seen", plan(actor, dataset_id, row_id, version).seen)
    with session_scope() as s:
        return restore.restore_row(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            row_id=row_id,
            version=version,
            seen=seen,
            reason=given.pop("reason", "it was right before"),
        )


def changesets(db: DatabaseHandle) -> int:
    with db.app.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM audit.changeset")) or 0)


def no_drift(dataset_id: int) -> None:
    with session_scope() as s:
        [drift] = check_datasets(session=s, dataset_ids=[dataset_id])
        assert drift.ok, drift
        assert verify(session=s).ok


def test_a_row_is_restored_to_an_earlier_version_writing_only_the_cells_that_differ(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edit(editor, dataset, 1, {"qty": 5, "price": Decimal("9.99")})
    edit(editor, dataset, 1, {"name": "anne"})
    planned = plan(editor, dataset, 1, 2)  # after the first edit: qty 5, price 9.99, name ann
    assert planned.changes.updates == (RowUpdate(1, 3, {"name": "anne"}, {"name": "ann"}),)
    assert planned.summary() == "1 cell restored"
    done = do_restore(editor, dataset, 1, 2)
    assert rows(fresh_db, dataset)[1] == ("ann", 5, Decimal("9.99"))
    assert rows(fresh_db, dataset)[2] == ("bob", 2, Decimal("2.00"))  # untouched

    with fresh_db.app.connect() as conn:
        kind, reason, detail = conn.execute(
            text("SELECT kind, reason, detail FROM audit.changeset WHERE id = :i"),
            {"i": done.changeset_id},
        ).one()
        captured = conn.execute(
            text("SELECT row_id, op, before, after FROM audit.row_change WHERE changeset_id = :i"),
            {"i": done.changeset_id},
        ).all()
    assert (kind, reason) == ("revert", "it was right before")
    assert detail == {"restores": {"row_id": 1, "version": 2, "seq": planned.seq}}
    assert captured == [(1, "update", {"name": "anne"}, {"name": "ann"})]
    with session_scope() as s:  # its history goes on: the restore is the newest version
        versions = row_versions(session=s, dataset_id=dataset, row_id=1)
        assert versions[-1].row == versions[1].row
        [listed, *_] = trail_views.dataset_history(
            session=s, actor=editor, dataset_id=dataset
        ).items
    assert trail_views.changeset_what(listed) == f"row 1 back to version 2, made by #{planned.seq}"
    no_drift(dataset)


def test_restoring_the_first_version_of_a_bulk_loaded_row_brings_back_every_cell(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edit(editor, dataset, 2, {"qty": 7, "price": None})
    do_restore(editor, dataset, 2, 1)
    assert rows(fresh_db, dataset)[2] == ("bob", 2, Decimal("2.00"))
    no_drift(dataset)


def test_a_deleted_row_comes_back_under_its_own_id(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edit(editor, dataset, 1, {"qty": 3})
    delete(editor, dataset, 1)
    planned = plan(editor, dataset, 1, 2)
    assert planned.seen is restore.DELETED
    assert planned.summary() == "the row brought back"
    do_restore(editor, dataset, 1, 2)
    assert rows(fresh_db, dataset)[1] == ("ann", 3, Decimal("1.50"))
    with session_scope() as s:
        assert [v.change.op for v in row_versions(session=s, dataset_id=dataset, row_id=1)] == [
            "insert",
            "update",
            "delete",
            "insert",
        ]
    edit(editor, dataset, 1, {"qty": 4})  # an ordinary row again: its version moved past
    no_drift(dataset)


def test_a_row_changed_since_it_was_looked_at_is_not_restored(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edit(editor, dataset, 1, {"qty": 3})
    seen = plan(editor, dataset, 1, 1).seen
    edit(editor, dataset, 1, {"price": Decimal("4.00")})  # someone else, meanwhile
    before, count = rows(fresh_db, dataset), changesets(fresh_db)
    with pytest.raises(ValidationError, match="was changed since you looked"):
        do_restore(editor, dataset, 1, 1, seen=seen)
    delete(editor, dataset, 1)  # deleted meanwhile: also not what was shown
    with pytest.raises(ValidationError, match="was changed since you looked"):
        do_restore(editor, dataset, 1, 1, seen=seen)
    assert changesets(fresh_db) == count + 1  # only the delete
    assert rows(fresh_db, dataset) == {k: v for k, v in before.items() if k != 1}


@pytest.mark.parametrize(
    ("version", "reason", "message"),
    [
        (3, "why", "there is no version 3"),
        (0, "why", "there is no version 0"),
        (1, "  ", "a reason is required"),
        (2, "why", "already holds the values of version 2"),
    ],
)
def test_refusals_write_nothing(
    fresh_db: DatabaseHandle,
    editor: Actor,
    dataset: int,
    version: int,
    reason: str,
    message: str,
) -> None:
    edit(editor, dataset, 1, {"qty": 3})
    before, count = rows(fresh_db, dataset), changesets(fresh_db)
    with pytest.raises(ValidationError, match=message):
        do_restore(editor, dataset, 1, version, seen=2, reason=reason)
    assert (rows(fresh_db, dataset), changesets(fresh_db)) == (before, count)


def test_a_version_in_which_the_row_was_deleted_or_a_row_never_there_is_refused(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    delete(editor, dataset, 2)
    with pytest.raises(ValidationError, match="In version 2 row 2 was deleted"):
        plan(editor, dataset, 2, 2)
    with pytest.raises(NotFound, match="Row 99 has never existed"):
        plan(editor, dataset, 99, 1)


def test_a_viewer_cannot_restore_even_with_a_forged_call(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edit(editor, dataset, 1, {"qty": 3})
    viewer = Actor("vera", "Vera", "viewer")
    count = changesets(fresh_db)
    with pytest.raises(PermissionDenied):
        plan(viewer, dataset, 1, 1)
    with pytest.raises(PermissionDenied):
        do_restore(viewer, dataset, 1, 1, seen=2)
    assert changesets(fresh_db) == count


def test_a_value_another_row_holds_now_is_refused_by_the_table(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edit(editor, dataset, 1, {"name": "cy"})
    edit(editor, dataset, 2, {"name": "ann"})  # "ann" is bob's name now: Name is unique
    count = changesets(fresh_db)
    with pytest.raises(
        ValidationError, match=r"column “Name” \(“ann”\) — it is now used by another row"
    ):
        do_restore(editor, dataset, 1, 1)
    assert changesets(fresh_db) == count


def test_columns_removed_since_are_skipped_and_added_ones_kept_or_left_empty(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
    admin = Actor(boss, "Boss", "admin")
    edit(admin, dataset, 1, {"qty": 3, "price": Decimal("5.00")})
    remove_column(admin, dataset, "price", expected_version=1)
    add_column(admin, dataset, "Note", fill="n", expected_version=2)
    edit(admin, dataset, 1, {"qty": 8, "note": "changed"})
    planned = plan(admin, dataset, 1, 1)  # the upload's: qty 1, price 1.50, no note
    assert (planned.removed, planned.added) == (("Price",), ("Note",))
    assert planned.changes.updates == (RowUpdate(1, 3, {"qty": 8}, {"qty": 1}),)
    do_restore(admin, dataset, 1, 1)
    with fresh_db.app.connect() as conn:
        assert conn.execute(
            text(
                f"SELECT name, qty, note FROM {data_table(fresh_db.app, dataset)} WHERE _row_id = 1"
            )
        ).one() == ("ann", 1, "changed")
    delete(admin, dataset, 1)
    do_restore(admin, dataset, 1, 2)  # brought back: a column added since is empty
    with fresh_db.app.connect() as conn:
        assert conn.execute(
            text(
                f"SELECT name, qty, note FROM {data_table(fresh_db.app, dataset)} WHERE _row_id = 1"
            )
        ).one() == ("ann", 3, None)
    no_drift(dataset)
