"""One value, three judges: the upload (a CSV file through ``uploads.read_file``, ``check`` and
``import_file``), the edit (a forged grid state through ``diffs.build_changeset`` and
``writes.commit``) and the table's own constraints. For each column type and rule, a list of
values goes through the first two on a real dataset: both must accept it and store the same
value, or both refuse it with the same per-cell message; what either accepts, the table
holds, and a value refused for a rule the table knows, the table refuses too."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from portal import diffs, uploads, writes
from portal.actor import Actor
from portal.csv_import import ImportRefused
from portal.db import session_scope
from portal.errors import ValidationError
from portal.spec import CellError, ColumnSpec, DatasetSpec, validate_value
from tests.conftest import DatabaseHandle
from tests.factories import data_table, make_user, upload_dataset

pytestmark = pytest.mark.db


@dataclass(frozen=True)
class Case:
    """A column, a valid first value, and values to judge: each a CSV cell, or a pair (the CSV
    cell, what a forged grid state sends for it as JSON)."""

    column: ColumnSpec
    seed: str
    values: tuple[Any, ...]


def _col(type_: str, **rules: Any) -> ColumnSpec:
    return ColumnSpec("Value", "v", type_, **rules)  # type: ignore[arg-type]


CASES: dict[str, Case] = {
    "text": Case(
        _col("text"),
        "a",
        (
            "plain",
            " padded ",
            "   ",
            "\t",
            "line\nbreak",
            "é",  # NFC
            "e\u0301",  # NFD
            "<script>x</script>",
            "=1+2",
            "😀",
            ("", None),
            ("", ""),
        ),
    ),
    "text-required": Case(
        _col("text", required=True),
        "a",
        ("", (" ", " "), ("", None), ("   ", "   "), ("\u00a0", "\u00a0"), "x"),
    ),
    "text-max-length": Case(
        _col("text", max_length=3),
        "a",
        ("abc", "abcd", "😀😀😀", "😀😀😀😀", "ééé", "e\u0301e\u0301", "e\u0301e\u0301e\u0301"),
    ),
    "text-regex": Case(
        _col("text", regex=r"^[A-Z]{2}-[0-9]+$"),
        "AB-1",
        ("AB-12", "ab-12", "AB-12\n", " AB-12", "XAB-12", "AB-", "AB-１２"),
    ),
    "text-regex-search": Case(
        _col("text", regex=r"[0-9]"),
        "a1",
        ("a1b", "abc", "1", "١"),
    ),
    "text-regex-ignore-case": Case(
        _col("text", regex=r"(?i)^abc$"),
        "abc",
        ("ABC", "aBc", "abd"),
    ),
    "category": Case(
        _col("category", options=("Red", "Green", "é")),
        "Red",
        ("Red", "red", "RED", " Red", "Red ", "Blue", "é", "e\u0301", ("", None)),
    ),
    "integer": Case(
        _col("integer"),
        "1",
        (
            "42",
            " 42 ",
            "+42",
            "-0",
            "007",
            "4.0",
            ("4", 4.0),
            ("4.5", 4.5),
            "1e3",
            "1,000",
            "4 2",
            "９",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999999",
            ("9007199254740991", 9007199254740991),
            ("", None),
            ("", ""),
            ("  ", "  "),
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
            ("true", True),
        ),
    ),
    "integer-bounds": Case(
        _col("integer", min=0, max=10),
        "1",
        ("0", "10", "-1", "11", ("10", 10.0), ("-1", -1)),
    ),
    "decimal": Case(
        _col("decimal"),
        "1",
        (
            "1.5",
            "1.50",
            "1.500000",
            "0.000",
            "-0",
            "-0.0",
            ".5",
            "5.",
            "+1.25",
            " 1.25 ",
            "1,5",
            "1e3",
            "0.0000001",
            ("1.5", 1.5),
            ("0.1", 0.1),
            ("100", 100),
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
            ("-Infinity", "-Infinity"),
            ("", None),
            "1" * 39,
            "0." + "1" * 39,
        ),
    ),
    "decimal-scale": Case(
        _col("decimal", scale=2, min="0", max="100"),
        "1",
        (
            "1.5",
            "1.50",
            "1.500",
            "1.505",
            "1",
            "0",
            "-0",
            "-0.01",
            "100.00",
            "100.001",
            "100.01",
            ("1.5", 1.5),
            ("1.25", 1.25),
            ("2", 2),
        ),
    ),
    "boolean": Case(
        _col("boolean"),
        "true",
        (
            "true",
            "TRUE",
            "True",
            "t",
            "yes",
            "Y",
            "1",
            "false",
            "No",
            "0",
            " yes ",
            "on",
            "off",
            "2",
            "ja",
            ("true", True),
            ("false", False),
            ("1", 1),
            ("0", 0),
            ("1.0", 1.0),
            ("", None),
        ),
    ),
    "date": Case(
        _col("date", min="1900-01-01"),
        "2024-01-01",
        (
            "2024-05-01",
            " 2024-05-01 ",
            "2024-5-1",
            "2024/05/01",
            "01.05.2024",
            "2024-02-29",
            "2023-02-29",
            "2024-13-01",
            "1899-12-31",
            "0000-01-01",
            "10000-01-01",
            "2024-05-01T",
            "2024-05-01T00:00:00+02:00",
            "2024-05-01T12:00:00",
            "2024-05-01 00:00:00",
            "20240501",
            "infinity",
            ("", None),
        ),
    ),
    "date-format": Case(
        _col("date", format="DD.MM.YYYY"),
        "01.01.2024",
        ("24.12.2024", "2024-12-24", "1.2.2024", "12/24/2024", "31.02.2024"),
    ),
    "datetime": Case(
        _col("datetime"),
        "2024-01-01T00:00:00Z",
        (
            "2024-05-01T12:30:00Z",
            "2024-05-01T12:30:00",
            "2024-05-01 12:30",
            "2024-05-01T12:30:00+02:00",
            "2024-05-01T12:30:00-0530",
            "2024-05-01T12:30:00+02",
            "2024-05-01T12:30:00.123456Z",
            "2024-05-01T12:30:00,5Z",
            "2024-05-01T12:30:00.1234567Z",
            "2024-05-01",
            "2024-05-01t12:30:00z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:30:60Z",
            "2024-05-01T12:30:00+24:00",
            "2024-05-01T12:30:00 CET",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "1714566600",
            ("", None),
        ),
    ),
    "datetime-bounds": Case(
        _col("datetime", min="2000-01-01T00:00:00Z", max="2000-12-31T23:59:59Z"),
        "2000-06-01T00:00:00Z",
        (
            "2000-01-01T00:00:00Z",
            "2000-01-01T00:30:00+01:00",
            "1999-12-31T23:30:00-01:00",
            "2001-01-01T00:30:00+01:00",
        ),
    ),
}


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="eddie", display_name="Eddie E.")
    return Actor(name, "Eddie E.", "editor")


def _csv(cell: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Value", "Note"])
    writer.writerow([cell, "x"])
    return out.getvalue().encode()


def _spec(column: ColumnSpec) -> DatasetSpec:
    return DatasetSpec((column, ColumnSpec("Note", "note", "text")))


@dataclass(frozen=True)
class Verdict:
    stored: str | None  # the stored value as PostgreSQL prints it, when accepted
    problem: str | None  # the per-cell message, when refused

    @property
    def accepted(self) -> bool:
        return self.problem is None


def _last(db: DatabaseHandle, dataset_id: int) -> tuple[int, str | None]:
    table = data_table(db.app, dataset_id)
    with db.app.connect() as conn:
        row = conn.execute(
            text(f"SELECT _row_id, v::text FROM {table} ORDER BY _row_id DESC LIMIT 1")
        ).one()
    return int(row[0]), row[1]


def _upload(db: DatabaseHandle, actor: Actor, dataset_id: int, cell: str) -> Verdict:
    data = _csv(cell)
    try:
        parsed = uploads.read_file(data)
    except ImportRefused as exc:
        return Verdict(None, f"file: {exc}")
    spec = uploads.dataset_spec(dataset_id)
    result = uploads.check(parsed, spec)
    if not result.ok:
        (error,) = result.errors
        return Verdict(None, error.message)
    before, _ = _last(db, dataset_id)
    uploads.import_file(
        actor=actor,
        filename="more.csv",
        data=data,
        parsed=parsed,
        spec=spec,
        result=result,
        target=uploads.ExistingDataset(dataset_id),
        reason="parity",
    )
    after, stored = _last(db, dataset_id)
    assert after > before
    return Verdict(stored, None)


def _edit(db: DatabaseHandle, actor: Actor, dataset_id: int, sent: Any) -> Verdict:
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id)
    window = diffs.make_window(read.spec, diffs.editor_frame(read.spec, read.rows), read.versions)
    state = {"edited_rows": {}, "added_rows": [{"v": sent, "note": "x"}], "deleted_rows": []}
    try:
        changes = diffs.build_changeset(window, state, may_edit=True)
    except diffs.InvalidEdits as exc:
        (problem,) = exc.problems
        return Verdict(None, problem.message)
    with session_scope() as s:
        writes.commit(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=changes,
            reason="parity",
        )
    _, stored = _last(db, dataset_id)
    return Verdict(stored, None)


def _table_takes(db: DatabaseHandle, dataset_id: int, value: str | None) -> bool:
    """Whether the table's constraints take ``value`` (text, read by PostgreSQL as the column's
    type) in a row written directly, rolled back."""
    insert = text(f"INSERT INTO {data_table(db.app, dataset_id)} (v, note) VALUES (:v, :n)")
    with db.app.connect() as conn:
        try:
            conn.execute(insert, {"v": value, "n": "x"})
        except DBAPIError:
            return False
        finally:
            conn.rollback()
    return True


def _pairs(case: Case) -> list[tuple[str, Any]]:
    return [v if isinstance(v, tuple) else (v, v) for v in case.values]


# Rules the table's constraints hold too (a type is PostgreSQL's own reading: it takes 1e3 for
# a number, yes for true, which the portal refuses as not written as the column says).
TABLE_RULES = {"required", "scale", "min", "max", "max_length", "regex", "options"}


@pytest.mark.parametrize("kind", list(CASES))
def test_an_upload_and_an_edit_judge_and_store_a_value_alike(
    fresh_db: DatabaseHandle, editor: Actor, kind: str
) -> None:
    case = CASES[kind]
    dataset_id = upload_dataset(
        editor, _csv(case.seed), spec=_spec(case.column), name=kind, reason_required=False
    )
    differ: list[str] = []
    for cell, sent in _pairs(case):
        uploaded = _upload(fresh_db, editor, dataset_id, cell)
        edited = _edit(fresh_db, editor, dataset_id, sent)
        if uploaded != edited:
            differ.append(f"{cell!r} / {sent!r}: upload {uploaded}, edit {edited}")
        if uploaded.accepted:
            assert _table_takes(fresh_db, dataset_id, uploaded.stored), (cell, uploaded)
        else:
            refused = validate_value(case.column, cell or None)
            assert isinstance(refused, CellError), cell
            if refused.rule in TABLE_RULES:
                assert not _table_takes(fresh_db, dataset_id, cell or None), (cell, refused)
    assert not differ, "\n".join(differ)


def test_what_only_the_grid_sends_is_read_in_an_edit(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The two differences, both in what a file cannot hold: the grid sends a date as midnight
    of that day (an upload takes the date alone), and its text cells send text (a number or a
    yes/no from a forged state is refused, not turned into text)."""
    day = upload_dataset(editor, _csv("2024-01-01"), spec=_spec(_col("date")), name="d")
    for sent in ("2024-05-01T00:00:00", "2024-05-01T00:00:00.000Z", "2024-05-01T00:00"):
        assert _edit(fresh_db, editor, day, sent) == Verdict("2024-05-01", None)
        assert not _upload(fresh_db, editor, day, sent).accepted
    words = upload_dataset(editor, _csv("a"), spec=_spec(_col("text")), name="t")
    for sent in (42, 1.5, True, ["a"], {"a": 1}):
        assert not _edit(fresh_db, editor, words, sent).accepted


@pytest.mark.parametrize(
    ("type_", "held", "sent"),
    [
        ("text", "b", "b"),
        ("integer", "7", " +7"),
        ("decimal", "1.5", "1.50"),
        ("date", "2024-01-01", " 2024-01-01"),
        ("datetime", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"),
        ("boolean", "true", "yes"),
    ],
)
def test_a_unique_value_held_outside_the_window_is_refused_by_both_naming_the_cell(
    fresh_db: DatabaseHandle, editor: Actor, type_: str, held: str, sent: str
) -> None:
    """Unique across the whole table, not just the rows read: the edit sees a window of one
    row, the upload only its own file; the table's UNIQUE constraint refuses the value for both,
    and each says where (the row edited, the line of the file) and writes nothing."""
    column = _col(type_, unique=True)
    first = "false" if type_ == "boolean" else ""
    seed = f"Value,Note\n{first},x\n{held},y\n".encode()
    dataset_id = upload_dataset(editor, seed, spec=_spec(column), name="u", reason_required=False)
    before = _last(fresh_db, dataset_id)

    with pytest.raises(ValidationError) as uploaded:
        _upload(fresh_db, editor, dataset_id, sent)
    assert "column “Value” is already in the dataset" in str(uploaded.value)
    assert "line 2 of the file" in str(uploaded.value)

    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id, limit=1)
    window = diffs.make_window(read.spec, diffs.editor_frame(read.spec, read.rows), read.versions)
    for state, where in (
        ({"added_rows": [{"v": sent, "note": "z"}]}, "a new row"),
        ({"edited_rows": {0: {"v": sent}}}, "row 1"),
    ):
        changes = diffs.build_changeset(window, state, may_edit=True)
        with pytest.raises(writes.EditRefused) as edited, session_scope() as s:
            writes.commit(
                session=s,
                actor=editor,
                dataset_id=dataset_id,
                spec_version=read.spec_version,
                changes=changes,
                reason="clash",
            )
        assert (edited.value.row, edited.value.column) == (where, "Value")
        assert "must be unique" in str(edited.value)
    assert _last(fresh_db, dataset_id) == before


@pytest.mark.parametrize("value", ["\u017f", "\u212a"])  # a long s, a Kelvin sign
def test_a_value_only_the_table_refuses_is_refused_naming_the_rule_in_words(
    fresh_db: DatabaseHandle, editor: Actor, value: str
) -> None:
    """RE2 folds case by Unicode orbits (ſ is an s, K a k), PostgreSQL by a character's upper
    and lower case only: under a leading (?i) the validator takes these and the table's CHECK
    refuses them. Nothing is written, and both say which rule, not "Failing row contains
    (2, 1, ſ, x)" or 'violates check constraint "ck_v_re"'."""
    column = _col("text", regex="(?i)^[a-z]+$")
    dataset_id = upload_dataset(editor, _csv("abc"), spec=_spec(column), name="i")
    before = _last(fresh_db, dataset_id)
    for judge in (_upload, _edit):
        with pytest.raises(ValidationError) as refused:
            judge(fresh_db, editor, dataset_id, value)
        message = str(refused.value)
        assert "column “Value”" in message
        assert "breaks the rule “the pattern (?i)^[a-z]+$” as PostgreSQL checks it" in message
        assert "Nothing was written" in message
        assert "Failing row" not in message
        assert "ck_v_re" not in message
    assert _last(fresh_db, dataset_id) == before
