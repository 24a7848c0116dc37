"""Committing edits: one audited changeset or nothing; optimistic concurrency with a conflict
report read from the audit log; the table's constraints as the backstop; roles re-checked."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from portal import diffs, merge, revert, writes
from portal.actor import Actor
from portal.browse import RowFilter, Sort
from portal.db import session_scope
from portal.diffs import ChangeSet, RowDelete, RowInsert, RowUpdate
from portal.errors import PermissionDenied, ValidationError
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import data_table, dataset_rows, make_user, table_name, upload_dataset

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True, unique=True),
        ColumnSpec("Qty", "qty", "integer", min=0),
        ColumnSpec("Price", "price", "decimal", scale=2),
        ColumnSpec("Note", "note", "text"),
    )
)
CSV = b"Name,Qty,Price,Note\nann,1,1.50,first\nbob,2,2.00,\ncy,3,3.25,third\ndee,4,,\n"


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="eddie", display_name="Eddie E.")
    return Actor(name, "Eddie E.", "editor")


@pytest.fixture
def other(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="olga", display_name="Olga O.")
    return Actor(name, "Olga O.", "editor")


@pytest.fixture
def dataset(editor: Actor) -> int:
    return upload_dataset(editor, CSV, spec=SPEC, name="People")


def window(dataset_id: int, **kw: object) -> tuple[writes.EditWindow, diffs.Window]:
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id, **kw)  # type: ignore[arg-type]
    base = diffs.editor_frame(read.spec, read.rows)
    return read, diffs.make_window(read.spec, base, read.versions)


def commit(
    actor: Actor, read: writes.EditWindow, changes: ChangeSet, reason: str = "fix"
) -> writes.CommitResult:
    with session_scope() as s:
        return writes.commit(
            session=s,
            actor=actor,
            dataset_id=read.dataset_id,
            spec_version=read.spec_version,
            changes=changes,
            reason=reason,
        )


def rows(db: DatabaseHandle, dataset_id: int) -> list[tuple[object, ...]]:
    return dataset_rows(db.app, dataset_id, "_row_id, _version, name, qty, price, note")


def audit_counts(db: DatabaseHandle) -> tuple[int, int]:
    with db.app.connect() as conn:
        return (
            conn.scalar(text("SELECT count(*) FROM audit.changeset")),
            conn.scalar(text("SELECT count(*) FROM audit.row_change")),
        )


def test_an_edit_commits_as_one_audited_changeset(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    read, win = window(dataset)
    state = {
        "edited_rows": {0: {"qty": 10, "note": "changed"}, 2: {"price": 9.5}},
        "added_rows": [{"name": "eve", "qty": 5}],
        "deleted_rows": [1],
    }
    changes = diffs.build_changeset(win, state, may_edit=True)
    result = commit(editor, read, changes, reason="stock count")

    assert result.updated_rows == 2
    assert result.updated_cells == 3
    assert result.deleted_rows == 1
    assert len(result.inserted_ids) == 1
    assert rows(fresh_db, dataset) == [
        (1, 2, "ann", 10, Decimal("1.50"), "changed"),
        (3, 2, "cy", 3, Decimal("9.5"), "third"),
        (4, 1, "dee", 4, None, None),
        (result.inserted_ids[0], 1, "eve", 5, None, None),
    ]
    with fresh_db.app.connect() as conn:
        cs = conn.execute(
            text(
                "SELECT kind, actor_username, actor_display_name, reason, seq IS NOT NULL,"
                " inserted, updated, deleted FROM audit.changeset WHERE id = :i"
            ),
            {"i": result.changeset_id},
        ).one()
        changes_logged = conn.execute(
            text(
                "SELECT row_id, op, before, after FROM audit.row_change"
                " WHERE changeset_id = :i ORDER BY op, row_id"
            ),
            {"i": result.changeset_id},
        ).all()
        row_count = conn.scalar(
            text("SELECT row_count FROM portal.datasets WHERE id = :i"), {"i": dataset}
        )
    assert tuple(cs) == ("edit", "eddie", "Eddie E.", "stock count", True, 1, 2, 1)
    assert [(r.row_id, r.op) for r in changes_logged] == [
        (2, "delete"),
        (result.inserted_ids[0], "insert"),
        (1, "update"),
        (3, "update"),
    ]
    update_1 = changes_logged[2]
    assert update_1.before == {"qty": 1, "note": "first"}
    assert update_1.after == {"qty": 10, "note": "changed"}
    assert changes_logged[0].before["name"] == "bob"
    assert row_count == 4
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


def test_a_second_editor_of_the_same_row_gets_a_conflict_and_nothing_is_written(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    read_mine, win_mine = window(dataset)
    read_theirs, win_theirs = window(dataset)
    theirs = diffs.build_changeset(win_theirs, {"edited_rows": {0: {"qty": 7}}}, may_edit=True)
    commit(other, read_theirs, theirs, reason="their count")
    before = audit_counts(fresh_db), rows(fresh_db, dataset)

    mine = diffs.build_changeset(
        win_mine, {"edited_rows": {0: {"note": "mine"}, 1: {"qty": 20}}}, may_edit=True
    )
    with pytest.raises(writes.EditConflict) as caught:
        commit(editor, read_mine, mine)

    assert (audit_counts(fresh_db), rows(fresh_db, dataset)) == before  # row 2 not written
    [conflict] = caught.value.conflicts
    assert conflict.row_id == 1
    assert conflict.op == "update"
    assert conflict.by == "Olga O."
    assert conflict.reason == "their count"
    assert conflict.at is not None
    assert conflict.now is not None
    assert conflict.now["qty"] == 7
    assert conflict.their_change == {"qty": (1, 7)}  # what they changed, from the audit log
    assert conflict.version == 2
    assert "changed by someone else" in str(caught.value)


def test_a_write_from_psql_since_i_read_the_row_is_a_conflict_too(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    """Every UPDATE bumps ``_version`` (migration 0010), not only the portal's: a change made
    outside the portal is not overwritten unseen."""
    read, win = window(dataset)
    mine = diffs.build_changeset(win, {"edited_rows": {0: {"note": "mine"}}}, may_edit=True)
    name = data_table(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE {name} SET note = 'psql' WHERE _row_id = 1"))
    with pytest.raises(writes.EditConflict) as caught:
        commit(editor, read, mine)
    [conflict] = caught.value.conflicts
    assert (conflict.row_id, conflict.now["note"], conflict.by) == (1, "psql", "postgres")
    assert rows(fresh_db, dataset)[0][5] == "psql"


def test_a_row_deleted_under_my_edit_is_reported_with_its_last_values(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    read_mine, win_mine = window(dataset)
    read_theirs, win_theirs = window(dataset)
    commit(
        other, read_theirs, diffs.build_changeset(win_theirs, {"deleted_rows": [2]}, may_edit=True)
    )

    mine = diffs.build_changeset(win_mine, {"edited_rows": {2: {"note": "keep me"}}}, may_edit=True)
    with pytest.raises(writes.EditConflict) as caught:
        commit(editor, read_mine, mine)
    [conflict] = caught.value.conflicts
    assert conflict.now is None
    assert conflict.version is None
    assert conflict.op == "delete"
    assert conflict.by == "Olga O."
    assert conflict.their_change == {}
    assert conflict.last_image == {
        "name": "cy",
        "qty": 3,
        "price": Decimal("3.25"),
        "note": "third",
    }


def test_a_row_changed_deleted_and_brought_back_by_a_revert_since_i_read_it_conflicts(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    """A revert brings a deleted row back under its own ``_row_id``: it must not come back at
    a ``_version`` I may have read it at, or my edit lands on a row I never saw (it came back at
    version 1 and my edit overwrote their change unseen)."""
    read_mine, win_mine = window(dataset)  # rows 1 and 2 at version 1
    mine = diffs.build_changeset(
        win_mine, {"edited_rows": {0: {"note": "mine"}}, "deleted_rows": [1]}, may_edit=True
    )
    read, win = window(dataset)
    commit(
        other,
        read,
        diffs.build_changeset(
            win, {"edited_rows": {0: {"note": "theirs"}, 1: {"qty": 9}}}, may_edit=True
        ),
    )
    read, win = window(dataset)
    gone = commit(other, read, diffs.build_changeset(win, {"deleted_rows": [0, 1]}, may_edit=True))
    with session_scope() as s:
        revert.revert(session=s, actor=other, changeset_id=gone.changeset_id, reason="undo")
    before = audit_counts(fresh_db), rows(fresh_db, dataset)
    assert [r[2:] for r in before[1][:2]] == [
        ("ann", 1, Decimal("1.50"), "theirs"),
        ("bob", 9, Decimal("2.00"), None),
    ]

    with pytest.raises(writes.EditConflict) as caught:
        commit(editor, read_mine, mine)

    assert (audit_counts(fresh_db), rows(fresh_db, dataset)) == before
    assert {c.row_id for c in caught.value.conflicts} == {1, 2}


def test_a_value_the_table_refuses_names_row_and_column_and_writes_nothing(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    # Only rows 1-2 are in the window: "dee" (row 4) is outside it, so diffs cannot see the clash.
    read, win = window(dataset, limit=2)
    before = audit_counts(fresh_db), rows(fresh_db, dataset)
    changes = diffs.build_changeset(
        win, {"edited_rows": {0: {"qty": 3}, 1: {"name": "dee"}}}, may_edit=True
    )
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, changes)
    assert caught.value.row == "row 2"
    assert caught.value.column == "Name"
    assert "“dee”" in str(caught.value)
    assert "Nothing was written" in str(caught.value)
    assert (audit_counts(fresh_db), rows(fresh_db, dataset)) == before

    # A forged ChangeSet that skipped diffs: the CHECK constraint refuses it.
    forged = ChangeSet(updates=(RowUpdate(3, 1, {"qty": 3}, {"qty": -5}),))
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, forged)
    assert caught.value.row == "row 3"
    assert caught.value.column == "Qty"
    forged_insert = ChangeSet(
        inserts=(RowInsert({"name": "zed", "qty": 1, "price": Decimal("1.234"), "note": None}),)
    )
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, forged_insert)
    assert caught.value.row == "a new row"
    assert caught.value.column == "Price"
    assert (audit_counts(fresh_db), rows(fresh_db, dataset)) == before
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


def test_a_failing_row_rolls_back_every_statement_and_its_audit(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    read, _ = window(dataset)
    before = audit_counts(fresh_db), rows(fresh_db, dataset)
    # The updates and the delete succeed; the insert then fails: nothing may remain.
    changes = ChangeSet(
        updates=(RowUpdate(1, 1, {"qty": 1}, {"qty": 100}),),
        deletes=(RowDelete(2, 1, {"name": "bob"}),),
        inserts=(RowInsert({"name": None, "qty": 1, "price": None, "note": None}),),
    )
    with pytest.raises(writes.EditRefused):
        commit(editor, read, changes)
    assert (audit_counts(fresh_db), rows(fresh_db, dataset)) == before


def test_viewers_cannot_commit_and_reasons_are_required(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    read, win = window(dataset)
    viewer = Actor("vee", "Vee", "viewer")
    changes = diffs.build_changeset(win, {"edited_rows": {0: {"qty": 9}}}, may_edit=True)
    with pytest.raises(PermissionDenied):
        commit(viewer, read, changes)
    with pytest.raises(PermissionDenied):
        diffs.build_changeset(win, {"edited_rows": {0: {"qty": 9}}}, may_edit=False)
    with pytest.raises(ValidationError, match="needs a reason"):
        commit(editor, read, changes, reason="   ")
    with pytest.raises(ValidationError, match="no changes"):
        commit(editor, read, ChangeSet())
    stale = writes.EditWindow(**{**read.__dict__, "spec_version": read.spec_version + 1})
    with pytest.raises(ValidationError, match=r"column rules of .* changed"):
        commit(editor, stale, changes)
    assert rows(fresh_db, dataset)[0][3] == 1


def test_the_window_filters_sorts_and_pages_on_the_server(editor: Actor, dataset: int) -> None:
    read, _ = window(dataset, sort=Sort("qty", descending=True), limit=2)
    assert [r[1] for r in read.rows] == ["dee", "cy"]
    assert read.total == 4
    read, _ = window(dataset, sort=Sort("qty", descending=True), limit=2, offset=2)
    assert [r[1] for r in read.rows] == ["bob", "ann"]
    read, _ = window(dataset, filters=[RowFilter("qty", "range", "2", "3")])
    assert [r[1] for r in read.rows] == ["bob", "cy"]
    assert read.total == 2
    read, _ = window(dataset, filters=[RowFilter("note", "empty", "")])
    assert [r[1] for r in read.rows] == ["bob", "dee"]
    read, _ = window(
        dataset, filters=[RowFilter("name", "contains", "E"), RowFilter("qty", "equals", "4")]
    )
    assert [r[1] for r in read.rows] == ["dee"]
    assert read.versions == {4: 1}


def test_reload_and_reapply_merges_cell_by_cell(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    read_mine, win_mine = window(dataset)
    read_theirs, win_theirs = window(dataset)
    theirs = diffs.build_changeset(
        win_theirs,
        {"edited_rows": {0: {"qty": 7, "note": "theirs"}, 2: {"note": "x"}}, "deleted_rows": [1]},
        may_edit=True,
    )
    commit(other, read_theirs, theirs)
    mine = diffs.build_changeset(
        win_mine,
        {
            "edited_rows": {0: {"price": 5, "note": "mine"}, 1: {"qty": 20}},
            "deleted_rows": [2],
            "added_rows": [{"name": "fay"}],
        },
        may_edit=True,
    )
    with pytest.raises(writes.EditConflict):
        commit(editor, read_mine, mine)

    with session_scope() as s:
        now = writes.rows_now(session=s, dataset_id=dataset, row_ids=mine.row_ids())
    rebased = merge.rebase(mine, now)
    # Row 1: price only I changed -> re-applied; note both changed -> a clash.
    assert rebased.reapplied_cells == 1
    assert rebased.clashes == (merge.Clash(1, 2, "note", "first", "theirs", "mine"),)
    # Row 2: deleted by them under my edit -> kept, with its last values and mine on top.
    [lost] = rebased.lost
    assert lost.row_id == 2
    assert dict(lost.values) == {"name": "bob", "qty": 20, "price": Decimal("2.00"), "note": None}
    # Row 3: I deleted it, they changed it -> my decision.
    assert [d.row_id for d in rebased.changed_deletes] == [3]

    final = merge.resolve(rebased, {(1, "note"): "mine"}, recreate={2}, delete_anyway={3})
    result = commit(editor, read_mine, final, reason="merged")
    table = rows(fresh_db, dataset)
    assert table[0] == (1, 3, "ann", 7, Decimal("5"), "mine")  # their qty kept, my cells applied
    assert [r[2] for r in table] == ["ann", "dee", "fay", "bob"]
    assert len(result.inserted_ids) == 2


def test_a_pending_edit_carried_to_a_fresh_window_still_conflicts(
    editor: Actor, other: Actor, dataset: int
) -> None:
    _read, win = window(dataset)
    pending = diffs.build_changeset(win, {"edited_rows": {0: {"qty": 50}}}, may_edit=True)
    read_theirs, win_theirs = window(dataset)
    commit(
        other,
        read_theirs,
        diffs.build_changeset(win_theirs, {"edited_rows": {0: {"qty": 8}}}, may_edit=True),
    )

    # Back on the page: the rows are read again, the pending edit shown on top of them.
    fresh, _ = window(dataset)
    carried = diffs.make_window(
        fresh.spec, diffs.editor_frame(fresh.spec, fresh.rows), fresh.versions, pending
    )
    assert carried.shown.loc[1, "qty"] == 50
    changes = diffs.build_changeset(carried, {}, may_edit=True)
    assert changes.updates == (RowUpdate(1, 1, {"qty": 1}, {"qty": 50}),)
    with pytest.raises(writes.EditConflict):
        commit(editor, fresh, changes)


def test_every_column_type_commits_through_its_cast(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    spec = DatasetSpec(
        (
            ColumnSpec("Name", "name", "text"),
            ColumnSpec("Kind", "kind", "category", options=("a", "b")),
            ColumnSpec("Done", "done", "boolean"),
            ColumnSpec("Day", "day", "date"),
            ColumnSpec("At", "at", "datetime"),
        )
    )
    dataset = upload_dataset(
        editor, b"Name,Kind,Done,Day,At\nx,a,yes,2024-01-02,2024-01-02T03:04:05Z\n", spec=spec
    )
    read, win = window(dataset)
    state = {
        "edited_rows": {
            0: {"kind": "b", "done": False, "day": "2024-05-01", "at": "2024-05-01T10:00:00+02:00"}
        },
        "added_rows": [{"name": "y", "kind": "a", "done": True, "day": "2025-12-31T00:00:00.000"}],
    }
    commit(editor, read, diffs.build_changeset(win, state, may_edit=True))
    again, _ = window(dataset)
    assert [r[1:] for r in again.rows] == [
        ("x", "b", False, date(2024, 5, 1), datetime(2024, 5, 1, 8, tzinfo=UTC)),
        ("y", "a", True, date(2025, 12, 31), None),
    ]


def test_the_smallest_whole_number_commits_as_an_upload_stores_it(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """-9223372036854775808 fits a bigint and an upload stores it; an edit or a new row must
    too (a negative value reaches SQL as ``-9223372036854775808``, which a ``::bigint`` after it
    would cast before the minus, out of range)."""
    spec = DatasetSpec((ColumnSpec("Name", "name", "text"), ColumnSpec("N", "n", "integer")))
    dataset = upload_dataset(editor, b"Name,N\nx,-9223372036854775808\ny,1\n", spec=spec)
    read, win = window(dataset)
    state = {
        "edited_rows": {1: {"n": "-9223372036854775808"}},
        "added_rows": [{"name": "z", "n": "-9223372036854775808"}],
    }
    commit(editor, read, diffs.build_changeset(win, state, may_edit=True))
    again, _ = window(dataset)
    assert [r[1:] for r in again.rows] == [
        ("x", -(2**63)),
        ("y", -(2**63)),
        ("z", -(2**63)),
    ]


@pytest.mark.parametrize(
    ("type_", "held", "sent"),
    [
        ("datetime", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"),
        ("decimal", "1.5", "1.50"),
        ("boolean", "true", "yes"),
    ],
)
def test_a_unique_clash_outside_the_window_names_the_row_edited(
    fresh_db: DatabaseHandle, editor: Actor, type_: str, held: str, sent: str
) -> None:
    """The window holds row 1 only; row 2 holds the value row 1 is edited to. The table's
    UNIQUE constraint refuses it, and the message names row 1, however PostgreSQL prints the
    value (a date and time as ``2024-01-01 00:00:00+00``, a boolean as ``t``)."""
    spec = DatasetSpec(
        (ColumnSpec("Name", "name", "text"), ColumnSpec("Key", "k", type_, unique=True))  # type: ignore[arg-type]
    )
    dataset = upload_dataset(editor, f"Name,Key\nx,\ny,{held}\n".encode(), spec=spec)
    read, win = window(dataset, limit=1)
    changes = diffs.build_changeset(win, {"edited_rows": {0: {"k": sent}}}, may_edit=True)
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, changes)
    assert (caught.value.row, caught.value.column) == ("row 1", "Key")
    assert str(caught.value).startswith("The database refused row 1, column “Key”: the value")


def test_rows_may_swap_and_pass_on_unique_values_in_one_commit(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    """The UNIQUE constraint is checked once every row is written: ann and bob swap names in
    different statements (bob's row also changes its qty), cy gives hers to a new row."""
    read, win = window(dataset)
    changes = diffs.build_changeset(
        win,
        {
            "edited_rows": {0: {"name": "bob"}, 1: {"name": "ann", "qty": 20}, 2: {"name": "cyd"}},
            "added_rows": [{"name": "cy", "qty": 9}],
        },
        may_edit=True,
    )
    done = commit(editor, read, changes)
    assert [r[2:4] for r in rows(fresh_db, dataset)] == [
        ("bob", 1),
        ("ann", 20),
        ("cyd", 3),
        ("dee", 4),
        ("cy", 9),
    ]
    assert done.inserted_ids == (5,)
    # A real duplicate is still refused when the writes end, naming the row and column.
    read, win = window(dataset)
    changes = diffs.build_changeset(win, {"edited_rows": {0: {"qty": 2}}}, may_edit=True)
    clash = ChangeSet(updates=(*changes.updates, RowUpdate(2, 2, {"name": "ann"}, {"name": "dee"})))
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, clash)
    assert (caught.value.row, caught.value.column) == ("row 2", "Name")


def test_audit_images_are_read_back_exactly() -> None:
    """What a conflict or a merge shows of the audit log: texts as stored, numbers exact."""
    image = writes.typed_image(SPEC, '{"name": "", "qty": 3, "price": 1.50, "note": " x "}')
    assert image == {"name": "", "qty": 3, "price": Decimal("1.50"), "note": " x "}
    assert str(image["price"]) == "1.50"


def test_a_value_too_long_for_its_column_s_index_is_refused_naming_row_and_column(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    """A column sorted or filtered on a large table gets a btree (portal.indexes), which cannot
    hold a value of more than about 2,700 bytes that does not compress: the commit was refused
    with the server's words and "Try again", which could never work."""
    from portal.spec import index_name

    table = table_name(fresh_db.app, dataset)
    with Session(fresh_db.app) as s, s.begin():
        s.execute(text(f"CREATE INDEX {index_name(table, 'note')} ON data.{table} (note, _row_id)"))
    before = rows(fresh_db, dataset), audit_counts(fresh_db)
    read, win = window(dataset)
    long_note = "".join(f"{i * 7919 % 100_003:05x}" for i in range(2_400))  # 12,000 bytes
    changes = diffs.build_changeset(win, {"edited_rows": {1: {"note": long_note}}}, may_edit=True)
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, changes)
    said = str(caught.value)
    assert "row 2, column “Note”" in said
    assert "its value (12,000 bytes) is too long" in said
    assert "Try again" not in said
    assert (rows(fresh_db, dataset), audit_counts(fresh_db)) == before


def test_a_value_over_the_btree_limit_is_named_by_the_index_the_server_names(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    from portal.spec import index_name

    table = table_name(fresh_db.app, dataset)
    with Session(fresh_db.app) as s, s.begin():
        s.execute(text(f"CREATE INDEX {index_name(table, 'note')} ON data.{table} (note, _row_id)"))
    read, win = window(dataset)
    note = "".join(f"{i * 7919 % 100_003:05x}" for i in range(700))  # 3,500 bytes
    state = {"added_rows": [{"name": "eve", "qty": 1, "note": note}]}
    changes = diffs.build_changeset(win, state, may_edit=True)
    with pytest.raises(writes.EditRefused) as caught:
        commit(editor, read, changes)
    assert "a new row, column “Note”: its value (3,500 bytes) is too long" in str(caught.value)
