"""Adding a column to a dataset after its creation: one ``schema`` changeset; every row the table
has gets the value given (or none), and the log alone still gives the table's state after every
changeset — ``verify --data`` finds no drift, a row's history shows the value it got — for every
column type, down to a decimal's scale and a time's fraction. The new column's rules hold from
then on, its writes are captured, and every refusal writes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.reconcile import check_datasets
from audit.trail import dataset_state, row_versions
from portal import writes
from portal.actor import Actor
from portal.datasets import ChangedMeanwhile, dataset_spec, get_dataset
from portal.db import session_scope
from portal.diffs import ChangeSet, RowDelete, RowInsert, RowUpdate
from portal.errors import PermissionDenied, PortalError, ValidationError
from portal.revert import plan_revert, revert
from portal.spec import ColumnSpec, DatasetSpec
from portal.trail_views import row_versions_frame, setup_lines
from tests.conftest import DatabaseHandle
from tests.factories import (
    add_column,
    dataset_rows,
    make_user,
    remove_column,
    table_name,
    upload_dataset,
)

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True),
        ColumnSpec("Qty", "qty", "integer", min=0, max=100),
    )
)
CSV = b"Name,Qty\nann,1\nbob,\ncy,50\n"


@pytest.fixture
def people(fresh_db: DatabaseHandle) -> tuple[Actor, Actor, int]:
    """An admin, an editor, and the editor's dataset of three rows."""
    with Session(fresh_db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
        eddie, _ = make_user(s, role="editor")
    admin, editor = Actor(boss, "Boss", "admin"), Actor(eddie, "Eddie", "editor")
    return admin, editor, upload_dataset(editor, CSV, spec=SPEC, name="People")


_add, _remove = add_column, remove_column


def _no_drift(dataset_id: int) -> None:
    """The table holds exactly what the log says, and the chain is intact."""
    with session_scope() as s:
        [drift] = check_datasets(session=s, dataset_ids=[dataset_id])
    assert drift.ok, drift
    with session_scope() as s:
        assert verify(session=s).ok


def _stored(db: DatabaseHandle, dataset_id: int) -> tuple[Any, ...]:
    """What a refused change must leave as it was: the spec, the changesets, the table's
    columns and rows."""
    table = f"data.{table_name(db.app, dataset_id)}"
    with db.app.connect() as conn:
        return (
            conn.execute(text("SELECT spec, spec_version FROM portal.datasets")).all(),
            conn.scalar(text("SELECT count(*) FROM audit.changeset")),
            list(conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys()),
            conn.execute(text(f"SELECT * FROM {table} ORDER BY _row_id")).all(),
        )


def _changeset(db: DatabaseHandle, changeset_id: int) -> Any:
    with db.app.connect() as conn:
        return conn.execute(
            text("SELECT seq, kind, detail FROM audit.changeset WHERE id = :i"),
            {"i": changeset_id},
        ).one()


def test_a_required_column_with_a_value_for_every_row_is_audited_and_enforced(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, editor, dataset_id = people
    changeset_id = _add(admin, dataset_id, "Region", "text", required=True, fill="North")
    assert dataset_rows(fresh_db.app, dataset_id, "name, region") == [
        ("ann", "North"),
        ("bob", "North"),
        ("cy", "North"),
    ]
    with session_scope() as s:
        dataset = get_dataset(session=s, dataset_id=dataset_id)
        spec = dataset_spec(dataset)
        assert (dataset.spec_version, spec.version) == (2, 2)
    assert spec.columns[-1] == ColumnSpec("Region", "region", "text", required=True)
    seq, kind, detail = _changeset(fresh_db, changeset_id)
    assert (kind, detail["action"], detail["fill"], detail["rows"]) == (
        "schema",
        "add_column",
        "North",
        3,
    )
    assert detail["spec"] == spec.to_json()
    assert setup_lines(detail) == [
        "Column added: “Region” (text, required)",
        "The 3 rows it then had got: “North”",
    ]
    _no_drift(dataset_id)
    with session_scope() as s:
        before = dataset_state(session=s, dataset_id=dataset_id, as_of_seq=seq - 1)
        after = dataset_state(session=s, dataset_id=dataset_id, as_of_seq=seq)
    assert "region" not in before[1]
    assert after[1] == {"name": "ann", "qty": 1, "region": "North"}
    # The table refuses a row without it, and the capture records writes to it.
    table = f"data.{table_name(fresh_db.app, dataset_id)}"
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="region"), fresh_db.app.begin() as c:
        c.execute(text(f"INSERT INTO {table} (name) VALUES ('dee')"))
    with session_scope() as s:
        writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=2,
            changes=ChangeSet(
                updates=(RowUpdate(1, 1, {"region": "North"}, {"region": "South"}),),
                inserts=(RowInsert({"name": "dee", "qty": 3, "region": "East"}),),
            ),
            reason="moved",
        )
    _no_drift(dataset_id)
    with session_scope() as s:
        versions = row_versions(session=s, dataset_id=dataset_id, row_id=1)
        frame = row_versions_frame(session=s, actor=editor, dataset_id=dataset_id, row_id=1)
    assert [(v.change.op, v.changed) for v in versions] == [
        ("insert", {"name": (None, "ann"), "qty": (None, 1)}),
        ("add_column", {"region": (None, "North")}),
        ("update", {"region": ("North", "South")}),
    ]
    assert versions[1].row == {"name": "ann", "qty": 1, "region": "North"}
    assert list(frame["Change"]) == ["bulk insert", "column added", "update"]
    assert frame["Changed cells"][1] == "Region: ∅ → North"


def test_an_optional_column_without_a_value_leaves_the_rows_empty(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    changeset_id = _add(admin, dataset_id, "Note", "text")
    assert dataset_rows(fresh_db.app, dataset_id, "note") == [(None,), (None,), (None,)]
    _no_drift(dataset_id)  # the log's rows have the column, empty
    seq, _, detail = _changeset(fresh_db, changeset_id)
    assert detail["fill"] is None
    assert setup_lines(detail)[1] == "The 3 rows it then had got: —"
    with session_scope() as s:
        assert dataset_state(session=s, dataset_id=dataset_id, as_of_seq=seq)[2] == {
            "name": "bob",
            "qty": None,
            "note": None,
        }
        # A column added empty is no new version of a row.
        assert [v.change.op for v in row_versions(session=s, dataset_id=dataset_id, row_id=2)] == [
            "insert"
        ]


@pytest.mark.parametrize(
    ("column_type", "options", "fill", "stored"),
    [
        ("integer", None, "-1234", -1234),
        ("decimal", None, "1.50", Decimal("1.50")),
        ("decimal", None, "-0.000", Decimal("0.000")),
        ("boolean", None, "yes", True),
        ("date", None, "2024-02-29", date(2024, 2, 29)),
        (
            "datetime",
            None,
            "2024-05-06T07:08:09.5+02:00",
            datetime(2024, 5, 6, 5, 8, 9, 500_000, tzinfo=UTC),
        ),
        ("category", ["low", "high"], "high", "high"),
    ],
)
def test_every_type_of_column_is_read_back_from_the_log_exactly(
    fresh_db: DatabaseHandle,
    people: tuple[Actor, Actor, int],
    column_type: str,
    options: list[str] | None,
    fill: str,
    stored: Any,
) -> None:
    admin, _, dataset_id = people
    _add(admin, dataset_id, "Added", column_type, options=options, fill=fill)
    assert dataset_rows(fresh_db.app, dataset_id, "added") == [(stored,)] * 3
    _no_drift(dataset_id)  # compares the log's values with the table's, a decimal's scale too


def test_a_column_is_added_with_its_decimal_places_or_date_format(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    """The form had neither, and neither can be set once the column is added."""
    admin, _, dataset_id = people
    _add(admin, dataset_id, "Cost", "decimal", scale=2, fill="1.5")
    _add(
        admin,
        dataset_id,
        "Due",
        "date",
        date_format="DD/MM/YYYY",
        fill="05/03/2024",
        **{"expected_version": 2},
    )
    _add(admin, dataset_id, "Since", "date", date_format="YYYY-MM-DD", expected_version=3)
    with session_scope() as s:
        columns = dataset_spec(get_dataset(session=s, dataset_id=dataset_id)).columns[-3:]
    assert [(c.scale, c.format) for c in columns] == [(2, None), (None, "DD/MM/YYYY"), (None, None)]
    assert dataset_rows(fresh_db.app, dataset_id, "cost, due")[0] == (
        Decimal("1.50"),
        date(2024, 3, 5),
    )
    _no_drift(dataset_id)


def test_a_physical_name_taken_gets_a_suffix(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    _add(admin, dataset_id, "Name!", "text", fill="x")
    with session_scope() as s:
        column = dataset_spec(get_dataset(session=s, dataset_id=dataset_id)).columns[-1]
    assert (column.label, column.name) == ("Name!", "name_2")
    assert dataset_rows(fresh_db.app, dataset_id, "name, name_2")[0] == ("ann", "x")
    _no_drift(dataset_id)


def _delete_bob(editor: Actor, dataset_id: int) -> int:
    with session_scope() as s:
        return writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(deletes=(RowDelete(2, 1, {"name": "bob", "qty": None}),)),
            reason="gone",
        ).changeset_id


def test_a_delete_from_before_an_optional_column_reverts_with_the_column_empty(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, editor, dataset_id = people
    deleted = _delete_bob(editor, dataset_id)
    _add(admin, dataset_id, "Region", "text", fill="North")
    with session_scope() as s:  # the preview says so
        assert plan_revert(session=s, actor=admin, changeset_id=deleted).added == ("Region",)
    with session_scope() as s:
        revert(session=s, actor=admin, changeset_id=deleted, reason="back")
    assert dataset_rows(fresh_db.app, dataset_id, "_row_id, name, region") == [
        (1, "ann", "North"),
        (2, "bob", None),
        (3, "cy", "North"),
    ]
    _no_drift(dataset_id)


def test_reverting_a_delete_from_before_a_required_column_is_refused_clearly(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, editor, dataset_id = people
    with session_scope() as s:
        deleted = writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(deletes=(RowDelete(2, 1, {"name": "bob", "qty": None}),)),
            reason="gone",
        ).changeset_id
    _add(admin, dataset_id, "Region", "text", required=True, fill="North")
    with pytest.raises(ValidationError, match="Region") as refused, session_scope() as s:
        revert(session=s, actor=admin, changeset_id=deleted, reason="back")
    assert "Traceback" not in str(refused.value)
    assert dataset_rows(fresh_db.app, dataset_id, "name") == [("ann",), ("cy",)]


@pytest.mark.parametrize(
    ("who", "label", "column_type", "given", "refusal"),
    [
        ("editor", "Region", "text", {}, "Only admins"),
        ("admin", "Region", "text", {"expected_version": 2}, "Someone changed the columns"),
        ("admin", "Region", "text", {"reason": " "}, "Say why"),
        ("admin", "  ", "text", {}, "Give the new column a label"),
        ("admin", "L" * 121, "text", {}, "The label is 121 characters; use at most 120"),
        ("admin", " QTY ", "text", {}, "“Qty” is a column of this dataset already"),
        ("admin", "Re\u200bgion", "text", {}, "invisible or control character"),
        ("admin", "Region", "text", {"required": True}, "need a value in it"),
        ("admin", "Region", "text", {"required": True, "fill": "  "}, "need a value in it"),
        ("admin", "Count", "integer", {"fill": "many"}, "does not fit “Count”"),
        ("admin", "Level", "category", {}, "needs at least one option. Nothing was changed"),
        ("admin", "Level", "category", {"options": ["a"], "fill": "b"}, "does not fit “Level”"),
        ("admin", "Level", "text", {"options": ["a"]}, "Only a category column"),
        ("admin", "Level", "money", {}, "Unknown type 'money'"),
        ("admin", "Cost", "decimal", {"scale": 2, "fill": "1.234"}, "does not fit “Cost”"),
        ("admin", "Cost", "integer", {"scale": 2}, "only a decimal column can have decimal"),
        ("admin", "Due", "text", {"date_format": "DD/MM/YYYY"}, "only a date column can have"),
        ("admin", "Due", "date", {"date_format": "DD/MM/YYYY", "fill": "13/13/2024"}, "does not"),
    ],
)
def test_a_refused_column_writes_nothing(
    fresh_db: DatabaseHandle,
    people: tuple[Actor, Actor, int],
    who: str,
    label: str,
    column_type: str,
    given: dict[str, Any],
    refusal: str,
) -> None:
    admin, editor, dataset_id = people
    before = _stored(fresh_db, dataset_id)
    actor = admin if who == "admin" else editor
    error = PermissionDenied if who == "editor" else ValidationError
    with pytest.raises(error, match=refusal) as refused:
        _add(actor, dataset_id, label, column_type, **given)
    if "Someone changed" in refusal:
        assert isinstance(refused.value, ChangedMeanwhile)
    assert _stored(fresh_db, dataset_id) == before


def test_a_removed_column_leaves_the_table_but_not_the_log(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, editor, dataset_id = people
    with session_scope() as s:  # a value of the column changed before it goes
        edited = writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(updates=(RowUpdate(1, 1, {"qty": 1}, {"qty": 7}),)),
            reason="recount",
        ).changeset_id
    changeset_id = _remove(admin, dataset_id, "qty", expected_version=1)
    table = f"data.{table_name(fresh_db.app, dataset_id)}"
    with fresh_db.app.connect() as conn:
        columns = conn.execute(text(f"SELECT * FROM {table} LIMIT 0")).keys()
        constraints = conn.execute(
            text("SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"),
            {"t": table},
        ).scalars()
        assert list(columns) == ["_row_id", "_version", "name"]
        assert not [c for c in constraints if "qty" in c]  # its min and max went with it
    with session_scope() as s:
        spec = dataset_spec(get_dataset(session=s, dataset_id=dataset_id))
    assert (spec.version, spec.names) == (2, ["name"])
    seq, kind, detail = _changeset(fresh_db, changeset_id)
    assert (kind, detail["action"], detail["column"]["name"], detail["rows_with_value"]) == (
        "schema",
        "remove_column",
        "qty",
        2,
    )
    assert setup_lines(detail) == [
        "Column removed: “Qty” (integer, optional)",
        "Its values in 2 rows left the table (the log keeps them)",
    ]
    _no_drift(dataset_id)  # the log's rows lost it too
    with session_scope() as s:
        before = dataset_state(session=s, dataset_id=dataset_id, as_of_seq=seq - 1)
        after = dataset_state(session=s, dataset_id=dataset_id, as_of_seq=seq)
        versions = row_versions(session=s, dataset_id=dataset_id, row_id=1)
        frame = row_versions_frame(session=s, actor=editor, dataset_id=dataset_id, row_id=1)
    assert before[1] == {"name": "ann", "qty": 7}
    assert after[1] == {"name": "ann"}
    assert [(v.change.op, v.changed) for v in versions][1:] == [
        ("update", {"qty": (1, 7)}),
        ("remove_column", {"qty": (7, None)}),
    ]
    assert list(frame["Change"]) == ["bulk insert", "update", "column removed"]
    assert frame["Changed cells"][2] == "Qty (removed): 7 → ∅"
    # Writes after it are captured without it; reverting the edit of the removed column
    # finds nothing left to revert.
    with session_scope() as s:
        writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=2,
            changes=ChangeSet(updates=(RowUpdate(2, 1, {"name": "bob"}, {"name": "rob"}),)),
            reason="typo",
        )
    _no_drift(dataset_id)
    with (
        pytest.raises(ValidationError, match="changed “Qty”, which an admin removed"),
        session_scope() as s,
    ):
        revert(session=s, actor=admin, changeset_id=edited, reason="back")


def test_a_column_removed_and_added_again_under_its_label_is_a_new_column(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    """Under a physical name of its own: the log's older rows hold the removed column's values
    under its name, and History showed them under the new column's label."""
    admin, editor, dataset_id = people
    deleted = _delete_bob(editor, dataset_id)
    _remove(admin, dataset_id, "qty", expected_version=1)
    _add(admin, dataset_id, "Qty", "text", fill="some", expected_version=2)
    assert dataset_rows(fresh_db.app, dataset_id, "name, qty_2") == [
        ("ann", "some"),
        ("cy", "some"),
    ]
    _no_drift(dataset_id)
    with session_scope() as s:  # bob comes back without his old qty, which was an integer
        revert(session=s, actor=admin, changeset_id=deleted, reason="back")
    assert dataset_rows(fresh_db.app, dataset_id, "name, qty_2") == [
        ("ann", "some"),
        ("bob", None),
        ("cy", "some"),
    ]
    _no_drift(dataset_id)
    with session_scope() as s:
        frame = row_versions_frame(session=s, actor=editor, dataset_id=dataset_id, row_id=1)
    assert list(frame["Changed cells"])[1:] == ["Qty (removed): 1 → ∅", "Qty: ∅ → some"]


@pytest.mark.parametrize(
    ("who", "name", "given", "refusal"),
    [
        ("editor", "qty", {}, "Only admins"),
        ("admin", "qty", {"expected_version": 2}, "Someone changed the columns"),
        ("admin", "qty", {"reason": ""}, "Say why you are removing"),
        ("admin", "price", {}, "has no column 'price'"),
    ],
)
def test_a_refused_removal_writes_nothing(
    fresh_db: DatabaseHandle,
    people: tuple[Actor, Actor, int],
    who: str,
    name: str,
    given: dict[str, Any],
    refusal: str,
) -> None:
    admin, editor, dataset_id = people
    before = _stored(fresh_db, dataset_id)
    with pytest.raises(PortalError, match=refusal):
        _remove(admin if who == "admin" else editor, dataset_id, name, **given)
    assert _stored(fresh_db, dataset_id) == before


def test_a_column_removed_empty_says_it_held_no_values(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    _add(admin, dataset_id, "Note", "text")
    changeset_id = _remove(admin, dataset_id, "note", expected_version=2)
    assert setup_lines(_changeset(fresh_db, changeset_id).detail)[1] == "It held no values"
    _no_drift(dataset_id)


def test_the_last_column_cannot_be_removed(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    _remove(admin, dataset_id, "qty")
    with pytest.raises(ValidationError, match="“Name” is the only column of “People”"):
        _remove(admin, dataset_id, "name", expected_version=2)
