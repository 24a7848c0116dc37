"""What each changeset did, in words, beside its kind in the changeset lists (Audit, History),
in a changeset's own view and in the trail's exports: an upload's append, replace or new
dataset, a column added or removed, rules or settings changed, the changeset a revert reverts —
read from the sealed detail, for every kind of change the portal makes."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit import search
from audit.search import TrailFilter
from portal import datasets, revert, rule_changes, trail_views, uploads, writes
from portal.actor import Actor
from portal.db import session_scope
from portal.diffs import ChangeSet, RowDelete, RowInsert, RowUpdate
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import add_column, data_table, make_user, remove_column, upload_dataset

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (ColumnSpec("Name", "name", "text", required=True), ColumnSpec("Qty", "qty", "integer"))
)
CSV = b"Name,Qty\nann,1\nbob,2\n"


def _upload(actor: Actor, dataset_id: int, mode: str, rows: int | None = None) -> None:
    data = b"Name,Qty\ncy,3\n"
    parsed = uploads.read_file(data)
    uploads.import_file(
        actor=actor,
        filename="more.csv",
        data=data,
        parsed=parsed,
        spec=SPEC,
        result=uploads.check(parsed, SPEC),
        target=uploads.ExistingDataset(dataset_id, mode, expected_rows=rows),  # type: ignore[arg-type]
        reason=f"an upload to {mode}",
    )


def _every_kind_of_change(db: DatabaseHandle) -> tuple[int, Actor, int]:
    """A dataset that went through every change the portal makes, oldest first."""
    with Session(db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
    admin = Actor(boss, "Boss", "admin")
    dataset_id = upload_dataset(admin, CSV, spec=SPEC, name="People")
    _upload(admin, dataset_id, "append")
    _upload(admin, dataset_id, "replace", rows=3)
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id)
        [(row_id, *_)] = read.rows
        edit = writes.commit(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(
                updates=(RowUpdate(row_id, read.versions[row_id], {"qty": 3}, {"qty": 4}),)
            ),
            reason="a typo",
        ).changeset_id
    with session_scope() as s:
        revert.revert(session=s, actor=admin, changeset_id=edit, reason="it was right")
    with session_scope() as s:
        seq = search.changeset_detail(session=s, changeset_id=edit).summary.seq
    with session_scope() as s:
        rule_changes.change_rules(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            spec=DatasetSpec(
                (SPEC.columns[0], ColumnSpec("Qty", "qty", "integer", min=0)), version=1
            ),
            expected_version=1,
            reason="no negative counts",
        )
    add_column(admin, dataset_id, "Note **bold**", expected_version=2)
    with session_scope() as s:
        spec = datasets.dataset_spec(datasets.get_dataset(session=s, dataset_id=dataset_id))
    remove_column(admin, dataset_id, spec.columns[-1].name, expected_version=3)
    with session_scope() as s:
        datasets.describe_dataset(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            name="Staff",
            description="who works here",
            expected=("People", ""),
            reason="clearer",
        )
    with session_scope() as s:
        datasets.set_reason_required(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            required=False,
            expected=True,
            reason="small fixes need none",
        )
    with db.owner.begin() as conn:  # around the portal
        conn.execute(text(f"UPDATE {data_table(db.app, dataset_id)} SET qty = 5"))
    return dataset_id, admin, seq


EXPECTED = [  # newest first, as the lists show them
    ("out_of_band", ""),
    ("dataset", "reasons now optional"),
    ("dataset", "renamed; description changed"),
    ("schema", "column “Note **bold**” removed"),
    ("schema", "column “Note **bold**” added"),
    ("schema", "column rules changed"),
    ("revert", "reverts #{seq}"),
    ("edit", "“Qty” changed"),
    ("upload", "all rows replaced"),
    ("upload", "rows added"),
    ("upload", "new dataset"),
]


def test_every_change_says_what_it_did_in_the_lists_its_view_and_the_exports(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, admin, seq = _every_kind_of_change(fresh_db)
    expected = [(kind, what.format(seq=seq)) for kind, what in EXPECTED]
    with session_scope() as s:
        page = search.search_changesets(session=s, trail_filter=TrailFilter(dataset_id=dataset_id))
    listed = [(c.kind, trail_views.changeset_what(c)) for c in page.items]
    assert listed == expected
    with session_scope() as s:  # a changeset's own view reads the same words
        opened = [
            trail_views.changeset_what(
                search.changeset_detail(session=s, changeset_id=c.id).summary
            )
            for c in page.items
        ]
    assert opened == [what for _, what in expected]

    with session_scope() as s:
        exported = trail_views.export_trail(
            session=s, actor=admin, trail_filter=TrailFilter(dataset_id=dataset_id)
        )
    rows = list(csv.DictReader(io.StringIO(exported.data.decode("utf-8-sig"))))
    assert [(r["kind"], r["what"]) for r in rows] == expected
    # A set-up or column change's own lines too, as its view lists them (the "what" says only
    # "column rules changed"): which rule, before -> after.
    details = {r["kind"] + " " + r["what"]: r["details"] for r in rows if r["details"]}
    assert details == {
        "dataset reasons now optional": "A reason for every change: required → optional",
        "dataset renamed; description changed": "Name: “People” → “Staff”; Description: (none)"
        " → “who works here”",
        "schema column “Note **bold**” removed": "Column removed: “Note **bold**” (text, "
        "optional); It held no values",
        "schema column “Note **bold**” added": "Column added: “Note **bold**” (text, optional); "
        "The 1 row it then had got: —",
        "schema column rules changed": "Qty · min: (none) → 0",
        "upload new dataset": "Created “People”; 2 columns: Name, Qty; A reason for every "
        "change: required",
    }
    with session_scope() as s:
        exported = trail_views.export_trail(
            session=s, actor=admin, trail_filter=TrailFilter(dataset_id=dataset_id), fmt="json"
        )
    records = json.loads(exported.data)
    assert [(r["kind"], r["what"]) for r in records] == expected
    assert [r["details"] for r in records if r["kind"] == "schema"] == [
        ["Column removed: “Note **bold**” (text, optional)", "It held no values"],
        ["Column added: “Note **bold**” (text, optional)", "The 1 row it then had got: —"],
        ["Qty · min: (none) → 0"],
    ]


def test_a_detail_the_words_do_not_cover_leaves_the_what_empty() -> None:
    """A kind or action added to the log before its words never stops a list."""
    base: dict[str, Any] = {
        "id": 1,
        "seq": 1,
        "committed_at": None,
        "dataset_id": 1,
        "dataset_name": "x",
        "actor_username": "a",
        "actor_display_name": "a",
        "reason": "",
        "inserted": 0,
        "updated": 0,
        "deleted": 0,
    }
    for kind, facts in [
        ("upload", {"mode": "merge"}),
        ("schema", {"action": "retype_column"}),
        ("dataset", {"action": "archive"}),
        ("revert", {"reverts": None}),
        ("new_kind", {"action": "create"}),
        ("upload", {}),
        ("edit", {}),  # committed before edits named their columns
        ("edit", {"columns": []}),  # rows added or deleted only: the counts say so
        ("edit", {"columns": "Qty"}),
    ]:
        summary = search.ChangesetSummary(kind=kind, facts=facts, **base)
        assert trail_views.changeset_what(summary) == ""


def test_an_edit_names_the_columns_it_changed_a_few_at_most() -> None:
    assert trail_views.edited_columns(["Qty"]) == "“Qty” changed"
    assert trail_views.edited_columns(["Qty", "Price"]) == "“Qty” and “Price” changed"
    assert trail_views.edited_columns(["A", "B", "C"]) == "“A”, “B” and “C” changed"
    five = trail_views.edited_columns(["A", "B", "C", "D", "E"])
    assert five == "“A”, “B”, “C” and 2 more changed"


def test_an_edit_that_only_adds_or_deletes_rows_names_no_column(fresh_db: DatabaseHandle) -> None:
    with Session(fresh_db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
    admin = Actor(boss, "Boss", "admin")
    dataset_id = upload_dataset(admin, CSV, spec=SPEC, name="People")
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id)
        [row_id, *_] = [r[0] for r in read.rows]
        edit = writes.commit(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(
                inserts=(RowInsert({"name": "cy", "qty": 3}),),
                deletes=(RowDelete(row_id, read.versions[row_id], {"name": "ann", "qty": 1}),),
            ),
            reason="one in, one out",
        ).changeset_id
    with session_scope() as s:
        summary = search.changeset_detail(session=s, changeset_id=edit).summary
    assert (summary.inserted, summary.deleted) == (1, 1)
    assert trail_views.changeset_what(summary) == ""
