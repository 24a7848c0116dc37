"""Uploading a CSV: a new dataset becomes a real typed table with the spec's constraints and
capture; append and replace go through audited bulk loads; a file or row that breaks a rule
writes nothing; the original file is kept; the log alone rebuilds the result."""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.trail import dataset_state
from portal import datasets, diffs, uploads, writes
from portal.actor import Actor
from portal.datasets import dataset_spec, get_dataset
from portal.db import session_scope
from portal.errors import PermissionDenied, ValidationError
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import all_at_once, make_user, table_name

pytestmark = pytest.mark.db

PEOPLE = (
    b"Name,Code,Qty,Price,Joined,Active\n"
    b"Ann,007,3,1.50,2024-01-05,yes\n"
    b"Bob,012,,10.25,2024-02-29,no\n"
    b'"Cy, Jr.",099,7,0.10,2023-12-31,yes\n'
)


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="eddie", display_name="Eddie E.")
    return Actor(name, "Eddie E.", "editor")


def _import(
    actor: Actor,
    data: bytes,
    target,
    spec=None,
    filename: str = "people.csv",
    reason: str = "test import",
):
    parsed = uploads.read_file(data)
    if spec is None:
        spec, _ = uploads.propose_spec(parsed)
    result = uploads.check(parsed, spec)
    return uploads.import_file(
        actor=actor,
        filename=filename,
        data=data,
        parsed=parsed,
        spec=spec,
        result=result,
        target=target,
        reason=reason,
    )


def _rows(db: DatabaseHandle, table: str) -> list[tuple]:
    with db.app.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    f'SELECT name, code, qty, price::text, joined::text, active FROM data."{table}"'
                    " ORDER BY _row_id"
                )
            )
        ]


def test_new_dataset_is_a_typed_captured_table_with_its_audit(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    outcome = _import(editor, PEOPLE, uploads.NewDataset("People", "staff list"))
    assert (outcome.rows, outcome.seq, outcome.mode) == (3, 1, "append")
    table = table_name(fresh_db.app, outcome.dataset_id)
    assert _rows(fresh_db, table) == [
        ("Ann", "007", 3, "1.50", "2024-01-05", True),
        ("Bob", "012", None, "10.25", "2024-02-29", False),
        ("Cy, Jr.", "099", 7, "0.10", "2023-12-31", True),
    ]
    with fresh_db.app.connect() as conn:
        types = dict(
            conn.execute(
                text(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'data' AND table_name = :t"
                ),
                {"t": table},
            ).all()
        )
        changesets = conn.execute(
            text(
                "SELECT seq, kind, actor_username, actor_display_name, inserted, detail"
                " FROM audit.changeset ORDER BY seq"
            )
        ).all()
        upload = conn.execute(
            text("SELECT filename, content, dataset_id, changeset_id FROM audit.upload")
        ).one()
        meta = conn.execute(
            text("SELECT name, owner, row_count, description FROM portal.datasets")
        ).one()
    assert types["code"] == "text"  # leading zeros kept
    assert types["qty"] == "bigint"
    assert types["price"] == "numeric"
    assert types["joined"] == "date"
    assert types["active"] == "boolean"
    # one transaction, one changeset: the table's creation (with its spec) and its rows
    assert [(c.seq, c.kind, c.actor_username, c.inserted) for c in changesets] == [
        (1, "upload", "eddie", 3),
    ]
    assert changesets[0].detail["created"]["spec"]["columns"][0]["label"] == "Name"
    assert zlib.decompress(upload.content) == PEOPLE
    assert upload.changeset_id == outcome.changeset_id
    # the chain covers the original file: its SHA-256 is in the sealed changeset's detail
    assert changesets[0].detail["file"] == {
        "filename": "people.csv",
        "size": len(PEOPLE),
        "sha256": hashlib.sha256(PEOPLE).hexdigest(),
    }
    assert (upload.filename, upload.dataset_id) == ("people.csv", outcome.dataset_id)
    assert tuple(meta) == ("People", "eddie", 3, "staff list")
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok
        rebuilt = dataset_state(session=s, dataset_id=outcome.dataset_id)
    assert sorted(r["name"] for r in rebuilt.values()) == ["Ann", "Bob", "Cy, Jr."]


def test_the_table_refuses_what_the_spec_forbids(fresh_db: DatabaseHandle, editor: Actor) -> None:
    parsed = uploads.read_file(PEOPLE)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    rows[2].update(min="1", max="50")  # Qty between 1 and 50
    rows[0].update(unique=True, required=True)
    spec = uploads.spec_from_rows(rows, base=proposed)
    outcome = _import(editor, PEOPLE, uploads.NewDataset("Checked"), spec=spec)
    table = table_name(fresh_db.app, outcome.dataset_id)
    for bad in (
        "INSERT INTO data.{t} (name, qty) VALUES ('Dee', 99)",
        "INSERT INTO data.{t} (name) VALUES ('Ann')",
        "INSERT INTO data.{t} (qty) VALUES (2)",
    ):
        with fresh_db.app.connect() as conn, pytest.raises(IntegrityError):
            conn.execute(text(bad.format(t=f'"{table}"')))


def test_a_replace_confirmed_for_another_row_count_writes_nothing(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Its confirmation said 3 rows; a row appended meanwhile is seen under the lock."""
    first = _import(editor, PEOPLE, uploads.NewDataset("People"))
    more = b"Name,Code,Qty,Price,Joined,Active\nDee,100,1,2.00,2024-03-01,no\n"
    spec = uploads.dataset_spec(first.dataset_id)
    _import(editor, more, uploads.ExistingDataset(first.dataset_id, "append"), spec)
    stale = uploads.ExistingDataset(first.dataset_id, "replace", expected_rows=3)
    with pytest.raises(ValidationError, match="has 4 rows now, not the 3 this confirmation said"):
        _import(editor, more, stale, spec)
    table = table_name(fresh_db.app, first.dataset_id)
    assert [r[0] for r in _rows(fresh_db, table)] == ["Ann", "Bob", "Cy, Jr.", "Dee"]
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 2
    current = uploads.ExistingDataset(first.dataset_id, "replace", expected_rows=4)
    _import(editor, more, current, spec)
    assert [r[0] for r in _rows(fresh_db, table)] == ["Dee"]


def test_append_then_replace(fresh_db: DatabaseHandle, editor: Actor) -> None:
    first = _import(editor, PEOPLE, uploads.NewDataset("People"))
    more = b"Name,Code,Qty,Price,Joined,Active\nDee,100,1,2.00,2024-03-01,no\n"
    spec = uploads.dataset_spec(first.dataset_id)
    appended = _import(editor, more, uploads.ExistingDataset(first.dataset_id, "append"), spec)
    table = table_name(fresh_db.app, first.dataset_id)
    assert [r[0] for r in _rows(fresh_db, table)] == ["Ann", "Bob", "Cy, Jr.", "Dee"]
    assert appended.seq == 2

    replaced = _import(editor, more, uploads.ExistingDataset(first.dataset_id, "replace"), spec)
    assert [r[0] for r in _rows(fresh_db, table)] == ["Dee"]
    with fresh_db.app.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT inserted, updated, deleted, detail->>'mode' FROM audit.changeset"
                " WHERE seq = :s"
            ),
            {"s": replaced.seq},
        ).one()
        row_count = conn.scalar(text("SELECT row_count FROM portal.datasets"))
    assert tuple(counts) == (1, 0, 4, "replace")
    assert row_count == 1
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok
        for seq, names in (
            (1, {"Ann", "Bob", "Cy, Jr."}),
            (2, {"Ann", "Bob", "Cy, Jr.", "Dee"}),
            (3, {"Dee"}),
        ):
            state = dataset_state(session=s, dataset_id=first.dataset_id, as_of_seq=seq)
            assert {r["name"] for r in state.values()} == names


def _counts(db: DatabaseHandle) -> tuple[int, int, int]:
    with db.app.connect() as conn:
        return tuple(
            conn.execute(
                text(  # type: ignore[return-value]
                    "SELECT (SELECT count(*) FROM audit.changeset),"
                    " (SELECT count(*) FROM audit.upload), (SELECT count(*) FROM portal.datasets)"
                )
            ).one()
        )


def test_rows_clashing_with_existing_ones_write_nothing(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    parsed = uploads.read_file(PEOPLE)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    rows[0]["unique"] = True
    spec = uploads.spec_from_rows(rows, base=proposed)
    first = _import(editor, PEOPLE, uploads.NewDataset("Unique names"), spec=spec)
    before = _counts(fresh_db)
    again = b"Name,Code,Qty,Price,Joined,Active\nZed,1,1,1,2024-01-01,no\nAnn,2,2,2,2024-01-02,no\n"
    with pytest.raises(ValidationError, match=r"Name.*Nothing was written"):
        _import(editor, again, uploads.ExistingDataset(first.dataset_id), spec=spec)
    assert _counts(fresh_db) == before
    assert len(_rows(fresh_db, table_name(fresh_db.app, first.dataset_id))) == 3


def test_a_value_clashing_with_an_existing_row_is_named_as_the_file_has_it(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The refusal quoted PostgreSQL ("Key (name)=(Ann) already exists.", the table's own
    column name); it says which value of the file is already in the dataset, under the column's
    label, and what to do."""
    people = PEOPLE.replace(b"Name,", b"Full name,", 1)
    parsed = uploads.read_file(people)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    rows[0]["unique"] = True
    spec = uploads.spec_from_rows(rows, base=proposed)
    first = _import(editor, people, uploads.NewDataset("Unique names"), spec=spec)
    spec = uploads.dataset_spec(first.dataset_id)
    again = (
        b"Full name,Code,Qty,Price,Joined,Active\n"
        b"Zed,1,1,1,2024-01-01,no\nAnn,2,2,2,2024-01-02,no\n"
    )
    with pytest.raises(ValidationError) as raised:
        _import(editor, again, uploads.ExistingDataset(first.dataset_id), spec=spec)
    message = str(raised.value)
    assert (
        "“Ann” in column “Full name” is already in the dataset, whose values there must be "
        "unique. Nothing was written" in message
    )
    assert "Key (" not in message


@pytest.mark.parametrize(
    ("type_", "held", "sent"),
    [
        ("text", "Ann", "Ann"),
        ("decimal", "1.5", "1.50"),
        ("datetime", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00+01:00"),
    ],
)
def test_a_value_clashing_with_an_existing_row_names_the_line_of_the_file(
    fresh_db: DatabaseHandle, editor: Actor, type_: str, held: str, sent: str
) -> None:
    """Only the table sees a clash with a row already there: its refusal names the line of the
    file holding the value (a file may have a million), however PostgreSQL prints the value."""
    spec = DatasetSpec(
        (ColumnSpec("Name", "name", "text"), ColumnSpec("Key", "k", type_, unique=True))  # type: ignore[arg-type]
    )
    first = _import(editor, f"Name,Key\nx,{held}\n".encode(), uploads.NewDataset("U"), spec=spec)
    again = f'Name,Key\n"a\nb",\ny,{sent}\n'.encode()  # the clash is on line 4
    with pytest.raises(ValidationError) as raised:
        _import(editor, again, uploads.ExistingDataset(first.dataset_id), spec=spec)
    assert "Change or remove line 4 of the file" in str(raised.value)


def test_an_invalid_file_writes_nothing(fresh_db: DatabaseHandle, editor: Actor) -> None:
    first = _import(editor, PEOPLE, uploads.NewDataset("People"))
    spec = uploads.dataset_spec(first.dataset_id)
    bad = b"Name,Code,Qty,Price,Joined,Active\nEve,5,lots,1.00,2024-13-01,maybe\n"
    parsed = uploads.read_file(bad)
    result = uploads.check(parsed, spec)
    assert not result.ok
    assert {(e.row, e.column, e.rule) for e in result.errors} == {
        (2, "Qty", "type"),
        (2, "Joined", "type"),
        (2, "Active", "type"),
    }
    before = _counts(fresh_db)
    with pytest.raises(ValidationError, match="3 invalid cells"):
        uploads.import_file(
            actor=editor,
            filename="bad.csv",
            data=bad,
            parsed=parsed,
            spec=spec,
            result=result,
            target=uploads.ExistingDataset(first.dataset_id),
        )
    assert _counts(fresh_db) == before


def test_a_file_name_with_a_nul_character_is_refused_and_writes_nothing(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The browser's multipart form carries the file's name as it likes: a NUL in it (which
    the audit log's JSON cannot hold) was a database error out of ``import_file``."""
    with pytest.raises(ValidationError, match=r"name .*NUL character.*Nothing was written"):
        _import(editor, PEOPLE, uploads.NewDataset("People"), filename="people\x00.csv")
    assert _counts(fresh_db) == (0, 0, 0)


def test_viewers_cannot_import_and_names_must_be_free(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    viewer = Actor("vee", "Vee", "viewer")
    with pytest.raises(PermissionDenied):
        _import(viewer, PEOPLE, uploads.NewDataset("Mine"))
    _import(editor, PEOPLE, uploads.NewDataset("People"))
    with pytest.raises(ValidationError, match="exists already"):
        _import(editor, PEOPLE, uploads.NewDataset("  people "))
    assert _counts(fresh_db)[2] == 1


def test_spec_edits_are_checked(fresh_db: DatabaseHandle) -> None:
    parsed = uploads.read_file(PEOPLE)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    rows[2]["min"] = "many"
    with pytest.raises(ValidationError, match="Qty"):
        uploads.spec_from_rows(rows, base=proposed)
    rows = uploads.spec_rows(proposed)
    rows[0].update(type="category", options="Ann | Bob | Cy, Jr.")
    spec = uploads.spec_from_rows(rows, base=proposed)
    assert spec.columns[0].options == ("Ann", "Bob", "Cy, Jr.")
    assert uploads.check(parsed, spec).ok


def test_the_rules_grid_sets_a_date_format_and_decimal_places() -> None:
    """The note on dates that could be day/month or month/day says to choose the format: the
    grid had no place to choose it (a date column read only YYYY-MM-DD), nor decimal places."""
    parsed = uploads.read_file(b"day,price\n03/04/2024,1.5\n05/06/2024,2.25\n")
    proposed, notes = uploads.propose_spec(parsed)
    assert proposed.columns[0].type == "text"
    assert "change the type to date and choose its date format" in notes[0]
    rows = uploads.spec_rows(proposed)
    assert (rows[0]["format"], rows[1]["scale"]) == (None, 2)
    rows[0].update(type="date", format="DD/MM/YYYY")
    rows[1].update(scale=3.0)  # a number cell of the grid, read through pandas
    spec = uploads.spec_from_rows(rows, base=proposed)
    assert (spec.columns[0].format, spec.columns[1].scale) == ("DD/MM/YYYY", 3)
    result = uploads.check(parsed, spec)
    assert result.ok
    assert list(result.typed["day"]) == [date(2024, 4, 3), date(2024, 6, 5)]
    rows[1].update(scale=1)
    assert [
        e.value for e in uploads.check(parsed, uploads.spec_from_rows(rows, base=proposed)).errors
    ] == ["2.25"]
    rows[0].update(type="text")  # a format left on a column that is no date is no rule
    assert uploads.spec_from_rows(rows, base=proposed).columns[0].format is None
    for wrong, problem in [
        ({"type": "date", "format": "YYYY/DD/MM"}, "“day”: unknown date format"),
        ({"scale": 1.5}, "“price”: decimal places must be a whole number"),
        ({"scale": 39}, "“price”: its decimal places must be between 0 and 38"),
    ]:
        broken = uploads.spec_rows(proposed)
        broken[0 if "type" in wrong else 1].update(wrong)
        with pytest.raises(ValidationError, match=problem):
            uploads.spec_from_rows(broken, base=proposed)


@pytest.mark.parametrize("empty", [None, float("nan")])
def test_empty_cells_of_the_rules_grid_are_empty_rules(empty: object) -> None:
    """The grid sends an emptied cell as None, and through pandas as NaN, which is truthy:
    str(NaN) named a column "nan" and made an option "nan", bool(NaN) ticked a box."""
    parsed = uploads.read_file(PEOPLE)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    columns = ("label", "type", "format", "scale", "required", "unique", "min", "max")
    for column in (*columns, "max_length", "regex"):
        rows[0][column] = empty
    rows[0]["options"] = empty
    spec = uploads.spec_from_rows(rows, base=proposed)
    name = spec.columns[0]
    assert (name.label, name.type) == (proposed.columns[0].label, proposed.columns[0].type)
    assert (name.required, name.unique) == (False, False)
    assert (name.min, name.max, name.max_length, name.regex, name.options) == (None,) * 5
    rows[0].update(required="false", unique=np.True_)  # a forged text ticks nothing
    spec = uploads.spec_from_rows(rows, base=proposed)
    assert (spec.columns[0].required, spec.columns[0].unique) == (False, True)


def test_two_uploads_creating_one_name_at_once_are_told_it_is_taken(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    outcomes: list[str] = []

    def upload(n: int) -> None:
        try:
            _import(editor, PEOPLE, uploads.NewDataset("Sales" if n else "sales"))
            outcomes.append("created")
        except ValidationError as exc:
            outcomes.append(str(exc))

    all_at_once(2, upload)
    [refused] = [o for o in outcomes if o != "created"]
    assert "created" in outcomes
    assert "exists already (names are compared ignoring case); choose another name" in refused
    assert _counts(fresh_db)[2] == 1


def _through_the_grid(data: bytes, **rule: str) -> tuple[uploads.ParsedCSV, DatasetSpec]:
    """The file's proposed spec sent through the rules grid as the page does, ``rule`` set on
    the first column."""
    parsed = uploads.read_file(data)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    rows[0].update(rule)
    return parsed, uploads.spec_from_rows(rows, base=proposed)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"\bfoo\b", "word boundary to one regex engine and a backspace to the other"),
        (r"^\p{L}+$", "not understood by PostgreSQL"),
        (r"^[A-Za-z ]{1,300}$", "repeat count over 255"),
        (r"^\w+$", r"\w is a letter or digit of any language to PostgreSQL"),
        (r"^[\w-z]+$", r"write \[A-Za-z0-9_\] instead"),
        (r"^\S+$", "PostgreSQL counts more characters as spaces"),
        (r"^[[:alpha:]]+$", r"write \[A-Za-z\] instead"),
        (r"^\x41BC$", "reads every hex digit after"),
        (r"^[[.a.]]$", "collating element"),
        (r"^[\d-z]+$", "at an end of a range is refused by PostgreSQL"),
    ],
)
def test_a_pattern_the_two_regex_engines_read_differently_is_refused_in_the_grid(
    pattern: str, why: str
) -> None:
    with pytest.raises(ValidationError, match=why):
        _through_the_grid(b"Code\nfoo\nbar\n", regex=pattern)


def test_a_pattern_postgresql_cannot_compile_is_refused_before_anything_is_written(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Whatever syntax the grid's check lets through, PostgreSQL's own compile has the last
    word, before the table exists (it would compile the CHECK only at the first row)."""
    data = b"Code\n1z\n2-\n"
    parsed, spec = _through_the_grid(data, regex=r"^*[0-9][z-]$")  # RE2 takes it
    assert uploads.check(parsed, spec).ok
    with pytest.raises(ValidationError, match=r"not one PostgreSQL accepts \(invalid regular"):
        _import(editor, data, uploads.NewDataset("Codes"), spec=spec)
    assert _counts(fresh_db)[2] == 0


def test_a_pattern_the_engines_read_differently_is_refused_at_creation_past_the_grid(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The rules grid is not the only way in: create_dataset refuses such a pattern itself,
    before anything is written. (The file is valid to the validator: \\x41BC is A, B, C to it;
    the table would take only the one character U+41BC.)"""
    data = b"Code\nABC\nABC\n"
    parsed = uploads.read_file(data)
    proposed, _ = uploads.propose_spec(parsed)
    spec = DatasetSpec((replace(proposed.columns[0], regex=r"^\x41BC$"),))
    assert uploads.check(parsed, spec).ok
    with pytest.raises(ValidationError, match=r"\\x41B is one character to PostgreSQL"):
        _import(editor, data, uploads.NewDataset("Codes"), spec=spec)
    assert _counts(fresh_db) == (0, 0, 0)


def test_a_decimal_bound_below_a_millionth_survives_the_grid_and_the_stored_spec(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    data = b"Tolerance\n0.0000005\n0.0000025\n"
    _, spec = _through_the_grid(data, min="0.0000001")
    assert uploads.spec_rows(spec)[0]["min"] == "0.0000001"
    outcome = _import(editor, data, uploads.NewDataset("Tol"), spec=spec)
    with Session(fresh_db.app) as s:
        [stored] = dataset_spec(get_dataset(session=s, dataset_id=outcome.dataset_id)).columns
    assert stored.min == Decimal("0.0000001")


@pytest.mark.parametrize(
    "data", [b"Tags\nred|blue\ngreen\nred|blue\ngreen\n", b"Colour\n red\n green\n red\n green\n"]
)
def test_a_file_is_valid_against_its_own_proposed_rules_sent_through_the_grid(
    fresh_db: DatabaseHandle, editor: Actor, data: bytes
) -> None:
    """Values with the grid's option separator or surrounding spaces do not make a category
    (its options are edited as one text, split at "|" and trimmed)."""
    parsed, spec = _through_the_grid(data)
    assert spec.columns[0].type == "text"
    assert uploads.check(parsed, spec).ok


def test_import_reports_its_steps(fresh_db: DatabaseHandle, editor: Actor) -> None:
    parsed = uploads.read_file(PEOPLE)
    spec, _ = uploads.propose_spec(parsed)
    steps: list[str] = []
    uploads.import_file(
        actor=editor,
        filename="people.csv",
        data=PEOPLE,
        parsed=parsed,
        spec=spec,
        result=uploads.check(parsed, spec),
        target=uploads.NewDataset("People"),
        progress=steps.append,
    )
    assert [s.split(" ", 1)[0] for s in steps] == [
        "Creating",
        "Loading",
        "Keeping",
        "Gathering",
        "Sealing",
    ]
    assert "3 rows" in steps[1]


def test_a_clash_names_the_column_whose_constraint_refused(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """``name`` is a prefix of ``name_2``: the message must name the column that clashed."""
    data = b"Name,Name 2\nAnn,x1\nBob,x2\n"
    parsed = uploads.read_file(data)
    proposed, _ = uploads.propose_spec(parsed)
    rows = uploads.spec_rows(proposed)
    for row in rows:
        row["unique"] = True
    spec = uploads.spec_from_rows(rows, base=proposed)
    assert [c.name for c in spec.columns] == ["name", "name_2"]
    first = _import(editor, data, uploads.NewDataset("Pairs"), spec=spec)
    clash = b"Name,Name 2\nCy,x1\n"
    with pytest.raises(ValidationError, match="column “Name 2”"):
        _import(editor, clash, uploads.ExistingDataset(first.dataset_id), spec=spec)


def test_an_upload_leaves_its_table_with_statistics_so_commits_lock_rows_by_index(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Without statistics PostgreSQL plans blind: a commit's row lock over 100 ids read all
    20,000 rows until autovacuum analysed the table."""
    from portal import writes

    rows = 20_000
    data = b"Name,Qty\n" + b"".join(b"n%d,%d\n" % (i, i) for i in range(rows))
    outcome = _import(editor, data, uploads.NewDataset("Counted"))
    with Session(fresh_db.app) as s, s.begin():
        table = get_dataset(session=s, dataset_id=outcome.dataset_id).table_name
        analysed, estimate = s.execute(
            text(
                "SELECT t.last_analyze IS NOT NULL, c.reltuples FROM pg_stat_user_tables t"
                " JOIN pg_class c ON c.oid = t.relid WHERE t.schemaname = 'data'"
                " AND t.relname = :t"
            ),
            {"t": table},
        ).one()
        assert analysed
        assert estimate == rows
        buckets = s.scalar(
            text(
                "SELECT cardinality(histogram_bounds::text::text[]) FROM pg_stats"
                " WHERE schemaname = 'data' AND tablename = :t AND attname = '_row_id'"
            ),
            {"t": table},
        )
        assert buckets == 11  # a quick sample (target 10): autovacuum redoes it in full later
        cursor = s.connection().connection.dbapi_connection.cursor()
        window = "{" + ",".join(str(i) for i in range(5_000, 5_100)) + "}"
        cursor.execute("EXPLAIN " + writes.LOCK_ROWS.format(table=f'data."{table}"'), (window,))
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    assert f"pk_{table}" in plan, plan


def test_only_an_append_of_a_tenth_or_more_analyses_the_table_again(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    def rows(first: int, count: int) -> bytes:
        return b"Name,Qty\n" + b"".join(b"n%d,%d\n" % (i, i) for i in range(first, first + count))

    def analysed() -> tuple[int, float]:
        """How many times the table was analysed, and the row count it thinks it has."""
        with fresh_db.app.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT t.analyze_count, c.reltuples FROM pg_stat_user_tables t"
                    " JOIN pg_class c ON c.oid = t.relid WHERE t.schemaname = 'data'"
                    " AND t.relname = (SELECT table_name FROM portal.datasets WHERE id = :d)"
                ),
                {"d": dataset_id},
            ).one()
            return found[0], found[1]

    dataset_id = _import(editor, rows(0, 2_000), uploads.NewDataset("Grows")).dataset_id
    spec = uploads.dataset_spec(dataset_id)
    assert analysed() == (1, 2_000)
    _import(editor, rows(2_000, 150), uploads.ExistingDataset(dataset_id, "append"), spec)
    assert analysed() == (1, 2_000)  # 150 rows onto 2,000: the statistics still hold
    _import(editor, rows(2_150, 300), uploads.ExistingDataset(dataset_id, "append"), spec)
    assert analysed() == (2, 2_450)
    # In the upload's own transaction: the rows it deleted no longer count.
    _import(editor, rows(0, 10), uploads.ExistingDataset(dataset_id, "replace"), spec)
    assert analysed() == (3, 10)


def _wait_until_someone_waits_on_a_lock(db: DatabaseHandle) -> None:
    with db.superuser.connect() as conn:
        for _ in range(400):
            if conn.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")):
                return
            time.sleep(0.05)
    raise AssertionError("the upload never waited for the open transaction")


def _append_under(
    db: DatabaseHandle,
    hold: Callable[[threading.Event, threading.Event], None],
    append: Callable[[], object],
) -> object:
    """Run ``append()`` while ``hold`` keeps a transaction open on the dataset (it returns once
    the event is set); the append's outcome, or what it raised."""
    written, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def appender() -> None:
        try:
            outcome.append(append())
        except Exception as exc:  # looked at by the caller
            outcome.append(exc)

    first = threading.Thread(target=hold, args=(written, release))
    first.start()
    assert written.wait(30)
    second = threading.Thread(target=appender)
    second.start()
    _wait_until_someone_waits_on_a_lock(db)
    release.set()
    first.join(60)
    second.join(60)
    assert not first.is_alive()
    assert not second.is_alive()
    [result] = outcome
    return result


def test_an_append_that_waits_for_an_edit_adding_rows_counts_them_too(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The append waits for the commit under way; the dataset's row count it then writes must
    include the rows that commit added, not the count read before it waited."""
    first = _import(editor, PEOPLE, uploads.NewDataset("People"))
    spec = uploads.dataset_spec(first.dataset_id)
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=first.dataset_id)
    window = diffs.make_window(read.spec, diffs.editor_frame(read.spec, read.rows), read.versions)
    added = diffs.build_changeset(
        window,
        {
            "added_rows": [
                {"name": n, "code": c, "price": 1, "joined": "2024-04-01", "active": False}
                for n, c in (("Eve", "1"), ("Fay", "2"))
            ]
        },
        may_edit=True,
    )

    def edit(written: threading.Event, release: threading.Event) -> None:
        with session_scope() as s:
            writes.commit(
                session=s,
                actor=editor,
                dataset_id=first.dataset_id,
                spec_version=read.spec_version,
                changes=added,
                reason="two more",
            )
            written.set()
            assert release.wait(30)

    more = b"Name,Code,Qty,Price,Joined,Active\nDee,100,1,2.00,2024-03-01,no\n"
    outcome = _append_under(
        fresh_db,
        edit,
        lambda: _import(editor, more, uploads.ExistingDataset(first.dataset_id), spec),
    )
    assert isinstance(outcome, uploads.ImportOutcome), outcome
    with fresh_db.app.connect() as conn:
        table = table_name(fresh_db.app, first.dataset_id)
        stored = conn.scalar(text(f'SELECT count(*) FROM data."{table}"'))
        counted = conn.scalar(text("SELECT row_count FROM portal.datasets"))
    assert stored == 6
    assert counted == 6


def test_an_append_without_a_reason_that_waits_for_an_admin_requiring_one_is_refused(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """An admin makes reasons required while an append without one is on its way: the append
    comes after the setting, so it is refused and writes nothing."""
    first = _import(editor, PEOPLE, uploads.NewDataset("People", reason_required=False))
    spec = uploads.dataset_spec(first.dataset_id)
    admin = Actor("cli:admin", "Admin", "admin")

    def require(written: threading.Event, release: threading.Event) -> None:
        with session_scope() as s:
            datasets.set_reason_required(
                session=s,
                actor=admin,
                dataset_id=first.dataset_id,
                required=True,
                expected=False,
                reason="audit season",
            )
            written.set()
            assert release.wait(30)

    more = b"Name,Code,Qty,Price,Joined,Active\nDee,100,1,2.00,2024-03-01,no\n"
    parsed = uploads.read_file(more)

    def append() -> object:
        return uploads.import_file(
            actor=editor,
            filename="more.csv",
            data=more,
            parsed=parsed,
            spec=spec,
            result=uploads.check(parsed, spec),
            target=uploads.ExistingDataset(first.dataset_id),
        )

    outcome = _append_under(fresh_db, require, append)
    assert isinstance(outcome, ValidationError), outcome
    assert "needs a reason" in str(outcome)
    with fresh_db.app.connect() as conn:
        kinds = conn.execute(text("SELECT kind FROM audit.changeset ORDER BY seq")).scalars()
        assert list(kinds) == ["upload", "dataset"]
        assert conn.scalar(text("SELECT row_count FROM portal.datasets")) == 3


def test_the_preview_gives_a_decimal_the_grid_would_show_to_4_places_as_text() -> None:
    # A decimal column without a scale has no format in the grid, which then shows 4 decimals:
    # 0.123456 was previewed as 0.1235. A column with a scale shows every decimal it has.
    spec = DatasetSpec(
        (ColumnSpec("Rate", "rate", "decimal"), ColumnSpec("Price", "price", "decimal", scale=6))
    )
    parsed = uploads.read_file(b"Rate,Price\n0.123456,0.123456\n1.5,1\n")
    shown, as_text = uploads.preview_rows(uploads.check(parsed, spec), spec, 10)
    assert as_text == ["rate"]
    assert shown["rate"].tolist()[0] == "0.123456"
    assert shown["price"].tolist()[0] == Decimal("0.123456")


def test_an_upload_without_a_reason_says_in_the_log_what_it_did(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """A dataset that needs no reason: the changeset's reason says what the upload did — it
    said "append people.csv" for the upload that created the dataset."""
    created = _import(
        editor,
        b"Name\nann\n",
        uploads.NewDataset("People", "", reason_required=False),
        filename="first.csv",
        reason="",
    ).dataset_id
    for data, mode, filename in [
        (b"Name\nbob\n", "append", "more.csv"),
        (b"Name\ncy\n", "replace", "all.csv"),
    ]:
        target = uploads.ExistingDataset(created, mode)  # type: ignore[arg-type]
        _import(editor, data, target, filename=filename, reason="")
    with fresh_db.app.connect() as conn:
        reasons = conn.scalars(
            text("SELECT reason FROM audit.changeset WHERE dataset_id = :i ORDER BY seq"),
            {"i": created},
        ).all()
    assert reasons == [
        "created from first.csv",
        "rows added from more.csv",
        "rows replaced with all.csv",
    ]


@pytest.mark.parametrize(
    ("column", "held", "file_value"),
    [
        (ColumnSpec("Day", "day", "date", unique=True), "2024-05-01", "2024-05-01"),
        (
            ColumnSpec("At", "at", "datetime", unique=True),
            "2024-05-01T10:00:00Z",
            "2024-05-01 10:00:00+00:00",
        ),
        (ColumnSpec("Price", "price", "decimal", scale=2, unique=True), "1.50", "1.5"),
        (ColumnSpec("Qty", "qty", "integer", unique=True), "9007199254740993", "9007199254740993"),
    ],
    ids=lambda v: v.type if isinstance(v, ColumnSpec) else "",
)
def test_a_value_the_dataset_holds_already_is_found_whatever_its_type(
    fresh_db: DatabaseHandle, editor: Actor, column: ColumnSpec, held: str, file_value: str
) -> None:
    spec = DatasetSpec((column, ColumnSpec("Note", "note", "text")))
    dataset_id = _import(
        editor, f"{column.label},Note\n{held},x\n".encode(), uploads.NewDataset("Held"), spec=spec
    ).dataset_id
    data = f"{column.label},Note\n{file_value},y\n".encode()
    parsed = uploads.read_file(data)
    result = uploads.check(parsed, spec)
    assert result.ok
    found = uploads.with_dataset_clashes(result, parsed, spec, dataset_id)
    assert [(e.row, e.column, e.rule) for e in found.errors] == [(2, column.label, "unique")]
    assert "(row 1)" in found.errors[0].message
    assert found.error_count == 1
