"""The editor's state -> ChangeSet (``portal.diffs``): forged and malformed states, every rule,
pending changes carried between windows, huge states refused quickly, and a property test that
applying the ChangeSet gives the frame Streamlit itself shows after the same edits."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from streamlit.elements.lib.column_config_utils import determine_dataframe_schema
from streamlit.elements.widgets.data_editor import _apply_dataframe_edits

from portal import diffs
from portal.csv_safe import csv_bytes
from portal.diffs import (
    ChangeSet,
    EditProblem,
    InvalidEdits,
    RowDelete,
    RowInsert,
    RowUpdate,
    Window,
)
from portal.errors import PermissionDenied
from portal.spec import ColumnSpec, DatasetSpec, validate

SPEC = DatasetSpec(
    (
        ColumnSpec("Code", "code", "text", required=True, unique=True, regex=r"[A-Z]{2}[0-9]+"),
        ColumnSpec("Qty", "qty", "integer", min=0, max=1000),
        ColumnSpec("Price", "price", "decimal", scale=2, min=Decimal("0")),
        ColumnSpec("Active", "active", "boolean"),
        ColumnSpec("Since", "since", "date"),
        ColumnSpec("Seen at", "seen_at", "datetime"),
        ColumnSpec("Size", "size", "category", options=("S", "M", "L")),
        ColumnSpec("Note", "note", "text", max_length=10),
    )
)
ROWS: list[tuple[Any, ...]] = [
    (
        10,
        "AB1",
        1,
        Decimal("1.50"),
        True,
        date(2024, 1, 1),
        datetime(2024, 1, 1, 12, tzinfo=UTC),
        "S",
        "one",
    ),
    (11, "AB2", 2, Decimal("2.00"), False, None, None, "M", None),
    (12, "AB3", None, None, None, None, None, None, None),
]
VERSIONS = {10: 3, 11: 1, 12: 7}


def window(
    pending: ChangeSet | None = None,
    rows: Sequence[tuple[Any, ...]] = ROWS,
    spec: DatasetSpec = SPEC,
) -> Window:
    base = diffs.editor_frame(spec, rows)
    versions = {int(r[0]): VERSIONS.get(int(r[0]), 1) for r in rows}
    return diffs.make_window(spec, base, versions, pending)


def build(state: object, win: Window | None = None, *, may_edit: bool = True) -> ChangeSet:
    return diffs.build_changeset(win or window(), state, may_edit=may_edit)


def problems(state: object, win: Window | None = None) -> tuple[EditProblem, ...]:
    with pytest.raises(InvalidEdits) as caught:
        build(state, win)
    assert "nothing was written" in str(caught.value)
    return caught.value.problems


def one_problem(state: object, win: Window | None = None) -> EditProblem:
    [problem] = problems(state, win)
    return problem


# ---------------------------------------------------------------------------------------------
# Plain edits
# ---------------------------------------------------------------------------------------------


def test_an_empty_or_missing_state_is_no_change() -> None:
    assert build(None).empty
    assert build({}).empty
    assert build({"edited_rows": {}, "added_rows": [], "deleted_rows": []}).empty


def test_edits_deletes_and_inserts_become_one_changeset() -> None:
    changes = build(
        {
            "edited_rows": {0: {"qty": 5, "note": "changed"}, "2": {"price": 9.5}},
            "added_rows": [{"code": "ZZ9", "qty": 3}],
            "deleted_rows": [1],
        }
    )
    assert changes.updates == (
        RowUpdate(10, 3, {"qty": 1, "note": "one"}, {"qty": 5, "note": "changed"}),
        RowUpdate(12, 7, {"price": None}, {"price": Decimal("9.5")}),
    )
    [delete] = changes.deletes
    assert (delete.row_id, delete.version) == (11, 1)
    assert delete.before == {
        "code": "AB2",
        "qty": 2,
        "price": Decimal("2.00"),
        "active": False,
        "since": None,
        "seen_at": None,
        "size": "M",
        "note": None,
    }
    assert changes.inserts == (
        RowInsert(
            {
                "code": "ZZ9",
                "qty": 3,
                "price": None,
                "active": None,
                "since": None,
                "seen_at": None,
                "size": None,
                "note": None,
            }
        ),
    )
    assert changes.summary() == "3 cells in 2 rows changed, 1 row added, 1 row deleted"
    assert ChangeSet(inserts=changes.inserts).summary() == "1 row added"
    assert ChangeSet(updates=changes.updates[:1]).summary() == "2 cells in 1 row changed"
    assert ChangeSet(deletes=changes.deletes).summary() == "1 row deleted"
    assert ChangeSet().summary() == "no changes"
    assert changes.row_ids() == {10, 11, 12}
    assert [(c.row_id, c.column, c.before, c.after) for c in diffs.cell_changes(changes, SPEC)] == [
        (10, "Qty", 1, 5),
        (10, "Note", "one", "changed"),
        (12, "Price", None, Decimal("9.5")),
    ]


def test_an_insert_takes_the_column_defaults_it_was_not_given() -> None:
    spec = DatasetSpec(
        (
            ColumnSpec("Name", "name", "text"),
            ColumnSpec("Qty", "qty", "integer", required=True, default=1),
        )
    )
    changes = build({"added_rows": [{"name": "x"}]}, window(rows=[], spec=spec))
    assert changes.inserts == (RowInsert({"name": "x", "qty": 1}),)


def test_edits_that_restore_the_committed_value_are_dropped() -> None:
    changes = build(
        {
            "edited_rows": {
                0: {"qty": 1, "price": 1.5, "active": True, "since": "2024-01-01"},
                1: {"price": "2", "note": None, "qty": 2.0},
                2: {"qty": None, "note": ""},
            }
        }
    )
    assert changes.empty


def test_decimals_equal_in_value_are_the_same_whatever_their_scale() -> None:
    assert diffs.same_value(Decimal("1.5"), Decimal("1.50"))
    assert not diffs.same_value(Decimal("1.5"), Decimal("1.51"))
    assert not diffs.same_value(True, 1)
    assert not diffs.same_value(None, "")
    assert diffs.same_value(None, None)
    assert build({"edited_rows": {0: {"price": Decimal("1.500")}}}).empty
    [update] = build({"edited_rows": {0: {"price": 1.51}}}).updates
    assert update.after == {"price": Decimal("1.51")}


@pytest.mark.parametrize(
    ("scale", "sent", "stored"),
    [
        (2, "1.5", "1.50"),
        (2, 1.5, "1.50"),
        (2, "1.500", "1.50"),
        (2, 3, "3.00"),
        (2, "-0", "0.00"),
        (None, "1.50", "1.5"),
        (None, "1.500000", "1.5"),
        (None, "0.000", "0"),
        (None, "-0.0", "0"),
        (None, "100.0", "100"),
        (None, 1e-7, "0.0000001"),
        (None, "1" * 38 + "." + "1" * 37 + "0", "1" * 38 + "." + "1" * 37),
    ],
)
def test_an_edited_decimal_is_written_as_an_upload_writes_it(
    scale: int | None, sent: object, stored: str
) -> None:
    """What the table keeps of a decimal (its digits after the point, as PostgreSQL's numeric
    keeps them) is what an upload of the same value keeps: the column's scale, or without one
    no trailing zeros."""
    spec = DatasetSpec((ColumnSpec("Rate", "rate", "decimal", scale=scale),))
    (insert,) = build({"added_rows": [{"rate": sent}]}, window(rows=[], spec=spec)).inserts
    assert format(insert.values["rate"], "f") == stored
    (update,) = build(
        {"edited_rows": {0: {"rate": sent}}}, window(rows=[(1, Decimal(7))], spec=spec)
    ).updates
    assert format(update.after["rate"], "f") == stored


def test_a_new_row_takes_a_decimal_default_as_an_upload_writes_it() -> None:
    spec = DatasetSpec(
        (
            ColumnSpec("Name", "name", "text"),
            ColumnSpec("Price", "price", "decimal", scale=2, default="1.5"),
            ColumnSpec("Rate", "rate", "decimal", default="2.50"),
        )
    )
    (insert,) = build({"added_rows": [{"name": "x"}]}, window(rows=[], spec=spec)).inserts
    assert [format(insert.values[n], "f") for n in ("price", "rate")] == ["1.50", "2.5"]


def test_a_decimal_comma_typed_in_the_grid_is_told_how_to_write_it_there() -> None:
    """The upload's hint, "for a decimal comma choose that option", names an option the grid
    does not have: typed in the grid, the number is to be written with a point."""
    problem = one_problem({"edited_rows": {0: {"price": "1,50"}}})
    assert problem.message.startswith("“1,50” is not a number: write it like 1234.56")
    assert "choose that option on the Upload page" in problem.message
    spec = DatasetSpec((ColumnSpec("Price", "price", "decimal"),))
    result = validate(spec, pd.DataFrame({"Price": ["1,50"]}))
    assert result.errors[0].message == problem.message  # the same words as an upload's


def test_an_edited_and_deleted_row_is_a_delete() -> None:
    changes = build({"edited_rows": {0: {"qty": 99}}, "deleted_rows": [0]})
    assert changes.updates == ()
    assert [d.row_id for d in changes.deletes] == [10]
    assert changes.deletes[0].before["qty"] == 1  # the committed value, not the edit


def test_a_position_deleted_twice_or_edited_twice_counts_once() -> None:
    changes = build({"edited_rows": {0: {"qty": 4}, "0": {"note": "x"}}, "deleted_rows": [1, 1]})
    assert [u.after for u in changes.updates] == [{"qty": 4, "note": "x"}]
    assert [d.row_id for d in changes.deletes] == [11]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2024-05-01", date(2024, 5, 1)),
        ("2024-05-01T00:00:00.000", date(2024, 5, 1)),
        ("2024-05-01T00:00:00", date(2024, 5, 1)),
        ("2024-05-01T00:00", date(2024, 5, 1)),
        ("2024-05-01T00:00:00.000Z", date(2024, 5, 1)),
        (date(2024, 5, 1), date(2024, 5, 1)),
        (pd.Timestamp("2024-05-01"), date(2024, 5, 1)),
    ],
)
def test_dates_arrive_as_the_grid_sends_them(sent: object, expected: date) -> None:
    [update] = build({"edited_rows": {0: {"since": sent}}}).updates
    assert update.after == {"since": expected}


@pytest.mark.parametrize(
    "sent",
    [
        "2024-05-01T10:30:00.000",
        "2024-05-01T00:00:00+02:00",
        "May 1",
        # Not a midnight as the grid writes one, and refused by an upload too.
        "2024-05-01T",
        "2024-05-01T0",
        "2024-05-01T::",
        "2024-05-01TZ",
        "2024-05-01T00:00:00:00",
        "\u20032024-05-01T00:00:00",  # an em space: an upload strips spaces and tabs only
        "2024-05-01T00:00:00\u2003",
    ],
)
def test_a_date_with_a_time_of_day_or_in_another_shape_is_refused(sent: str) -> None:
    problem = one_problem({"edited_rows": {0: {"since": sent}}})
    assert (problem.where, problem.column, problem.value) == ("row 10", "Since", sent)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2024-05-01T10:30:00.000", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        ("2024-05-01T10:30:00", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        ("2024-05-01T10:30:00Z", datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
        ("2024-05-01T10:30:00.250+02:00", datetime(2024, 5, 1, 8, 30, 0, 250_000, tzinfo=UTC)),
        ("2024-05-01T10:30:00-05:30", datetime(2024, 5, 1, 16, 0, tzinfo=UTC)),
        (pd.Timestamp("2024-05-01T10:30:00", tz="UTC"), datetime(2024, 5, 1, 10, 30, tzinfo=UTC)),
    ],
)
def test_datetimes_read_with_or_without_an_offset(sent: object, expected: datetime) -> None:
    [update] = build({"edited_rows": {1: {"seen_at": sent}}}).updates
    assert update.after == {"seen_at": expected}
    # The same instant written another way is no change.
    win = window(rows=[(11, "AB2", 2, None, None, None, expected, None, None)])
    assert build({"edited_rows": {0: {"seen_at": sent}}}, win).empty


# ---------------------------------------------------------------------------------------------
# Forged and malformed states
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [-1, -3, 3, 4, 10**6, "-1", "3"])
def test_positions_outside_the_window_are_refused_not_wrapped(position: object) -> None:
    for state in (
        {"edited_rows": {position: {"qty": 5}}},
        {"deleted_rows": [position]},
    ):
        problem = one_problem(state)
        assert problem.where == f"row position {int(position)}"  # type: ignore[call-overload]
        assert "rows 0 to 2 only" in problem.message


def test_every_out_of_range_position_is_named() -> None:
    found = problems({"edited_rows": {-1: {"qty": 1}, 5: {"qty": 2}}, "deleted_rows": [7]})
    assert [p.where for p in found] == ["row position -1", "row position 5", "row position 7"]


def test_an_empty_window_takes_no_positions() -> None:
    problem = one_problem({"deleted_rows": [0]}, window(rows=[]))
    assert "shows no rows" in problem.message


@pytest.mark.parametrize(
    "state",
    [
        [],
        "edited_rows",
        42,
        {"edited_rows": [{"qty": 1}]},
        {"edited_rows": {True: {"qty": 1}}},
        {"edited_rows": {False: {"qty": 1}}},
        {"edited_rows": {0.0: {"qty": 1}}},
        {"edited_rows": {"0.0": {"qty": 1}}},
        {"edited_rows": {"one": {"qty": 1}}},
        {"edited_rows": {"+1": {"qty": 1}}},
        {"edited_rows": {"²": {"qty": 1}}},
        {"edited_rows": {"--1": {"qty": 1}}},
        {"edited_rows": {" 1": {"qty": 1}}},
        {"edited_rows": {"١": {"qty": 1}}},
        {"edited_rows": {"9" * 40: {"qty": 1}}},
        {"edited_rows": {None: {"qty": 1}}},
        {"edited_rows": {0: [("qty", 1)]}},
        {"edited_rows": {0: {1: 1}}},
        {"edited_rows": {0: "qty=1"}},
        {"added_rows": {"code": "AB9"}},
        {"added_rows": ["AB9"]},
        {"added_rows": [{0: "AB9"}]},
        {"added_rows": "AB9"},
        {"deleted_rows": [True]},
        {"deleted_rows": [0.0]},
        {"deleted_rows": ["x"]},
        {"deleted_rows": [[0]]},
        {"deleted_rows": 0.5},
        {"deleted_rows": {0: 0}},
    ],
    ids=repr,
)
def test_malformed_states_are_refused_whole(state: object) -> None:
    problem = one_problem(state)
    assert problem.where == "the grid"
    assert "malformed" in problem.message


def test_positions_arrive_as_ints_numpy_ints_or_their_decimal_strings() -> None:
    import numpy as np

    changes = build({"edited_rows": {np.int64(0): {"qty": 7}, "1": {"qty": 8}}})
    assert [(u.row_id, u.after) for u in changes.updates] == [(10, {"qty": 7}), (11, {"qty": 8})]
    assert [d.row_id for d in build({"deleted_rows": [np.int32(2), "0"]}).deletes] == [10, 12]


@pytest.mark.parametrize("name", ["_row_id", "_index", "_version"])
def test_row_ids_and_versions_cannot_be_edited_or_given(name: str) -> None:
    problem = one_problem({"edited_rows": {0: {name: 99}}})
    assert (problem.where, problem.column, problem.value) == ("row 10", name, "99")
    assert "cannot be edited" in problem.message
    problem = one_problem({"added_rows": [{"code": "ZZ1", name: 5}]})
    assert (problem.where, problem.column) == ("new row 1", name)


def test_unknown_columns_are_refused() -> None:
    problem = one_problem({"edited_rows": {1: {"Qty": 3}}})  # the label, not the name
    assert (problem.where, problem.column) == ("row 11", "Qty")
    assert "no such column" in problem.message
    problem = one_problem({"added_rows": [{"code": "ZZ1", "owner": "me"}]})
    assert (problem.where, problem.column, problem.value) == ("new row 1", "owner", "me")


@pytest.mark.parametrize(
    ("column", "sent", "label"),
    [
        ("qty", "many", "Qty"),
        ("qty", 1.5, "Qty"),
        ("qty", True, "Qty"),
        ("qty", [1], "Qty"),
        ("qty", {"v": 1}, "Qty"),
        ("qty", 2**70, "Qty"),
        ("price", "1.5.0", "Price"),
        ("price", float("nan"), "Price"),  # NaN is read as missing: not a type error…
        ("price", float("inf"), "Price"),
        ("active", "perhaps", "Active"),
        ("active", 2, "Active"),
        ("since", 20240501, "Since"),
        ("since", "2024-02-30", "Since"),
        ("seen_at", "yesterday", "Seen at"),
        ("seen_at", 1714557000, "Seen at"),
        ("code", 12, "Code"),
        ("note", 3.5, "Note"),
        ("note", "a\x00b", "Note"),
    ],
)
def test_values_of_the_wrong_type_are_refused(column: str, sent: object, label: str) -> None:
    state = {"edited_rows": {0: {column: sent}}}
    if isinstance(sent, float) and sent != sent:
        assert build(state).updates[0].after == {"price": None}  # …but an emptied cell
        return
    problem = one_problem(state)
    assert (problem.where, problem.column) == ("row 10", label)
    assert problem.message


@pytest.mark.parametrize(
    ("column", "sent", "label", "words"),
    [
        ("code", None, "Code", "required"),
        ("code", "", "Code", "required"),
        ("code", "ab1", "Code", "pattern"),
        ("qty", -1, "Qty", "minimum 0"),
        ("qty", 1001, "Qty", "maximum 1000"),
        ("price", 1.234, "Price", "decimal"),
        ("price", "-0.01", "Price", "minimum 0"),
        ("size", "XL", "Size", "one of"),
        ("size", "s", "Size", "one of"),
        ("note", "x" * 11, "Note", "10"),
    ],
)
def test_every_rule_is_checked_again(column: str, sent: object, label: str, words: str) -> None:
    problem = one_problem({"edited_rows": {1: {column: sent}}})
    assert (problem.where, problem.column) == ("row 11", label)
    assert words in problem.message.lower()
    assert label in str(problem)
    assert "row 11" in str(problem)


def test_a_required_column_left_out_of_a_new_row_is_refused() -> None:
    problem = one_problem({"added_rows": [{"qty": 3}]})
    assert (problem.where, problem.column) == ("new row 1", "Code")
    assert "required" in problem.message.lower()


def test_every_problem_is_collected_with_its_row_and_column() -> None:
    with pytest.raises(InvalidEdits) as caught:
        build(
            {
                "edited_rows": {0: {"qty": -5, "note": "far too long"}, 2: {"owner": 1}},
                "added_rows": [{"qty": 3}, {"code": "AB1", "size": "XXL"}],
            }
        )
    assert [(p.where, p.column) for p in caught.value.problems] == [
        ("row 10", "Qty"),
        ("row 10", "Note"),
        ("row 12", "owner"),
        ("new row 1", "Code"),
        ("new row 2", "Size"),
        ("new row 2", "Code"),  # AB1 is row 10's
    ]
    message = str(caught.value)
    assert message.startswith("6 changes cannot be saved: row 10, Qty (“-5”)")
    assert "(and 3 more)" in message


def test_a_lone_surrogate_is_listed_as_its_escape() -> None:
    # A browser's JSON can carry a lone UTF-16 surrogate, which no UTF-8 text can hold: each
    # problem shows it escaped, so the list can be drawn (Arrow) and downloaded (CSV).
    found = problems(
        {
            "edited_rows": {0: {"note": "\ud800"}, 1: {"_index": "x\udfff"}},
            "added_rows": [{"code": "ZZ1", "\ud800": "y\ud800"}],
        }
    )
    assert [(p.where, p.column, p.value) for p in found] == [
        ("row 10", "Note", "\\ud800"),
        ("row 11", "_index", "x\\udfff"),
        ("new row 1", "\\ud800", "y\\ud800"),
    ]
    assert "invalid Unicode" in found[0].message
    rows = [[p.where, p.column, p.value, p.message] for p in found]
    assert "\\ud800" in csv_bytes(["Where", "Column", "Value", "Problem"], rows).decode("utf-8-sig")
    assert "\\ud800" in str(InvalidEdits(found)).encode("utf-8").decode()
    structural = diffs.structural_problems(window(), {"edited_rows": {0: {"\ud800": "\ud800"}}})
    assert [(p.column, p.value) for p in structural] == [("\\ud800", "\\ud800")]


# ---------------------------------------------------------------------------------------------
# Uniqueness among the window's rows
# ---------------------------------------------------------------------------------------------


def test_a_unique_value_may_not_appear_twice_in_the_window() -> None:
    problem = one_problem({"edited_rows": {1: {"code": "AB1"}}})
    assert (problem.where, problem.column, problem.value) == ("row 11", "Code", "AB1")
    assert "row 10" in problem.message
    assert "unique" in problem.message
    problem = one_problem({"added_rows": [{"code": "AB3"}]})
    assert (problem.where, problem.column) == ("new row 1", "Code")


def test_two_new_rows_may_not_share_a_unique_value() -> None:
    problem = one_problem({"added_rows": [{"code": "ZZ1"}, {"code": "ZZ1"}]})
    assert (problem.where, problem.column) == ("new row 2", "Code")
    assert "new row 1" in problem.message


def test_swapping_or_freeing_a_unique_value_is_allowed() -> None:
    swap = build({"edited_rows": {0: {"code": "AB2"}, 1: {"code": "AB1"}}})
    assert [(u.row_id, u.after) for u in swap.updates] == [
        (10, {"code": "AB2"}),
        (11, {"code": "AB1"}),
    ]
    # A value freed by an edit or a delete may be taken by another row or a new one.
    moved = build(
        {
            "edited_rows": {0: {"code": "AB9"}},
            "deleted_rows": [1],
            "added_rows": [{"code": "AB1"}, {"code": "AB2"}],
        }
    )
    assert [i.values["code"] for i in moved.inserts] == ["AB1", "AB2"]


def test_unique_decimals_compare_by_value() -> None:
    spec = DatasetSpec((ColumnSpec("Rate", "rate", "decimal", unique=True),))
    win = window(rows=[(1, Decimal("1.50")), (2, Decimal("2"))], spec=spec)
    problem = one_problem({"edited_rows": {1: {"rate": 1.5}}}, win)
    assert (problem.where, problem.column) == ("row 2", "Rate")


# ---------------------------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        {"edited_rows": {0: {"qty": 5}}},
        {"added_rows": [{"code": "ZZ1"}]},
        {"added_rows": [{}]},
        {"deleted_rows": [0]},
        {"edited_rows": {0: {"qty": 1}}},  # even a no-op edit
    ],
)
def test_a_viewer_cannot_change_anything(state: dict[str, Any]) -> None:
    with pytest.raises(PermissionDenied, match="view this dataset but not change it"):
        build(state, may_edit=False)


def test_a_viewer_with_no_edits_gets_nothing_and_cannot_carry_pending_changes() -> None:
    assert build({}, may_edit=False).empty
    assert build({"edited_rows": {}, "added_rows": [], "deleted_rows": []}, may_edit=False).empty
    pending = ChangeSet(inserts=(RowInsert(dict.fromkeys(SPEC.names)),))
    with pytest.raises(PermissionDenied):
        build({}, window(pending), may_edit=False)
    with pytest.raises(PermissionDenied):
        build({}, window(ChangeSet(deletes=(RowDelete(99, 1, {}),))), may_edit=False)


# ---------------------------------------------------------------------------------------------
# Huge states (timed in this process's CPU time: other work on the machine does not count)
# ---------------------------------------------------------------------------------------------


def test_too_many_new_rows_are_refused_quickly() -> None:
    state = {"added_rows": [{"code": f"ZZ{n}"} for n in range(200_000)]}
    start = time.process_time()
    problem = one_problem(state)
    elapsed = time.process_time() - start
    assert problem.where == "new rows"
    assert "200,000 new rows" in problem.message
    assert "upload" in problem.message
    assert elapsed < 1.0, f"took {elapsed:.2f} s"


def test_more_new_rows_than_a_commit_takes_do_not_fit_the_grid() -> None:
    # Streamlit adds a state's new rows to its frame one by one, milliseconds each, before the
    # page can count them: 200,000 forged rows held every run of the page for many minutes.
    state = {"added_rows": [{"code": f"ZZ{n}"} for n in range(200_000)]}
    start = time.process_time()
    [problem] = diffs.structural_problems(window(), state)
    assert time.process_time() - start < 1.0
    assert problem.where == "new rows"
    assert "200,000 new rows" in problem.message
    assert "upload" in problem.message
    # Up to the cap they fit; the pending new rows count towards it.
    at_cap = {"added_rows": state["added_rows"][: diffs.MAX_ADDED_ROWS]}
    assert diffs.structural_problems(window(), at_cap) == []
    [problem] = diffs.structural_problems(window(build({"added_rows": [{"code": "YY1"}]})), at_cap)
    assert "5,001 new rows" in problem.message


def test_a_hundred_thousand_edits_outside_the_window_are_refused_quickly() -> None:
    state = {"edited_rows": {n: {"qty": 1} for n in range(3, 100_003)}}
    start = time.process_time()
    with pytest.raises(InvalidEdits) as caught:
        build(state)
    elapsed = time.process_time() - start
    found = caught.value.problems
    assert [p.where for p in found[:2]] == ["row position 3", "row position 4"]
    assert len(found) == diffs.MAX_PROBLEMS_SHOWN + 1  # the first ones named, the rest counted
    assert found[-1].message == "99,950 more row positions outside it"
    assert elapsed < 1.0, f"took {elapsed:.2f} s"


def test_a_row_with_a_hundred_thousand_unknown_columns_is_refused_quickly() -> None:
    state = {"edited_rows": {0: {f"c{n}": n for n in range(100_000)}}}
    start = time.process_time()
    problem = one_problem(state)
    assert time.process_time() - start < 1.0
    assert "100,000 cells for 8 columns" in problem.message
    # A few unknown columns are each named.
    assert len(problems({"edited_rows": {0: {"a": 1, "b": 2, "c": 3}}})) == 3


def test_structural_problems_of_huge_forged_states_are_found_quickly() -> None:
    win = window()
    assert diffs.structural_problems(win, {"edited_rows": {0: {"qty": "x"}}}) == []
    for state in (
        {"edited_rows": {n: {"qty": 1} for n in range(3, 100_003)}},
        {"edited_rows": {0: {f"c{n}": n for n in range(100_000)}}},
        {"added_rows": [{f"c{n}": n} for n in range(100_000)]},
    ):
        start = time.process_time()
        found = diffs.structural_problems(win, state)
        assert time.process_time() - start < 1.0
        assert 1 <= len(found) <= diffs.MAX_PROBLEMS_SHOWN + 1
    found = diffs.structural_problems(win, {"edited_rows": {5: {}, 0: {"x": 1}}})
    assert [(p.where, p.column) for p in found] == [("row position 5", ""), ("row position 0", "x")]


@pytest.mark.parametrize(
    ("column", "sent", "label"),
    [
        ("since", "0000-01-01", "Since"),
        ("since", "-0001-01-01", "Since"),
        ("since", "-0", "Since"),
    ],
    ids=repr,
)
def test_a_value_the_grid_itself_cannot_read_is_structural(
    column: str, sent: object, label: str
) -> None:
    # Streamlit's data editor reads a date cell with pd.Timestamp(value).date(), and fails
    # (instead of skipping the cell) on these values: the Edit page would show a traceback.
    # They are refused before the grid is drawn.
    win = window()
    for state, where in (
        ({"edited_rows": {1: {column: sent}}}, "row 11"),
        ({"added_rows": [{"code": "ZZ1", column: sent}]}, "new row 1"),
    ):
        with pytest.raises(NotImplementedError):
            _streamlit_shows(win.grid, {"edited_rows": {}, "added_rows": [], **state})
        [problem] = diffs.structural_problems(win, state)
        assert (problem.where, problem.column) == (where, label)
        assert "reload the page" in problem.message


@pytest.mark.parametrize("sent", ["abc", "1,5", "12.345", True, {"v": 1}], ids=repr)
def test_a_number_column_is_given_to_the_grid_as_text_and_any_value_is_a_cell_s_problem(
    sent: object,
) -> None:
    """A browser's number cell changed pasted numbers without a word (12,5 became 125, 15.7 in
    a whole number column 15, 1.234 at two decimal places 1.23) and dropped what it could not
    read. Given as text, the cell sends what was typed, which the server reads as a file's
    cell: a value that is no number is a problem of its cell, the grid undisturbed."""
    win = window()
    assert {"qty", "price"} <= win.as_text
    assert win.grid["price"].tolist()[:2] == ["1.50", "2.00"]
    for column in ("qty", "price"):
        state = {"edited_rows": {1: {column: sent}}, "added_rows": [], "deleted_rows": []}
        _streamlit_shows(win.grid, state)  # raises nothing
        assert diffs.structural_problems(win, state) == []
        [problem] = problems(state, win)
        assert (problem.where, problem.column) == ("row 11", column.capitalize())


@pytest.mark.filterwarnings("ignore:Setting an item of incompatible dtype")  # inside Streamlit
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cells=st.dictionaries(
        st.sampled_from(SPEC.names),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats()
            | st.text(max_size=12)
            | st.sampled_from(["0000-01-01", "-0", "2024-05-01", "1.5", "", "NaN", "Infinity"]),
            lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(), inner),
            max_leaves=3,
        ),
        min_size=1,
    ),
    added=st.booleans(),
)
def test_a_state_that_fits_the_grid_never_breaks_it(cells: dict[str, Any], added: bool) -> None:
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    win = window()
    state: dict[str, Any] = {"edited_rows": {}, "added_rows": [], "deleted_rows": []}
    if added:
        state["added_rows"] = [cells]
    else:
        state["edited_rows"] = {0: cells}
    if not diffs.structural_problems(win, state):
        _streamlit_shows(win.grid, state)  # raises nothing


def test_a_deleted_position_given_as_text_does_not_fit_the_grid() -> None:
    # Streamlit reads the keys of the edited rows as numbers (JSON keys are text), but indexes
    # with the deleted rows as they arrive: a "1" there breaks its grid (a traceback).
    win = window()
    with pytest.raises(IndexError):
        _streamlit_shows(win.shown, {"edited_rows": {}, "added_rows": [], "deleted_rows": ["1"]})
    [problem] = diffs.structural_problems(win, {"deleted_rows": [0, "1"]})
    assert problem.where == "the grid"
    assert "reload the page" in problem.message
    import numpy as np

    assert diffs.structural_problems(win, {"deleted_rows": [0, np.int64(2)]}) == []
    assert diffs.structural_problems(win, {"edited_rows": {"1": {"qty": 3}}}) == []


def test_grid_problems_of_a_grid_with_fixed_rows() -> None:
    def found(state: object) -> list[tuple[str, str]]:
        problems = diffs.grid_problems(state, rows=2, columns={"label", "type"}, fixed_rows=True)
        return [(p.where, p.column) for p in problems]

    assert found(None) == []
    assert found({"edited_rows": {"1": {"label": "x", "type": "date"}}}) == []
    assert found({"edited_rows": {"2": {"label": "x"}}}) == [("row position 2", "")]
    assert found({"edited_rows": {"0": {"name": "x", "_index": 3}}}) == [
        ("row position 0", "name"),
        ("row position 0", "_index"),
    ]
    assert found({"added_rows": [{"label": "x"}]}) == [("the grid", "")]
    assert found({"deleted_rows": [0]}) == [("the grid", "")]
    assert found({"edited_rows": {"first": {}}}) == [("the grid", "")]
    assert found("not a state") == [("the grid", "")]
    # Without fixed rows, added and deleted rows fit (their cells are still checked).
    assert (
        diffs.grid_problems(
            {"added_rows": [{"label": "x"}], "deleted_rows": [0]}, rows=2, columns={"label"}
        )
        == []
    )


# ---------------------------------------------------------------------------------------------
# Pending changes carried between windows
# ---------------------------------------------------------------------------------------------


def test_pending_changes_show_in_the_next_window() -> None:
    pending = build(
        {
            "edited_rows": {0: {"qty": 50}},
            "deleted_rows": [1],
            "added_rows": [{"code": "ZZ1"}, {"code": "ZZ2", "qty": 2}],
        }
    )
    win = window(pending)
    assert list(win.shown.index) == [10, 12, -1, -2]
    assert win.shown.at[10, "qty"] == 50
    assert win.shown.at[-2, "code"] == "ZZ2"
    assert list(win.base.index) == [10, 11, 12]
    assert win.outside.empty
    # No further edit: the same ChangeSet comes back.
    assert build({}, win) == pending


def test_editing_or_deleting_a_pending_insert_edits_or_drops_it() -> None:
    pending = build({"added_rows": [{"code": "ZZ1"}, {"code": "ZZ2"}, {"code": "ZZ3"}]})
    win = window(pending)  # shown: 10, 11, 12, -1, -2, -3
    changes = build(
        {"edited_rows": {3: {"qty": 9}, 5: {"note": "third"}}, "deleted_rows": [4]}, win
    )
    assert [(i.values["code"], i.values["qty"], i.values["note"]) for i in changes.inserts] == [
        ("ZZ1", 9, None),
        ("ZZ3", None, "third"),
    ]
    assert changes.updates == ()
    assert changes.deletes == ()
    # Problems in pending rows name them as the grid numbers them.
    problem = one_problem({"edited_rows": {5: {"qty": -1}}}, win)
    assert (problem.where, problem.column) == ("new row 3", "Qty")
    problem = one_problem({"edited_rows": {5: {"code": "ZZ2"}}, "deleted_rows": [3]}, win)
    assert (problem.where, problem.column) == ("new row 3", "Code")
    assert "already in new row 2" in problem.message
    problem = one_problem({"added_rows": [{"code": "ZZ1"}]}, win)
    assert problem.where == "new row 4"
    assert "already in new row 1" in problem.message


def test_a_pending_edit_undone_in_the_next_window_is_dropped() -> None:
    win = window(build({"edited_rows": {0: {"qty": 50}}}))
    assert build({"edited_rows": {0: {"qty": 1}}}, win).empty


def test_pending_changes_to_rows_outside_the_window_are_kept() -> None:
    elsewhere = ChangeSet(
        updates=(RowUpdate(500, 2, {"qty": 1}, {"qty": 2}),),
        deletes=(RowDelete(501, 4, {"code": "QQ1"}), RowDelete(11, 1, {"code": "AB2"})),
        inserts=(RowInsert(dict.fromkeys(SPEC.names) | {"code": "ZZ7"}),),
    )
    win = window(elsewhere)
    assert win.outside.updates == elsewhere.updates
    assert win.outside.deletes == (elsewhere.deletes[0],)  # row 11 is in this window: hidden
    assert list(win.shown.index) == [10, 12, -1]
    changes = build({"edited_rows": {0: {"qty": 3}}}, win)
    assert [u.row_id for u in changes.updates] == [10, 500]
    assert [d.row_id for d in changes.deletes] == [11, 501]
    assert [i.values["code"] for i in changes.inserts] == ["ZZ7"]
    # A pending insert may not take a unique value a shown row holds.
    win = window(ChangeSet(inserts=(RowInsert(dict.fromkeys(SPEC.names) | {"code": "AB1"}),)))
    assert one_problem({}, win).column == "Code"


# ---------------------------------------------------------------------------------------------
# Describing values
# ---------------------------------------------------------------------------------------------


def test_plain_and_show_value() -> None:
    import numpy as np

    assert diffs.plain(pd.NA) is None
    assert diffs.plain(pd.NaT) is None
    assert diffs.plain(np.float64("nan")) is None
    assert diffs.plain(np.int64(3)) == 3
    assert type(diffs.plain(np.int64(3))) is int
    assert diffs.plain(np.bool_(True)) is True
    assert diffs.plain(pd.Timestamp("2024-01-01 10:00")) == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert diffs.show_value(None) == ""
    assert diffs.show_value(True) == "true"
    assert diffs.show_value(date(2024, 5, 1)) == "2024-05-01"
    assert diffs.show_value(datetime(2024, 5, 1, 10, tzinfo=UTC)) == "2024-05-01 10:00:00 UTC"
    assert diffs.show_value(Decimal("1.50")) == "1.50"


def test_the_review_shows_small_decimals_and_fractions_of_a_second_as_they_are() -> None:
    # str() wrote 0.0000001 as 1E-7, and the review dropped a fraction of a second: a change
    # from 10:00:00.1 to 10:00:00.2 read "10:00:00 UTC -> 10:00:00 UTC".
    assert diffs.show_value(Decimal("0.0000001")) == "0.0000001"
    assert diffs.show_value(Decimal("-0.00000012345")) == "-0.00000012345"
    assert diffs.show_change(Decimal("1E-7")) == "0.0000001"
    later = datetime(2024, 5, 1, 10, 0, 0, 200000, tzinfo=UTC)
    changes = build({"edited_rows": {0: {"seen_at": "2024-01-01T12:00:00.2"}}}, window())
    [change] = diffs.cell_changes(changes, SPEC)
    assert (diffs.show_value(change.before), diffs.show_value(change.after)) == (
        "2024-01-01 12:00:00 UTC",
        "2024-01-01 12:00:00.200000 UTC",
    )
    assert diffs.show_value(later) == "2024-05-01 10:00:00.200000 UTC"


# ---------------------------------------------------------------------------------------------
# Numbers a browser cannot hold exactly (it holds 64-bit floats)
# ---------------------------------------------------------------------------------------------

LONG_SPEC = DatasetSpec(
    (
        ColumnSpec("Count", "count", "integer"),
        ColumnSpec("Amount", "amount", "decimal"),
        ColumnSpec("Small", "small", "integer"),
        ColumnSpec("Rate", "rate", "decimal", scale=2),
    )
)
LONG_ROWS: list[tuple[Any, ...]] = [
    (1, 9223372036854775807, Decimal("1234567890123456.7891"), 5, Decimal("1.50")),
    (2, -3, Decimal("0.5"), None, None),
]
SHORT_ROWS: list[tuple[Any, ...]] = [(1, 7, Decimal("2.5"), 5, Decimal("1.50"))]


def test_a_number_column_holding_a_value_a_browser_would_round_is_given_to_the_grid_as_text() -> (
    None
):
    # The grid showed 9223372036854775807 as 9223372036854776000, and the 20-digit decimal
    # rounded: every number column goes to the grid as text, exactly; the window keeps typed
    # values.
    win = window(rows=LONG_ROWS, spec=LONG_SPEC)
    assert win.as_text == {"count", "amount", "small", "rate"}
    assert win.grid["count"].tolist() == ["9223372036854775807", "-3"]
    assert win.grid["amount"].tolist() == ["1234567890123456.7891", "0.5"]
    assert win.grid["small"].tolist() == ["5", pd.NA]
    assert win.shown["count"].tolist() == [9223372036854775807, -3]
    assert window(rows=SHORT_ROWS, spec=LONG_SPEC).as_text == win.as_text  # short ones too
    # What is typed there arrives as text, and is stored exactly.
    state: dict[str, Any] = {
        "edited_rows": {1: {"count": "9223372036854775806", "amount": "0.1234567890123456789"}},
        "added_rows": [{"count": "-9223372036854775808", "amount": "98765432109876543.21"}],
        "deleted_rows": [],
    }
    changes = build(state, win)
    assert [u.after for u in changes.updates] == [
        {"count": 9223372036854775806, "amount": Decimal("0.1234567890123456789")}
    ]
    assert changes.inserts[0].values["count"] == -9223372036854775808
    assert changes.inserts[0].values["amount"] == Decimal("98765432109876543.21")
    _streamlit_shows(win.grid, state)  # the grid takes text there
    # A word there is the cell's problem, not one of the grid's (which would drop every edit).
    word = {"edited_rows": {0: {"amount": "lots"}}, "added_rows": [], "deleted_rows": []}
    assert diffs.structural_problems(win, word) == []
    _streamlit_shows(win.grid, word)
    assert one_problem(word, win).column == "Amount"


def test_a_decimal_column_without_a_scale_holding_more_than_4_decimals_is_given_as_text() -> None:
    # With no scale the grid has no format for the column and shows 4 decimals: 0.123456 showed
    # as 0.1235, 12345.6789012 as 12345.6789. A column with a scale shows all of its decimals.
    spec = DatasetSpec(
        (ColumnSpec("Rate", "rate", "decimal"), ColumnSpec("Price", "price", "decimal", scale=6))
    )
    win = window(
        rows=[(1, Decimal("0.123456"), Decimal("0.123456")), (2, Decimal("1.5"), None)], spec=spec
    )
    assert win.as_text == {"rate", "price"}
    assert win.grid["rate"].tolist() == ["0.123456", "1.5"]
    assert win.grid["price"].tolist() == ["0.123456", pd.NA]


def test_a_pending_value_a_browser_would_round_makes_its_column_text() -> None:
    win = window(rows=SHORT_ROWS, spec=LONG_SPEC)
    pending = build({"added_rows": [{"count": "12345678901234567"}]}, win)  # a forged text
    again = window(pending, rows=SHORT_ROWS, spec=LONG_SPEC)
    assert again.as_text == {"count", "amount", "small", "rate"}
    assert again.grid["count"].tolist() == ["7", "12345678901234567"]


@pytest.mark.parametrize(
    ("column", "sent"),
    [
        ("count", 2**53),
        ("count", -(2**53)),
        ("count", 9223372036854775807),
        ("amount", 12345678901234568),  # 12345678901234567.5 typed
        ("amount", 0.30000000000000004),
        ("amount", 1234567890.123456),
        ("amount", 1e21),
        ("rate", 9007199254740992.0),
    ],
    ids=repr,
)
def test_a_number_a_browser_may_have_rounded_is_refused(column: str, sent: object) -> None:
    # A browser holds a number typed in a number cell as a 64-bit float: a whole number past
    # 2**53 - 1, or more than 15 significant digits, may not be what was typed. It was stored
    # as it arrived, rounded; it is refused, saying so, in edited and added rows alike.
    win = window(rows=SHORT_ROWS, spec=LONG_SPEC)
    label = {"count": "Count", "amount": "Amount", "rate": "Rate"}[column]
    for state, where in (
        ({"edited_rows": {0: {column: sent}}}, "row 1"),
        ({"added_rows": [{"small": 1, column: sent}]}, "new row 1"),
    ):
        problem = one_problem(state, win)
        assert (problem.where, problem.column, problem.value) == (where, label, str(sent))
        assert "may not be the number typed" in problem.message
        assert "; type " in problem.message
        assert "CSV file" in problem.message
        carried = diffs.carried_changes(win, state)  # on leaving the page: not kept, said
        assert carried is not None
        assert carried.dropped == (problem,)
        assert [u.after for u in carried.changes.updates] == []
        assert [i.values[column] for i in carried.changes.inserts] == [None] * (where != "row 1")


@pytest.mark.parametrize(
    ("spec", "sent", "says"),
    [
        (ColumnSpec("Count", "count", "integer"), 1e21, "too large for a whole-number column"),
        (ColumnSpec("Count", "count", "integer"), 2**70, "too large for a whole-number column"),
        (ColumnSpec("Count", "count", "integer", max=100), 2**60, "above the maximum 100"),
        (ColumnSpec("Count", "count", "integer", min=0), -1e17, "below the minimum 0"),
        (ColumnSpec("Count", "count", "decimal"), 1e40, "more than 38 digits"),
        (ColumnSpec("Count", "count", "decimal", scale=2), 0.123456789012345678, "round it to 2"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, ColumnSpec) else v.type,
)
def test_a_number_the_column_refuses_anyway_says_why_not_that_a_browser_rounded_it(
    spec: ColumnSpec, sent: object, says: str
) -> None:
    """A number past what a browser holds exactly that no file could store either (past the
    64-bit range, over the maximum) was refused saying to store it from a CSV file, which
    refuses it too: the column's own rule is said instead, as an upload says it."""
    win = window(rows=[(1, None)], spec=DatasetSpec((spec,)))
    problem = one_problem({"edited_rows": {0: {"count": sent}}}, win)
    assert says in problem.message
    assert "CSV file" not in problem.message


@pytest.mark.parametrize(
    ("column", "sent", "stored"),
    [
        ("amount", 0.1, Decimal("0.1")),
        ("amount", 1.5, Decimal("1.5")),
        ("amount", 12345.67, Decimal("12345.67")),
        ("amount", 123456789012345.0, Decimal("123456789012345.0")),
        ("amount", 0.123456789012345, Decimal("0.123456789012345")),
        ("amount", 1e-7, Decimal("1E-7")),
        ("amount", -3, Decimal(-3)),
        ("amount", 2**53 - 1, Decimal(2**53 - 1)),
        ("count", -3, -3),
        ("count", 2**53 - 1, 2**53 - 1),
        ("count", -(2**53 - 1), -(2**53 - 1)),
        ("count", 100.0, 100),
    ],
    ids=repr,
)
def test_numbers_a_browser_holds_exactly_are_taken(
    column: str, sent: object, stored: object
) -> None:
    win = window(rows=SHORT_ROWS, spec=LONG_SPEC)
    [update] = build({"edited_rows": {0: {column: sent}}}, win).updates
    assert update.after == {column: stored}


def test_unchanged_values_a_browser_would_round_are_not_refused() -> None:
    # Stored values are never sent back by the grid; the cells around them can be edited, and
    # the rows carrying them as pending changes stay as they were.
    win = window(rows=LONG_ROWS, spec=LONG_SPEC)
    changes = build({"edited_rows": {0: {"small": 6}}}, win)
    assert [u.after for u in changes.updates] == [{"small": 6}]
    pending = build({"edited_rows": {1: {"count": "9007199254740993"}}}, win)
    again = window(pending, rows=LONG_ROWS, spec=LONG_SPEC)
    changes = build({"edited_rows": {1: {"small": 1}}}, again)
    assert [u.after for u in changes.updates] == [{"count": 9007199254740993, "small": 1}]


# ---------------------------------------------------------------------------------------------
# Property: applying the ChangeSet gives the frame Streamlit shows after the same edits
# ---------------------------------------------------------------------------------------------

PROPERTY_SPEC = DatasetSpec(
    (
        ColumnSpec("N", "n", "integer"),
        ColumnSpec("T", "t", "text"),
        ColumnSpec("D", "d", "decimal"),
        ColumnSpec("B", "b", "boolean"),
        ColumnSpec("Day", "day", "date"),
    )
)
_DAYS = st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31))
_DECIMALS = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False)
# What the grid sends per column: JSON numbers, strings and booleans; None for a cleared cell.
_SENT: dict[str, st.SearchStrategy[Any]] = {
    "n": st.none() | st.integers(-(10**6), 10**6),
    "t": st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    "d": st.none() | _DECIMALS.map(float) | st.integers(-100, 100),
    "b": st.none() | st.booleans(),
    "day": st.none()
    | _DAYS.map(date.isoformat)
    | _DAYS.map(lambda d: f"{d.isoformat()}T00:00:00.000"),
}
# A number column holding a value a browser cannot hold exactly is text in the grid: it sends text.
_SENT_AS_TEXT: dict[str, st.SearchStrategy[Any]] = {
    "n": st.none() | st.integers(-(10**6), 10**6).map(str) | st.just("-9223372036854775808"),
    "d": st.none() | _DECIMALS.map(str) | st.just("12345678901234567.891"),
}
_STORED: dict[str, st.SearchStrategy[Any]] = {
    "n": st.none() | st.integers(-(10**6), 10**6) | st.just(2**63 - 1),
    "t": st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1),
    "d": st.none() | _DECIMALS | st.just(Decimal("-0.1234567890123456789")),
    "b": st.none() | st.booleans(),
    "day": st.none() | _DAYS,
}


@st.composite
def _rows(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    ids = draw(st.lists(st.integers(1, 50), max_size=6, unique=True))
    return [(i, *(draw(_STORED[n]) for n in PROPERTY_SPEC.names)) for i in sorted(ids)]


@st.composite
def _state(draw: st.DrawFn, rows: int, as_text: frozenset[str]) -> dict[str, Any]:
    sent = _SENT | {n: s for n, s in _SENT_AS_TEXT.items() if n in as_text}
    cells = st.lists(st.sampled_from(PROPERTY_SPEC.names), min_size=1, unique=True)
    edited: dict[int, dict[str, Any]] = {}
    if rows:
        for position in draw(st.lists(st.integers(0, rows - 1), min_size=1, unique=True)):
            edited[position] = {n: draw(sent[n]) for n in draw(cells)}
    deleted = draw(st.lists(st.integers(0, rows - 1), unique=True)) if rows else []
    added = [
        {n: draw(sent[n]) for n in draw(st.lists(st.sampled_from(PROPERTY_SPEC.names)))}
        for _ in range(draw(st.integers(0, 3)))
    ]
    return {"edited_rows": edited, "added_rows": added, "deleted_rows": deleted}


def _normal(name: str, value: object) -> object:
    """A cell as a plain value of its column, whatever representation either side chose (an
    empty text is a missing value in the portal; a column Streamlit saw only empty keeps the
    grid's raw value)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    column = next(c for c in PROPERTY_SPEC.columns if c.name == name)
    if column.type == "text":
        return str(value) or None
    if column.type == "integer":
        return int(value)  # type: ignore[call-overload]
    if column.type == "decimal":
        return Decimal(str(value))
    if column.type == "boolean":
        return bool(value)
    if isinstance(value, str):
        return pd.Timestamp(value).date()
    if isinstance(value, datetime):
        return value.date()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    return [
        {n: _normal(n, frame.iat[k, j]) for j, n in enumerate(PROPERTY_SPEC.names)}
        for k in range(len(frame))
    ]


def _streamlit_shows(shown: pd.DataFrame, state: Mapping[str, Any]) -> pd.DataFrame:
    frame = shown.copy()
    schema = determine_dataframe_schema(frame, pa.Table.from_pandas(frame).schema)
    return _apply_dataframe_edits(frame, dict(state), schema)  # type: ignore[arg-type]


def _check_against_streamlit(win: Window, state: dict[str, Any]) -> None:
    changes = diffs.build_changeset(win, state, may_edit=True)
    ours = diffs.apply_changeset(win.base, changes)
    theirs = _streamlit_shows(win.grid, state)
    kept = len(win.shown) - len(set(state["deleted_rows"]))
    theirs_kept, theirs_added = theirs.iloc[:kept], theirs.iloc[kept:]
    committed = [i for i in theirs_kept.index if i >= 0]
    assert sorted(committed) == sorted(i for i in ours.index if i in win.base.index)
    assert _records(ours.loc[committed]) == _records(theirs_kept.loc[committed])
    new_theirs = pd.concat([theirs_kept[theirs_kept.index < 0], theirs_added])
    new_ours = ours[~ours.index.isin(win.base.index)]
    assert _records(new_ours) == _records(new_theirs)
    # Cells edited back to their committed value are never in the ChangeSet.
    for u in changes.updates:
        assert all(not diffs.same_value(u.before[n], u.after[n]) for n in u.after)


@pytest.mark.filterwarnings("ignore:Setting an item of incompatible dtype")  # inside Streamlit
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rows=_rows())
def test_applying_the_changeset_matches_what_streamlit_shows(
    data: st.DataObject, rows: list[tuple[Any, ...]]
) -> None:
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    base = diffs.editor_frame(PROPERTY_SPEC, rows)
    win = diffs.make_window(PROPERTY_SPEC, base, {int(r[0]): 1 for r in rows})
    first = data.draw(_state(len(win.shown), win.as_text), label="first edits")
    _check_against_streamlit(win, first)
    # The same rows reloaded with those edits pending, then edited again.
    pending = diffs.build_changeset(win, first, may_edit=True)
    again = diffs.make_window(PROPERTY_SPEC, base, win.versions, pending)
    second = data.draw(_state(len(again.shown), again.as_text), label="second edits")
    _check_against_streamlit(again, second)


def test_a_pending_row_keeps_its_change_while_other_cells_and_rows_are_edited() -> None:
    win = window(build({"edited_rows": {0: {"qty": 50}}}))
    changes = build({"edited_rows": {0: {"note": "more"}, 2: {"qty": 7}}}, win)
    assert [(u.row_id, u.before, u.after) for u in changes.updates] == [
        (10, {"qty": 1, "note": "one"}, {"qty": 50, "note": "more"}),
        (12, {"qty": None}, {"qty": 7}),
    ]
    # A pending row's unique value counts against an edit elsewhere, and freeing it does not.
    win = window(build({"edited_rows": {0: {"code": "ZZ9"}}}))
    assert one_problem({"edited_rows": {1: {"code": "ZZ9"}}}, win).column == "Code"
    swapped = build({"edited_rows": {0: {"code": "AB2"}, 1: {"code": "ZZ9"}}}, win)
    assert [(u.row_id, u.after["code"]) for u in swapped.updates] == [(10, "AB2"), (11, "ZZ9")]


def test_the_cap_on_new_rows_counts_the_pending_ones() -> None:
    code = ({"code": f"ZZ{n}"} for n in itertools.count())
    pending = build({"added_rows": [next(code) for _ in range(diffs.MAX_ADDED_ROWS - 1)]})
    win = window(pending)
    assert len(build({"added_rows": [next(code)]}, win).inserts) == diffs.MAX_ADDED_ROWS
    problem = one_problem({"added_rows": [next(code), next(code)]}, win)
    assert problem.where == "new rows"
    assert f"{diffs.MAX_ADDED_ROWS + 1:,} new rows" in problem.message


def test_a_unique_clash_is_put_on_the_cell_edited_not_on_the_untouched_row() -> None:
    problem = one_problem({"edited_rows": {0: {"code": "AB3"}}})
    assert (problem.where, problem.column) == ("row 10", "Code")
    assert "already in row 12" in problem.message
    problem = one_problem({"edited_rows": {2: {"code": "AB1"}}})
    assert (problem.where, problem.column) == ("row 12", "Code")


# ---------------------------------------------------------------------------------------------
# What of a state that breaks a rule is carried (the Edit page, on leaving it)
# ---------------------------------------------------------------------------------------------


def test_every_edit_of_its_column_s_type_is_carried_rules_broken_or_not() -> None:
    """Leaving the Edit page keeps a value over the maximum, or a new row without its required
    code, to be corrected when the rows come back; ``keeping_the_rules`` is what of it breaks
    no rule."""
    state = {
        "edited_rows": {0: {"qty": -3, "note": "fine"}, 1: {"qty": 7}},
        "added_rows": [{"code": "ZZ9", "qty": 3}, {"code": "ZZ8", "qty": 5000}, {"qty": 1}, {}],
        "deleted_rows": [2],
    }
    assert len(problems(state)) == 4  # -3, 5000, a new row without its code, an empty one
    carried = diffs.carried_changes(window(), state)
    assert carried is not None
    assert carried.dropped == ()
    changes = carried.changes
    assert [(u.row_id, u.after) for u in changes.updates] == [
        (10, {"qty": -3, "note": "fine"}),
        (11, {"qty": 7}),
    ]
    assert [(i.values["code"], i.values["qty"]) for i in changes.inserts] == [
        ("ZZ9", 3),
        ("ZZ8", 5000),
        (None, 1),
    ]  # the empty new row, nothing typed in it, is not
    assert [d.row_id for d in changes.deletes] == [12]
    kept = diffs.keeping_the_rules(changes, SPEC)
    assert [(u.row_id, u.after) for u in kept.updates] == [(10, {"note": "fine"}), (11, {"qty": 7})]
    assert [i.values["code"] for i in kept.inserts] == ["ZZ9"]
    assert [d.row_id for d in kept.deletes] == [12]
    # Shown again, as pending changes, they are checked again: nothing of it can be committed.
    again = problems({}, window(pending=changes))
    assert [(p.where, p.column) for p in again] == [
        ("row 10", "Qty"),
        ("new row 2", "Qty"),
        ("new row 3", "Code"),
    ]


def test_a_value_of_another_type_or_column_is_not_carried_and_is_named() -> None:
    state = {"edited_rows": {0: {"qty": "lots", "note": "fine", "colour": "red"}}}
    carried = diffs.carried_changes(window(), state)
    assert carried is not None
    assert [(p.where, p.column, p.value) for p in carried.dropped] == [
        ("row 10", "Qty", "lots"),
        ("row 10", "colour", "red"),
    ]
    assert [u.after for u in carried.changes.updates] == [{"note": "fine"}]
    assert diffs.carried_changes(window(), {"edited_rows": [1]}) is None  # unreadable


def test_a_change_view_tells_no_value_from_an_empty_text() -> None:
    assert [diffs.show_change(v) for v in (None, "", "x", 0, False)] == [
        "∅",
        '""',
        "x",
        "0",
        "false",
    ]


# -- a window keeps the verdicts of the values it was sent ---------------------------------------

GRID_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, -1, 0.0, -0.0, 1.0, True, False, "1", "1.0", "", "AB1", "ab1"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),  # a forged state's unhashable value
)


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(st.tuples(st.sampled_from(SPEC.names), GRID_VALUES), max_size=30))
@example(cells=[("code", 0.0), ("code", -0.0), ("qty", True), ("qty", 1), ("qty", 1.0)])
@example(cells=[("active", 1), ("active", True), ("note", 1), ("note", 1.0), ("note", True)])
def test_a_kept_verdict_is_the_verdict_of_that_very_value(cells: list[tuple[str, Any]]) -> None:
    """Equal but different values (``True``/``1``/``1.0``, ``0.0``/``-0.0``) are checked apart:
    with one window's memo, each value gets exactly what a fresh check gives it, in any order."""
    by_name = {c.name: c for c in SPEC.columns}
    memo: dict[tuple[Any, ...], Any] = {}
    for name, raw in cells * 2:  # the second pass finds every hashable one kept
        kept: list[EditProblem] = []
        fresh: list[EditProblem] = []
        got = diffs._checked_cells({name: raw}, by_name, 1, kept, memo)
        want = diffs._checked_cells({name: raw}, by_name, 1, fresh)
        assert (got, kept) == (want, fresh)
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_a_window_checks_each_value_sent_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Edit page builds the ChangeSet of the whole editor state on every run: the cells
    checked in an earlier run are not checked again, new ones are, and a refused value stays
    refused with its message."""
    checked: list[object] = []
    real = diffs.validate_value

    def counting(column: Any, value: object) -> Any:
        checked.append(value)
        return real(column, value)

    monkeypatch.setattr(diffs, "validate_value", counting)
    win = window()
    state: dict[str, Any] = {"edited_rows": {0: {"qty": 5}, 1: {"note": "x" * 11}}}
    with pytest.raises(InvalidEdits) as first:
        build(state, win)
    assert checked == [5, "x" * 11]
    with pytest.raises(InvalidEdits) as again:
        build(state, win)
    assert checked == [5, "x" * 11]  # nothing checked again
    assert [str(p) for p in again.value.problems] == [str(p) for p in first.value.problems]
    state["edited_rows"][1] = {"note": "short"}
    state["added_rows"] = [{"code": "AB9", "qty": 5}]
    changes = build(state, win)
    assert checked == [5, "x" * 11, "short", "AB9"]  # the new values only (qty 5 is kept)
    assert [u.after for u in changes.updates] == [{"qty": 5}, {"note": "short"}]
    assert build(state, window()) == changes  # as a window that kept nothing makes it


def test_a_window_starts_again_past_the_verdicts_it_keeps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diffs, "MAX_CHECKED_KEPT", 3)
    win = window()
    for qty in range(10):
        build({"edited_rows": {0: {"qty": qty}, 1: {"note": f"n{qty}"}}}, win)
        assert len(win.checked) <= 3 + 2  # cleared before a build once over the limit


def test_pending_values_are_checked_again_under_rules_changed_since() -> None:
    """Pending changes were checked when typed; after an admin made the rules stricter, a
    window over the new rules names each kept value they refuse — in the window, in a pending
    new row and outside the window — and only those, until typed over."""
    state = {
        "edited_rows": {0: {"qty": 900, "note": "short"}, 1: {"qty": 5}},
        "added_rows": [{"code": "ZZ9", "qty": 800}],
    }
    pending = build(state)
    outside = ChangeSet(updates=(RowUpdate(99, 1, {"qty": 1}, {"qty": 700}),))
    pending = ChangeSet(pending.updates + outside.updates, pending.inserts, pending.deletes)
    stricter = DatasetSpec(
        tuple(
            ColumnSpec("Qty", "qty", "integer", min=0, max=10) if c.name == "qty" else c
            for c in SPEC.columns
        )
    )
    assert build({}, window(pending)) == pending  # under the rules they were typed under
    with pytest.raises(InvalidEdits) as refused:
        build({}, window(pending, spec=stricter))
    assert [(p.where, p.column, p.value) for p in refused.value.problems] == [
        ("row 10", "Qty", "900"),
        ("new row 1", "Qty", "800"),
        ("row 99", "Qty", "700"),
    ]
    assert "above the maximum 10" in refused.value.problems[0].message
    typed_over = build(
        {"edited_rows": {0: {"qty": 9}, 3: {"qty": 8}}},
        window(ChangeSet(pending.updates[:2], pending.inserts), spec=stricter),
    )
    assert [u.after for u in typed_over.updates] == [{"qty": 9, "note": "short"}, {"qty": 5}]
    assert typed_over.inserts[0].values["qty"] == 8


def test_every_kind_of_pending_value_passes_its_check_again_unchanged() -> None:
    """The re-check takes the typed values the first check made (a whole number past what a
    browser holds, typed as text; a decimal at its scale; dates and date-times) as they are."""
    big = ColumnSpec("Big", "big", "integer")
    spec = DatasetSpec((*SPEC.columns, big))
    rows = [(*r, None) for r in ROWS]
    state = {
        "edited_rows": {
            0: {
                "big": "9007199254740993",
                "price": "3.1",
                "since": "2024-05-01",
                "seen_at": "2024-05-01T10:00:00Z",
                "size": "L",
                "code": "QQ7",
            }
        }
    }
    pending = build(state, window(rows=rows, spec=spec))
    assert pending.updates[0].after["big"] == 9007199254740993
    assert build({}, window(pending, rows=rows, spec=spec)) == pending


@pytest.mark.parametrize(
    "row", [{}, {"code": None, "qty": None, "note": ""}, {"qty": float("nan")}]
)
def test_a_new_row_not_typed_in_yet_is_one_problem_not_one_per_required_cell(
    row: dict[str, object],
) -> None:
    with pytest.raises(InvalidEdits) as refused:
        build({"added_rows": [row]})
    assert list(refused.value.problems) == [EditProblem("new row 1", "", "", diffs.EMPTY_NEW_ROW)]
    with pytest.raises(InvalidEdits) as refused:  # typed in, but not its required cell
        build({"added_rows": [{"qty": 5}]})
    assert [(p.where, p.column, p.message) for p in refused.value.problems] == [
        ("new row 1", "Code", "A value is required here: fill it in.")
    ]


def test_an_empty_new_row_of_a_dataset_with_no_required_column_is_a_row() -> None:
    loose = DatasetSpec((ColumnSpec("Note", "note", "text"), ColumnSpec("Qty", "qty", "integer")))
    win = window(rows=[(1, "a", 1)], spec=loose)
    changes = build({"added_rows": [{}]}, win)
    assert [i.values for i in changes.inserts] == [{"note": None, "qty": None}]


def test_dates_far_from_today_are_asked_about_where_no_rule_bounds_them() -> None:
    spec = DatasetSpec(
        (
            ColumnSpec("Since", "since", "date"),
            ColumnSpec("Seen", "seen", "datetime"),
            ColumnSpec("Born", "born", "date", max="2000-01-01"),
        )
    )
    changes = ChangeSet(
        updates=(
            RowUpdate(
                7,
                1,
                {"since": None, "seen": None, "born": None},
                {
                    "since": date(1899, 12, 31),
                    "seen": datetime(2101, 1, 1, tzinfo=UTC),
                    "born": date(1200, 1, 1),  # bounded by its rule: not asked about
                },
            ),
        ),
        inserts=(RowInsert({"since": date(1900, 1, 1), "seen": None, "born": None}),),
    )
    asked = diffs.doubtful_dates(changes, spec)
    assert [(a.where, a.column, a.value) for a in asked] == [
        ("row 7", "Since", "1899-12-31"),
        ("row 7", "Seen", "2101-01-01T00:00:00+00:00"),
    ]


def test_a_date_cell_changed_to_today_is_asked_about() -> None:
    """The grid turns a pasted date it cannot read (2024-02-30, 31/12/2024) into today's: the
    review showed "2020-01-13 → 2026-12-05" like any other edit, and it was committed."""
    spec = DatasetSpec(
        (
            ColumnSpec("Born", "born", "date", max="2100-01-01"),
            ColumnSpec("Seen", "seen", "datetime"),
        )
    )
    today = date(2026, 12, 5)
    changes = ChangeSet(
        updates=(
            RowUpdate(3, 1, {"born": date(2020, 1, 13)}, {"born": date(2026, 12, 6)}),
            RowUpdate(4, 1, {"born": None}, {"born": date(2026, 11, 30)}),  # another day
            RowUpdate(5, 1, {"seen": None}, {"seen": datetime(2026, 12, 5, tzinfo=UTC)}),
        ),
        inserts=(RowInsert({"born": today, "seen": None}),),  # a new row dated today: meant
    )
    asked = diffs.doubtful_dates(changes, spec, today=today)
    assert [(a.where, a.column, a.value) for a in asked] == [("row 3", "Born", "2026-12-06")]
    assert asked[0].message.startswith("Today's date: check it was meant (the grid turns a")


def test_only_columns_drops_the_cells_of_removed_columns_and_counts_the_edits() -> None:
    changes = ChangeSet(
        updates=(
            RowUpdate(1, 1, {"note": "a"}, {"note": "b"}),  # only the removed column: goes
            RowUpdate(2, 3, {"qty": 1, "note": None}, {"qty": 2, "note": "c"}),
        ),
        inserts=(RowInsert({"name": "x", "note": "d"}), RowInsert({"name": "y", "note": None})),
        deletes=(RowDelete(4, 1, {"name": "z", "note": "e"}),),
    )
    kept, dropped = changes.only_columns(["name", "qty"])
    assert dropped == {"note": 3}  # two changed cells and one typed into a new row
    assert kept == ChangeSet(
        updates=(RowUpdate(2, 3, {"qty": 1}, {"qty": 2}),),
        inserts=(RowInsert({"name": "x"}), RowInsert({"name": "y"})),
        deletes=(RowDelete(4, 1, {"name": "z"}),),
    )
    assert changes.only_columns(["name", "qty", "note"]) == (changes, {})


@pytest.mark.parametrize("sent", ["+040505-02-02", "+040505-02-02T00:00:00.000", "+40505-02-02"])
def test_a_date_with_a_five_digit_year_says_how_a_date_cell_reads_what_is_typed(sent: str) -> None:
    """2024-05-05 typed into a month/day/year date cell came back as +040505-02-02, refused
    with "not a date in the form YYYY-MM-DD: write it like 2024-12-24" — what was typed."""
    problem = one_problem({"edited_rows": {0: {"since": sent}}})
    assert (problem.where, problem.column, problem.value) == ("row 10", "Since", sent)
    assert problem.message.startswith("The year 40505 is past 9999.")
    assert "pick the date from the cell's calendar" in problem.message
    assert "YYYY-MM-DD" not in problem.message
