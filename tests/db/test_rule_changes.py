"""Changing a dataset's column rules after its creation: each change is a ``schema`` changeset
(each rule before and after, and the new spec), the table's constraints follow it — PostgreSQL
takes what the new rules allow and refuses what they do not — and rows that break a new or
stricter rule are named, with nothing changed. The columns themselves (names, types, scale)
cannot change; a stale view, a missing reason or an editor is refused and writes nothing."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy.exc
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from portal import rule_changes, writes
from portal.actor import Actor
from portal.cli import main
from portal.datasets import ChangedMeanwhile, dataset_spec, get_dataset
from portal.db import session_scope
from portal.diffs import ChangeSet, RowUpdate
from portal.errors import PermissionDenied, ValidationError
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import make_user, table_name, upload_dataset

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True),
        ColumnSpec("Qty", "qty", "integer", min=0, max=100),
        ColumnSpec("Kind", "kind", "category", options=("a", "b", "c")),
        ColumnSpec("Price", "price", "decimal", scale=2),
    )
)
CSV = b"Name,Qty,Kind,Price\nann,1,a,1.50\nbob,,b,2.00\ncy,50,a,\nann,4,,\n"


@pytest.fixture
def people(fresh_db: DatabaseHandle) -> tuple[Actor, Actor, int]:
    """An admin, an editor, and the editor's dataset of four rows (row 2's qty empty, rows 1
    and 4 both named ann)."""
    with Session(fresh_db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
        eddie, _ = make_user(s, role="editor")
    admin, editor = Actor(boss, "Boss", "admin"), Actor(eddie, "Eddie", "editor")
    return admin, editor, upload_dataset(editor, CSV, spec=SPEC, name="People")


def _with(column: str, **rules: Any) -> DatasetSpec:
    return DatasetSpec(tuple(replace(c, **rules) if c.name == column else c for c in SPEC.columns))


def _change(
    actor: Actor,
    dataset_id: int,
    spec: DatasetSpec,
    *,
    expected_version: int = 1,
    reason: str = "the rules changed",
) -> int:
    with session_scope() as s:
        return rule_changes.change_rules(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            spec=spec,
            expected_version=expected_version,
            reason=reason,
        )


def _state(db: DatabaseHandle, dataset_id: int) -> tuple[Any, ...]:
    """The dataset's spec and version, its table's constraints and the changesets written."""
    table = table_name(db.app, dataset_id)
    with db.app.connect() as conn:
        return (
            conn.execute(
                text("SELECT spec, spec_version FROM portal.datasets WHERE id = :i"),
                {"i": dataset_id},
            ).one(),
            conn.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                    " WHERE conrelid = CAST(:t AS regclass) ORDER BY conname"
                ),
                {"t": f"data.{table}"},
            ).all(),
            conn.execute(
                text(
                    "SELECT attname, attnotnull FROM pg_attribute WHERE attnum > 0"
                    " AND attrelid = CAST(:t AS regclass) ORDER BY attnum"
                ),
                {"t": f"data.{table}"},
            ).all(),
            conn.scalar(text("SELECT count(*) FROM audit.changeset")),
        )


def _write(db: DatabaseHandle, dataset_id: int, sql: str) -> None:
    """A write as the app role (captured out of band): what the table's constraints take."""
    with db.app.begin() as conn:
        conn.execute(text(sql.format(table=f"data.{table_name(db.app, dataset_id)}")))


def test_a_looser_maximum_is_audited_and_the_table_takes_what_it_allows(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        _write(fresh_db, dataset_id, "UPDATE {table} SET qty = 150 WHERE _row_id = 1")
    changeset_id = _change(admin, dataset_id, _with("qty", max=200), reason="bigger orders")
    _write(fresh_db, dataset_id, "UPDATE {table} SET qty = 150 WHERE _row_id = 1")
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="ck_qty_max"):
        _write(fresh_db, dataset_id, "UPDATE {table} SET qty = 201 WHERE _row_id = 1")
    with fresh_db.app.connect() as conn:
        recorded = conn.execute(
            text(
                "SELECT kind, dataset_id, actor_username, reason, detail, seq"
                " FROM audit.changeset WHERE id = :i"
            ),
            {"i": changeset_id},
        ).one()
    assert recorded[:4] == ("schema", dataset_id, admin.username, "bigger orders")
    assert recorded.detail["action"] == "rules"
    assert recorded.detail["changes"] == [
        {"column": "qty", "label": "Qty", "rule": "max", "before": 100, "after": 200}
    ]
    assert recorded.detail["spec_version"] == {"before": 1, "after": 2}
    assert DatasetSpec.from_json(recorded.detail["spec"]) == replace(
        _with("qty", max=200), version=2
    )
    assert recorded.seq is not None  # sealed
    with session_scope() as s:
        dataset = get_dataset(session=s, dataset_id=dataset_id)
        assert (dataset.spec_version, dataset_spec(dataset).columns[1].max) == (2, 200)
        assert verify(session=s).ok
    out = CliRunner().invoke(main, ["audit", "verify", "--data"])
    assert out.exit_code == 0, out.output


def test_rows_breaking_a_stricter_rule_are_named_and_nothing_changes(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    before = _state(fresh_db, dataset_id)
    stricter = DatasetSpec(
        (
            replace(SPEC.columns[0], unique=True),
            replace(SPEC.columns[1], required=True, max=10),
            replace(SPEC.columns[2], options=("b", "c")),
            SPEC.columns[3],
        )
    )
    with pytest.raises(ValidationError) as refused:
        _change(admin, dataset_id, stricter)
    message = str(refused.value)
    assert message.startswith("Rows of the dataset break the new rules, so nothing was changed.")
    assert "- “Qty”, required: 1 row breaks it — row 2 (no value)" in message
    assert "- “Qty”, max: 1 row breaks it — row 3 (50)" in message
    assert "- “Kind”, options: 2 rows break it — row 1 (“a”), 3 (“a”)" in message
    assert "- “Name”, unique: values appear in more than one row — “ann” in rows 1, 4" in message
    assert _state(fresh_db, dataset_id) == before
    _write(fresh_db, dataset_id, "UPDATE {table} SET qty = 90 WHERE _row_id = 1")  # max 100 still


def test_a_rule_the_rows_keep_is_enforced_by_the_table(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    _write(fresh_db, dataset_id, "UPDATE {table} SET qty = 2, name = 'bo' WHERE _row_id = 2")
    _write(fresh_db, dataset_id, "UPDATE {table} SET name = 'al' WHERE _row_id = 4")
    stricter = DatasetSpec(
        (
            replace(SPEC.columns[0], unique=True, max_length=3),
            replace(SPEC.columns[1], required=True),
            replace(SPEC.columns[2], options=("a", "b", "z")),
            SPEC.columns[3],
        )
    )
    _change(admin, dataset_id, stricter)
    for breaking, constraint in [
        ("qty = NULL", "null value"),
        ("name = 'ann'", "uq_"),  # row 1's name
        ("name = 'anna'", "ck_name_len"),
        ("kind = 'c'", "ck_kind_in"),
    ]:
        with pytest.raises(sqlalchemy.exc.IntegrityError, match=constraint):
            _write(fresh_db, dataset_id, f"UPDATE {{table}} SET {breaking} WHERE _row_id = 2")
    _write(fresh_db, dataset_id, "UPDATE {table} SET kind = 'z' WHERE _row_id = 2")
    # Loosened again: the constraints go.
    _change(admin, dataset_id, _with("kind", options=("a", "b", "c", "z")), expected_version=2)
    _write(fresh_db, dataset_id, "UPDATE {table} SET qty = NULL, name = 'ann' WHERE _row_id = 2")


def test_a_new_label_changes_the_spec_and_a_commit_prepared_before_is_refused(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, editor, dataset_id = people
    [_, constraints, not_null, _] = _state(fresh_db, dataset_id)
    _change(admin, dataset_id, _with("qty", label="Quantity"))
    spec, after_constraints, after_not_null, _ = _state(fresh_db, dataset_id)
    assert (spec.spec["columns"][1]["label"], spec.spec_version) == ("Quantity", 2)
    assert (after_constraints, after_not_null) == (constraints, not_null)  # no DDL
    with (
        session_scope() as s,
        pytest.raises(writes.SpecChanged, match="changed since its rows were read"),
    ):
        writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(updates=(RowUpdate(1, 1, {"qty": 1}, {"qty": 5}),)),
            reason="r",
        )


def _columns(*columns: ColumnSpec) -> DatasetSpec:
    return DatasetSpec(columns)


@pytest.mark.parametrize(
    ("who", "spec", "expected_version", "reason", "refusal"),
    [
        ("editor", _with("qty", max=200), 1, "why", "Only admins"),
        ("admin", _with("qty", max=200), 2, "why", "Someone changed the columns of"),
        ("admin", _with("qty", max=200), 1, "  ", "Say why"),
        ("admin", _with("qty", max=200), 1, "x" * 2_001, "The reason is 2,001 characters"),
        ("admin", SPEC, 1, "why", "These are the rules of “People” already"),
        ("admin", _with("qty", type="decimal"), 1, "why", "“Qty”: its type cannot change"),
        ("admin", _with("qty", name="quantity"), 1, "why", "The columns themselves cannot"),
        ("admin", _with("price", scale=3), 1, "why", "“Price”: its scale cannot change"),
        ("admin", _columns(*SPEC.columns[:3]), 1, "why", "The columns themselves cannot"),
        ("admin", _with("qty", label="Q\u200bty"), 1, "why", "invisible or control character"),
        ("admin", _with("name", regex=r"^\w+$"), 1, "why", r"\\w"),
        ("admin", _with("name", regex=r"^*[a-z]$"), 1, "why", "not one PostgreSQL accepts"),
    ],
)
def test_a_refused_change_of_rules_writes_nothing(
    fresh_db: DatabaseHandle,
    people: tuple[Actor, Actor, int],
    who: str,
    spec: DatasetSpec,
    expected_version: int,
    reason: str,
    refusal: str,
) -> None:
    admin, editor, dataset_id = people
    before = _state(fresh_db, dataset_id)
    with pytest.raises((PermissionDenied, ValidationError, ChangedMeanwhile), match=refusal):
        _change(
            admin if who == "admin" else editor,
            dataset_id,
            spec,
            expected_version=expected_version,
            reason=reason,
        )
    assert _state(fresh_db, dataset_id) == before


def test_changes_read_in_words() -> None:
    changes = rule_changes.rule_changes(
        SPEC,
        DatasetSpec(
            (
                replace(SPEC.columns[0], required=False, regex="^[a-z]+$"),
                replace(SPEC.columns[1], label="Quantity", max=None),
                replace(SPEC.columns[2], options=("a", "b")),
                SPEC.columns[3],
            )
        ),
    )
    assert [rule_changes.change_text(c) for c in changes] == [
        "Name · required: yes → no",
        "Name · pattern: (none) → ^[a-z]+$",
        "Qty · label: Qty → Quantity",
        "Qty · max: 100 → (none)",
        "Kind · options: a | b | c → a | b",
    ]


def test_a_pattern_kept_from_before_is_not_held_to_the_rules_for_new_ones(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    """A pattern a table has already (here \\w, which a new dataset's rules refuse since the
    regex engines read it differently) does not stop a new pattern on another column; a new
    pattern is held to those rules."""
    admin, editor, _ = people
    two = DatasetSpec((ColumnSpec("Name", "name", "text"), ColumnSpec("Note", "note", "text")))
    dataset_id = upload_dataset(editor, b"Name,Note\nann,x\n", spec=two, name="Notes")
    table = table_name(fresh_db.app, dataset_id)
    kept = DatasetSpec((replace(two.columns[0], regex=r"^\w+$"), two.columns[1]))
    with fresh_db.superuser.begin() as conn:  # as a dataset made before that refusal holds it
        conn.execute(
            text("UPDATE portal.datasets SET spec = CAST(:s AS jsonb) WHERE id = :i"),
            {"s": json.dumps(kept.to_json()), "i": dataset_id},
        )
        conn.execute(
            text(f"ALTER TABLE data.{table} ADD CONSTRAINT ck_name_re CHECK (name ~ '^\\w+$')")
        )
    noted = DatasetSpec((kept.columns[0], replace(two.columns[1], regex="^[a-z]*$")))
    _change(admin, dataset_id, noted)
    with pytest.raises(ValidationError, match=r"\\w"):
        _change(
            admin,
            dataset_id,
            DatasetSpec((noted.columns[0], replace(two.columns[1], regex=r"^\w*$"))),
            expected_version=2,
        )
