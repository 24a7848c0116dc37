"""Reverting a changeset: exact prior values back for updates, inserts and deletes, as one
audited ``revert`` changeset; a revert reverted; cells and rows changed since held, never
overwritten, the untouched part applied; uploads; roles re-checked on the server; and the
audit log still rebuilds every state after random sequences that include reverts."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.trail import dataset_state
from portal import diffs, revert, trail_views, uploads, writes
from portal.actor import Actor
from portal.db import session_scope
from portal.diffs import ChangeSet, RowDelete, RowInsert, RowUpdate
from portal.errors import PermissionDenied, PortalError, ValidationError
from portal.models import Dataset
from portal.revert import RevertRefused
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import data_table, make_user, upload_dataset

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
ORIGINAL = {
    1: ("ann", 1, Decimal("1.50"), "first"),
    2: ("bob", 2, Decimal("2.00"), None),
    3: ("cy", 3, Decimal("3.25"), "third"),
    4: ("dee", 4, None, None),
}


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


def table(db: DatabaseHandle, dataset_id: int) -> dict[int, tuple[Any, ...]]:
    """``{_row_id: (name, qty, price, note)}`` as the table holds it now."""
    name = data_table(db.app, dataset_id)
    with db.app.connect() as conn:
        found = conn.execute(
            text(f"SELECT _row_id, name, qty, price, note FROM {name} ORDER BY _row_id")
        )
        return {r[0]: tuple(r[1:]) for r in found}


def versions(dataset_id: int) -> dict[int, int]:
    with session_scope() as s:
        return writes.read_window(session=s, dataset_id=dataset_id, limit=5_000).versions


def edit(actor: Actor, dataset_id: int, changes: ChangeSet, reason: str = "fix") -> int:
    """Commit ``changes`` (versions filled in from the table now) as an edit; its changeset id."""
    seen = versions(dataset_id)
    changes = ChangeSet(
        updates=tuple(
            RowUpdate(u.row_id, seen[u.row_id], u.before, u.after) for u in changes.updates
        ),
        inserts=changes.inserts,
        deletes=tuple(RowDelete(d.row_id, seen[d.row_id], d.before) for d in changes.deletes),
    )
    with session_scope() as s:
        return writes.commit(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            spec_version=1,
            changes=changes,
            reason=reason,
        ).changeset_id


def update(row_id: int, before: dict[str, Any], after: dict[str, Any]) -> RowUpdate:
    return RowUpdate(row_id, 0, before, after)


def do_revert(
    actor: Actor, changeset_id: int, reason: str = "undo", **kw: Any
) -> revert.RevertResult:
    with session_scope() as s:
        return revert.revert(session=s, actor=actor, changeset_id=changeset_id, reason=reason, **kw)


def plan(actor: Actor, changeset_id: int) -> revert.RevertPlan:
    with session_scope() as s:
        return revert.plan_revert(session=s, actor=actor, changeset_id=changeset_id)


def changeset(db: DatabaseHandle, changeset_id: int) -> dict[str, Any]:
    with db.app.connect() as conn:
        row = conn.execute(
            text(
                "SELECT seq, kind, actor_username, actor_display_name, reason, detail,"
                " inserted, updated, deleted FROM audit.changeset WHERE id = :i"
            ),
            {"i": changeset_id},
        ).one()
        return dict(row._mapping)


def row_changes(db: DatabaseHandle, changeset_id: int) -> list[tuple[Any, ...]]:
    with db.app.connect() as conn:
        return [
            (r.row_id, r.op, r.before, r.after)
            for r in conn.execute(
                text(
                    "SELECT row_id, op, before::text AS before, after::text AS after"
                    " FROM audit.row_change WHERE changeset_id = :i ORDER BY op, row_id"
                ),
                {"i": changeset_id},
            )
        ]


def count_changesets(db: DatabaseHandle) -> int:
    with db.app.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM audit.changeset")))


def exact(document: str | None) -> Any:
    return None if document is None else json.loads(document, parse_float=Decimal)


def as_of_now(db: DatabaseHandle, dataset_id: int) -> dict[int, tuple[Any, ...]]:
    with Session(db.app) as s:
        state = dataset_state(session=s, dataset_id=dataset_id, exact=True)
    return {
        row_id: (image["name"], image["qty"], image["price"], image["note"])
        for row_id, image in sorted(state.items())
    }


# ---------------------------------------------------------------------------------------------
# Exact inverse, audited
# ---------------------------------------------------------------------------------------------


MIXED = ChangeSet(
    updates=(
        update(1, {"qty": 1, "note": "first"}, {"qty": 10, "note": "changed"}),
        update(3, {"price": Decimal("3.25")}, {"price": Decimal("9.50")}),
    ),
    inserts=(RowInsert({"name": "eve", "qty": 5, "price": Decimal("0.10"), "note": ""}),),
    deletes=(RowDelete(2, 0, {}),),
)


def test_a_revert_restores_exact_prior_values_as_one_audited_revert_changeset(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED, reason="stock count")
    after_edit = table(fresh_db, dataset)
    eve = next(i for i, r in after_edit.items() if r[0] == "eve")

    result = do_revert(other, edited, reason="wrong file")

    now = table(fresh_db, dataset)
    [bob] = result.commit.inserted_ids
    assert bob == 2  # back under its own _row_id, with the same values
    assert now == {1: ORIGINAL[1], 3: ORIGINAL[3], 4: ORIGINAL[4], bob: ORIGINAL[2]}
    assert str(now[bob][2]) == "2.00"
    cs = changeset(fresh_db, result.changeset_id)
    target_seq = changeset(fresh_db, edited)["seq"]
    assert cs["seq"] > target_seq
    assert (cs["kind"], cs["actor_username"], cs["actor_display_name"], cs["reason"]) == (
        "revert",
        "olga",
        "Olga O.",
        "wrong file",
    )
    assert cs["detail"]["reverts"] == {"changeset_id": edited, "seq": target_seq}
    assert cs["detail"]["skipped_count"] == 0
    assert (cs["inserted"], cs["updated"], cs["deleted"]) == (1, 2, 1)
    logged = row_changes(fresh_db, result.changeset_id)
    assert [(r[0], r[1], exact(r[2]), exact(r[3])) for r in logged] == [
        (eve, "delete", {"name": "eve", "qty": 5, "price": Decimal("0.10"), "note": ""}, None),
        (bob, "insert", None, {"name": "bob", "qty": 2, "price": Decimal("2.00"), "note": None}),
        (1, "update", {"qty": 10, "note": "changed"}, {"qty": 1, "note": "first"}),
        (3, "update", {"price": Decimal("9.50")}, {"price": Decimal("3.25")}),
    ]
    assert as_of_now(fresh_db, dataset) == now
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok
        assert s.get(Dataset, dataset).row_count == 4  # type: ignore[union-attr]


def test_reverting_a_revert_restores_what_it_undid(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)
    after_edit = table(fresh_db, dataset)
    first = do_revert(editor, edited)
    again = do_revert(editor, first.changeset_id, reason="it was right after all")

    now = table(fresh_db, dataset)
    assert sorted(now.values(), key=str) == sorted(after_edit.values(), key=str)
    assert {i: r for i, r in now.items() if r[0] != "eve"} == {
        i: r for i, r in after_edit.items() if r[0] != "eve"
    }
    assert changeset(fresh_db, again.changeset_id)["kind"] == "revert"
    assert changeset(fresh_db, again.changeset_id)["detail"]["reverts"]["changeset_id"] == (
        first.changeset_id
    )
    assert as_of_now(fresh_db, dataset) == now


def test_a_revert_reverted_already_has_nothing_left_to_do(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)
    do_revert(editor, edited)
    before = count_changesets(fresh_db)
    with pytest.raises(ValidationError, match="Nothing to revert"):
        do_revert(editor, edited)
    assert count_changesets(fresh_db) == before


def test_a_row_brought_back_and_deleted_again_is_held_not_brought_back_twice(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)  # deletes bob (row 2)
    back = do_revert(editor, edited).changeset_id  # bob is back as row 2
    assert table(fresh_db, dataset)[2] == ORIGINAL[2]
    do_revert(editor, back)  # and deleted again
    assert 2 not in table(fresh_db, dataset)
    again = plan(editor, edited)
    held = {c.key: c for c in again.conflicts}
    assert held[(2, None)].now is None  # deleted since, shown with what it would restore
    assert held[(2, None)].restore == {
        "name": "bob",
        "qty": 2,
        "price": Decimal("2.00"),
        "note": None,
    }
    assert all(i.row_id != 2 for i in again.changes.inserts)


# ---------------------------------------------------------------------------------------------
# Changed since: held, never overwritten
# ---------------------------------------------------------------------------------------------


def test_cells_changed_since_are_held_and_the_untouched_part_can_be_applied(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)
    eve = next(i for i, r in table(fresh_db, dataset).items() if r[0] == "eve")
    later = edit(
        other,
        dataset,
        ChangeSet(
            updates=(
                update(1, {"qty": 10}, {"qty": 11}),  # a cell the edit changed
                update(3, {"note": "third"}, {"note": "checked"}),  # another cell of its row
                update(eve, {"qty": 5}, {"qty": 6}),  # a row it inserted
            )
        ),
        reason="recount",
    )
    later_seq = changeset(fresh_db, later)["seq"]
    before_revert = table(fresh_db, dataset)
    changesets_before = count_changesets(fresh_db)

    shown = plan(editor, edited)
    assert {c.key for c in shown.conflicts} == {(1, "qty"), (eve, None)}
    qty = next(c for c in shown.conflicts if c.key == (1, "qty"))
    assert (qty.now, qty.restore) == (11, 1)
    assert qty.since is not None
    assert (qty.since.by, qty.since.seq, qty.since.reason) == ("Olga O.", later_seq, "recount")
    row = next(c for c in shown.conflicts if c.key == (eve, None))
    assert row.now == {"name": "eve", "qty": 6, "price": Decimal("0.10"), "note": ""}
    assert row.restore is None
    records = revert.conflict_records(shown)
    assert {(r["Row id"], r["Column"], r["Now"], r["Revert would restore"]) for r in records} == {
        (1, "Qty", "11", "1"),
        # Its note is an empty text, not "no value" (∅).
        (eve, "(whole row)", 'Name: eve, Qty: 6, Price: 0.10, Note: ""', "(delete the row)"),
    }
    assert {r["Changed by"] for r in records} == {"Olga O."}
    assert shown.summary() == "2 cells in 2 rows restored, 1 row inserted again"

    # Without agreeing to leave them alone, nothing is written.
    with pytest.raises(RevertRefused, match="2 cells or rows of changeset") as refused:
        do_revert(editor, edited)
    assert refused.value.plan.keys == shown.keys
    assert table(fresh_db, dataset) == before_revert
    assert count_changesets(fresh_db) == changesets_before

    result = do_revert(editor, edited, skip=shown.keys)
    now = table(fresh_db, dataset)
    [bob] = result.commit.inserted_ids
    assert now[1] == ("ann", 11, Decimal("1.50"), "first")  # qty held, note restored
    assert now[3] == ("cy", 3, Decimal("3.25"), "checked")  # price restored, note left
    assert now[eve] == ("eve", 6, Decimal("0.10"), "")  # changed since: not deleted
    assert now[bob] == ORIGINAL[2]
    detail = changeset(fresh_db, result.changeset_id)["detail"]
    assert detail["skipped_count"] == 2
    assert sorted(map(tuple, detail["skipped"])) == sorted([(1, "qty"), (eve, None)], key=str)
    assert as_of_now(fresh_db, dataset) == now


def test_a_conflict_that_appears_after_the_review_refuses_the_whole_revert(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)
    seen = plan(editor, edited)
    assert not seen.conflicts
    edit(other, dataset, ChangeSet(updates=(update(3, {"price": Decimal("9.50")}, {"price": 7}),)))
    before = table(fresh_db, dataset)
    with pytest.raises(RevertRefused) as refused:
        do_revert(editor, edited, skip=seen.keys)
    assert refused.value.plan.keys == {(3, "price")}
    assert table(fresh_db, dataset) == before


def test_a_row_deleted_since_and_a_change_outside_the_portal_are_held(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)
    edit(other, dataset, ChangeSet(deletes=(RowDelete(3, 0, {}),)), reason="gone")
    name = data_table(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE {name} SET note = 'psql' WHERE _row_id = 1"))

    shown = plan(editor, edited)
    by_key = {c.key: c for c in shown.conflicts}
    assert set(by_key) == {(1, "note"), (3, None)}
    assert by_key[(3, None)].now is None
    assert by_key[(3, None)].restore == {"price": Decimal("3.25")}
    gone = by_key[(3, None)].since
    assert gone is not None
    assert gone.reason == "gone"
    note = by_key[(1, "note")]
    assert (note.now, note.restore) == ("psql", "first")
    assert note.since is not None
    assert note.since.kind == "out_of_band"
    result = do_revert(editor, edited, skip=shown.keys)
    now = table(fresh_db, dataset)
    assert now[1] == ("ann", 1, Decimal("1.50"), "psql")
    assert 3 not in now
    assert changeset(fresh_db, result.changeset_id)["updated"] == 1


def test_a_revert_done_in_part_already_is_not_said_to_be_all_changed_since(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    """Two people revert the same changeset, both agreeing to leave a cell changed since: the
    second is told the rest was reverted already, not that everything was changed again."""
    edited = edit(
        editor,
        dataset,
        ChangeSet(updates=(update(1, {"qty": 1, "note": "first"}, {"qty": 10, "note": "x"}),)),
    )
    edit(other, dataset, ChangeSet(updates=(update(1, {"qty": 10}, {"qty": 11}),)))
    seen = plan(editor, edited)
    assert seen.keys == {(1, "qty")}
    do_revert(other, edited, skip=seen.keys)  # the other session, first
    before = count_changesets(fresh_db)
    with pytest.raises(RevertRefused) as refused:
        do_revert(editor, edited, skip=seen.keys)
    said = str(refused.value)
    assert "Everything" not in said
    assert "1 cell or row already holds the value from before it" in said
    assert "it may have been reverted in part already" in said
    assert "the rest was changed again since" in said
    assert count_changesets(fresh_db) == before


def test_a_cell_changed_since_back_to_the_value_to_restore_needs_nothing(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, ChangeSet(updates=(update(1, {"qty": 1}, {"qty": 10}),)))
    edit(other, dataset, ChangeSet(updates=(update(1, {"qty": 10}, {"qty": 1}),)))
    shown = plan(editor, edited)
    assert shown.conflicts == ()
    assert shown.changes.empty
    assert shown.already == 1
    with pytest.raises(ValidationError, match="Nothing to revert"):
        do_revert(editor, edited)


# ---------------------------------------------------------------------------------------------
# Uploads, refusals, roles
# ---------------------------------------------------------------------------------------------


def upload_changeset_ids(db: DatabaseHandle, dataset_id: int) -> list[int]:
    with db.app.connect() as conn:
        return list(
            conn.scalars(
                text(
                    "SELECT id FROM audit.changeset WHERE dataset_id = :d AND kind = 'upload'"
                    " ORDER BY seq"
                ),
                {"d": dataset_id},
            )
        )


def load(actor: Actor, dataset_id: int, data: bytes, mode: str) -> None:
    parsed = uploads.read_file(data)
    result = uploads.check(parsed, SPEC)
    uploads.import_file(
        actor=actor,
        filename="more.csv",
        data=data,
        parsed=parsed,
        spec=SPEC,
        result=result,
        target=uploads.ExistingDataset(dataset_id, mode),  # type: ignore[arg-type]
        reason=mode,
    )


def test_reverting_an_upload_deletes_its_rows_except_those_changed_since(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    load(editor, dataset, b"Name,Qty,Price,Note\nfay,6,6.00,\ngus,7,,x\n", "append")
    appended = upload_changeset_ids(fresh_db, dataset)[-1]
    fay, gus = sorted(i for i, r in table(fresh_db, dataset).items() if r[0] in ("fay", "gus"))
    edit(other, dataset, ChangeSet(updates=(update(gus, {"qty": 7}, {"qty": 70}),)))

    shown = plan(editor, appended)
    assert shown.keys == {(gus, None)}
    result = do_revert(editor, appended, skip=shown.keys)
    now = table(fresh_db, dataset)
    assert fay not in now
    assert now[gus] == ("gus", 70, None, "x")
    assert changeset(fresh_db, result.changeset_id)["deleted"] == 1
    assert as_of_now(fresh_db, dataset) == now


def test_reverting_a_replacing_upload_brings_the_replaced_rows_back(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    load(editor, dataset, b"Name,Qty,Price,Note\nzed,9,9.99,z\n", "replace")
    replaced = upload_changeset_ids(fresh_db, dataset)[-1]
    result = do_revert(editor, replaced)
    now = table(fresh_db, dataset)
    assert sorted(now.values(), key=str) == sorted(ORIGINAL.values(), key=str)
    assert sorted(result.commit.inserted_ids) == [1, 2, 3, 4]
    assert now == ORIGINAL
    assert as_of_now(fresh_db, dataset) == now


def test_a_changeset_too_large_or_of_another_kind_is_refused_with_what_to_do(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    [created] = upload_changeset_ids(fresh_db, dataset)
    monkeypatch.setattr(revert, "MAX_REVERT_ROWS", 3)
    with pytest.raises(ValidationError, match="changed 4 rows; a revert handles at most 3"):
        plan(editor, created)
    with fresh_db.app.connect() as conn:
        dataset_kind = conn.scalar(
            text("SELECT id FROM audit.changeset WHERE kind = 'dataset' AND dataset_id = :d"),
            {"d": dataset},
        )
    if dataset_kind is not None:
        with pytest.raises(ValidationError, match="cannot be reverted here"):
            plan(editor, dataset_kind)
    before = count_changesets(fresh_db)
    edited = edit(editor, dataset, MIXED)
    with pytest.raises(ValidationError, match="reason is required"):
        do_revert(editor, edited, reason="  ")
    assert count_changesets(fresh_db) == before + 1


def test_a_changeset_too_large_names_the_changeset_to_go_back_to(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The advice for a changeset too large to revert named no changeset: "download it as of
    the changeset before this one (below)", where the table below is the one right after it,
    and the dataset's first changeset has none before it. It now names the one to open, or
    says there is none."""
    [created] = upload_changeset_ids(fresh_db, dataset)
    created_seq = changeset(fresh_db, created)["seq"]
    edit(editor, dataset, ChangeSet(updates=(update(1, {"qty": 1}, {"qty": 5}),)))
    edited = edit(
        editor,
        dataset,
        ChangeSet(updates=tuple(update(i, {"qty": i}, {"qty": 10 + i}) for i in (2, 3, 4))),
    )
    previous = changeset(fresh_db, edited)["seq"] - 1
    monkeypatch.setattr(revert, "MAX_REVERT_ROWS", 2)
    with pytest.raises(ValidationError) as refused:
        plan(editor, edited)
    said = str(refused.value)
    assert "changed 3 rows; a revert handles at most 2" in said
    assert f"the table as of #{previous}, the changeset before it" in said
    assert "(below)" not in said
    monkeypatch.setattr(revert, "MAX_REVERT_ROWS", 3)
    with pytest.raises(ValidationError) as refused:
        plan(editor, created)
    said = str(refused.value)
    assert f"#{created_seq} is the first change to this dataset" in said
    assert "changeset before" not in said


def test_a_row_that_cannot_come_back_refuses_the_whole_revert_with_why(
    fresh_db: DatabaseHandle, editor: Actor, other: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)  # deletes bob
    edit(other, dataset, ChangeSet(inserts=(RowInsert({"name": "bob", "qty": 9}),)))
    before, rows = count_changesets(fresh_db), table(fresh_db, dataset)
    # Named by the row id it had and gets back, not as "a new row".
    with pytest.raises(
        ValidationError, match="refused row 2, column “Name” — a value it would restore is now"
    ):
        do_revert(editor, edited)
    assert (count_changesets(fresh_db), table(fresh_db, dataset)) == (before, rows)


def test_a_viewer_cannot_revert_even_by_calling_the_server(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    edited = edit(editor, dataset, MIXED)
    viewer = Actor("vera", "Vera V.", "viewer")
    before, rows = count_changesets(fresh_db), table(fresh_db, dataset)
    with pytest.raises(PermissionDenied, match="not revert"):
        do_revert(viewer, edited)
    with pytest.raises(PermissionDenied):
        plan(viewer, edited)
    assert (count_changesets(fresh_db), table(fresh_db, dataset)) == (before, rows)


# ---------------------------------------------------------------------------------------------
# Property: as of every changeset, with reverts in the sequence
# ---------------------------------------------------------------------------------------------

_names = itertools.count()
cell = st.tuples(st.none() | st.integers(0, 9), st.none() | st.decimals(0, 99, places=2))
operation = st.one_of(
    st.tuples(st.just("upload"), st.lists(cell, min_size=1, max_size=3)),
    st.tuples(st.just("insert"), st.lists(cell, min_size=1, max_size=3)),
    st.tuples(st.just("update"), st.integers(0, 20), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 20)),
    st.tuples(st.just("out_of_band"), st.integers(0, 20)),
    st.tuples(st.just("revert"), st.integers(0, 20)),
    st.tuples(st.just("revert"), st.integers(0, 20)),  # twice as likely: reverts of reverts
)


def _csv_line(values: tuple[Any, ...]) -> str:
    return ",".join("" if v is None else str(v) for v in values)


def _step(db: DatabaseHandle, actor: Actor, dataset_id: int, op: tuple[Any, ...]) -> None:
    """Apply one operation; nothing to do (no rows, nothing to revert) is skipped."""
    rows = table(db, dataset_id)
    ids = sorted(rows)
    kind = op[0]
    if kind == "upload":
        lines = [_csv_line((f"u{next(_names)}", q, p, "")) for q, p in op[1]]
        load(
            actor,
            dataset_id,
            ("Name,Qty,Price,Note\n" + "\n".join(lines) + "\n").encode(),
            "append",
        )
    elif kind == "insert":
        edit(
            actor,
            dataset_id,
            ChangeSet(
                inserts=tuple(
                    RowInsert({"name": f"i{next(_names)}", "qty": q, "price": p, "note": None})
                    for q, p in op[1]
                )
            ),
        )
    elif kind in ("update", "delete", "out_of_band") and ids:
        row_id = ids[op[1] % len(ids)]
        if kind == "update" and rows[row_id][1] != op[2]:
            edit(
                actor,
                dataset_id,
                ChangeSet(updates=(update(row_id, {"qty": rows[row_id][1]}, {"qty": op[2]}),)),
            )
        elif kind == "delete":
            edit(actor, dataset_id, ChangeSet(deletes=(RowDelete(row_id, 0, {}),)))
        elif kind == "out_of_band":
            name = data_table(db.app, dataset_id)
            with db.superuser.begin() as conn:
                conn.execute(
                    text(
                        f"UPDATE {name} SET note = coalesce(note, '') || 'x',"
                        " _version = _version + 1 WHERE _row_id = :r"
                    ),
                    {"r": row_id},
                )
    elif kind == "revert":
        with db.app.connect() as conn:
            targets = list(
                conn.scalars(
                    text(
                        "SELECT id FROM audit.changeset WHERE dataset_id = :d"
                        " AND kind <> 'dataset' ORDER BY seq"
                    ),
                    {"d": dataset_id},
                )
            )
        target = targets[op[1] % len(targets)]
        try:
            shown = plan(actor, target)
        except ValidationError:
            return
        if shown.changes.empty:
            return
        result = do_revert(actor, target, skip=shown.keys)
        # Never overwritten: every held cell or row is as it was; everything else restored.
        now = table(db, dataset_id)
        names = [c.name for c in SPEC.columns]
        for c in shown.conflicts:
            if c.column is None:
                current = (
                    None if c.row_id not in now else dict(zip(names, now[c.row_id], strict=True))
                )
                assert current == (None if c.now is None else dict(c.now))
            else:
                assert now[c.row_id][names.index(c.column)] == c.now
        for u in result.plan.changes.updates:
            for column, value in u.after.items():
                assert diffs.same_value(now[u.row_id][names.index(column)], value)
        assert not {d.row_id for d in result.plan.changes.deletes} & set(now)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=10))
def test_as_of_every_changeset_matches_the_table_with_reverts_in_the_sequence(
    fresh_db: DatabaseHandle, editor: Actor, operations: list[tuple[Any, ...]]
) -> None:
    dataset_id = upload_dataset(editor, CSV, spec=SPEC)
    snapshots = []
    for op in operations:
        _step(fresh_db, editor, dataset_id, op)
        with fresh_db.app.connect() as conn:
            seq = conn.scalar(text("SELECT seq FROM audit.chain_head"))
        snapshots.append((seq, table(fresh_db, dataset_id)))
    with Session(fresh_db.app) as s:
        for seq, expected in snapshots:
            state = dataset_state(session=s, dataset_id=dataset_id, as_of_seq=seq, exact=True)
            rebuilt = {
                row_id: (image["name"], image["qty"], image["price"], image["note"])
                for row_id, image in sorted(state.items())
            }
            assert rebuilt == expected, seq
        assert verify(session=s).ok


def _table_name(dataset_id: int) -> str:
    with session_scope() as s:
        return str(s.get(Dataset, dataset_id).table_name)  # type: ignore[union-attr]


def test_a_psql_transaction_over_two_datasets_is_reverted_and_listed_per_dataset(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int
) -> None:
    """One out-of-band changeset per dataset: each dataset's History lists its own, and its
    revert touches that dataset only (it once wrote the other table's old values into this one)."""
    a, b = dataset, upload_dataset(editor, CSV, spec=SPEC, name="People B")
    edit(editor, a, ChangeSet(updates=(update(3, {"qty": 3}, {"qty": 30}),)))
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE data.\"{_table_name(a)}\" SET note = 'psql' WHERE _row_id = 1"))
        conn.execute(text(f'UPDATE data."{_table_name(b)}" SET qty = 30 WHERE _row_id = 3'))
        conn.execute(text(f'DELETE FROM data."{_table_name(b)}" WHERE _row_id = 2'))
    with fresh_db.app.connect() as conn:
        by_dataset = dict(
            conn.execute(
                text(
                    "SELECT dataset_id, id FROM audit.changeset WHERE kind = 'out_of_band'"
                    " ORDER BY id"
                )
            ).all()
        )
    assert set(by_dataset) == {a, b}
    with session_scope() as s:
        listed = trail_views.dataset_history(session=s, actor=editor, dataset_id=b).items
    assert by_dataset[b] in [c.id for c in listed]
    do_revert(editor, by_dataset[a])
    now_a = table(fresh_db, a)
    assert (now_a[1][3], now_a[3]) == ("first", ("cy", 30, Decimal("3.25"), "third"))
    assert 2 not in table(fresh_db, b)


def test_a_write_outside_the_portal_while_a_revert_is_written_is_not_overwritten(
    fresh_db: DatabaseHandle, editor: Actor, dataset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every UPDATE bumps ``_version``, so the revert's optimistic check sees a psql write that
    commits between its plan and its write (the plan does not lock the rows)."""
    edited = edit(
        editor, dataset, ChangeSet(updates=(update(1, {"note": "first"}, {"note": "x"}),))
    )
    real_commit = revert.commit

    def psql_then_commit(**kwargs: Any) -> Any:
        with fresh_db.superuser.begin() as conn:
            conn.execute(
                text(f"UPDATE data.\"{_table_name(dataset)}\" SET note = 'psql' WHERE _row_id = 1")
            )
        return real_commit(**kwargs)

    monkeypatch.setattr(revert, "commit", psql_then_commit)
    with pytest.raises(PortalError):
        do_revert(editor, edited)
    assert table(fresh_db, dataset)[1][3] == "psql"


@pytest.mark.parametrize(
    ("zone", "was", "psql_wrote"),
    [
        # Amsterdam kept local mean time, +00:19:32, until 1937: an offset to the second.
        ("Europe/Amsterdam", "1920-03-03 10:00:00", "1920-03-03 11:00:00+00"),
        # 9999-12-31 23:00 UTC, printed at +14:00: "10000-01-01T13:00:00+14:00".
        ("Pacific/Kiritimati", "2024-03-03 10:00:00", "9999-12-31 23:00:00+00"),
        # 0001-01-01 01:00 UTC, printed at -12:00: "0001-12-31T13:00:00-12:00 BC".
        ("Etc/GMT+12", "2024-03-03 10:00:00", "0001-01-01 01:00:00+00"),
    ],
)
def test_a_date_time_written_from_psql_in_any_time_zone_is_reverted(
    fresh_db: DatabaseHandle, editor: Actor, zone: str, was: str, psql_wrote: str
) -> None:
    """The log holds a date and time as the writing session printed it, in that session's time
    zone: the revert reads it back exactly, where it once refused the changeset as holding a
    value that was "no longer a datetime value"."""
    ds = upload_dataset(editor, f"Name,At\nann,{was}\n".encode(), name="Times")
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"SET TIME ZONE '{zone}'"))
        conn.execute(text(f"UPDATE data.\"{_table_name(ds)}\" SET at = '{psql_wrote}'"))
    with fresh_db.app.connect() as conn:
        out_of_band = conn.scalar(text("SELECT max(id) FROM audit.changeset"))
        logged = conn.scalar(
            text("SELECT after->>'at' FROM audit.row_change WHERE changeset_id = :i"),
            {"i": out_of_band},
        )
    assert "+00:00" not in logged  # printed in the session's time zone
    [put_back] = plan(editor, out_of_band).changes.updates
    assert put_back.after["at"] == datetime.fromisoformat(was).replace(tzinfo=UTC)

    do_revert(editor, out_of_band)
    with fresh_db.app.connect() as conn:
        at = conn.scalar(text(f'SELECT at FROM data."{_table_name(ds)}"'))
    assert at == datetime.fromisoformat(was).replace(tzinfo=UTC)
