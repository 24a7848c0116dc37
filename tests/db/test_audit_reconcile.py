"""``portal audit verify --data``: each dataset's table is compared, cell by cell, with the state
its audit log rebuilds. Everything the portal and other tools write through capture matches;
every way of changing a table around capture — by its owner, by a superuser, by a forged bulk
stream — shows up as a difference, though the hash chain stays intact."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.orm import Session

import audit.reconcile
from audit.chain import verify
from audit.changesets import open_changeset
from audit.reconcile import CellDrift, DatasetDrift, check_datasets
from portal.actor import Actor
from portal.cli import main
from portal.errors import AuditError
from tests.conftest import DatabaseHandle
from tests.db.test_writes import CSV, SPEC
from tests.factories import copy_csv, make_user, table_name, upload_dataset

pytestmark = pytest.mark.db


@pytest.fixture
def people(fresh_db: DatabaseHandle) -> tuple[int, str]:
    """A dataset uploaded through the portal (ann, bob, cy, dee: row ids 1-4), then written
    outside it: an insert, an update and a delete, all captured."""
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    dataset_id = upload_dataset(Actor(name, "E", "editor"), CSV, spec=SPEC, name="People")
    table = table_name(fresh_db.app, dataset_id)
    with fresh_db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO data.{table} (name, qty, price) VALUES ('eve', 5, 5.10)"))
        conn.execute(text(f"UPDATE data.{table} SET note = 'second' WHERE name = 'bob'"))
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"DELETE FROM data.{table} WHERE name = 'dee'"))
    return dataset_id, str(table)


def _check(db: DatabaseHandle) -> list[DatasetDrift]:
    with Session(db.app) as s, s.begin():
        return check_datasets(session=s)


def test_a_dataset_written_through_capture_matches_its_log(
    fresh_db: DatabaseHandle, people: tuple[int, str]
) -> None:
    [drift] = _check(fresh_db)
    assert drift.ok
    assert (drift.dataset_id, drift.rows) == (people[0], 4)
    assert drift.summary() == f"dataset {people[0]} “People”: 4 rows, as the audit log has them"


def _owner_disables_capture(db: DatabaseHandle, table: str) -> None:
    with db.app.begin() as conn:  # the app role owns the tables it creates
        conn.execute(text(f"ALTER TABLE data.{table} DISABLE TRIGGER audit_capture_update"))
        conn.execute(text(f"UPDATE data.{table} SET qty = 666 WHERE name = 'bob'"))
        conn.execute(text(f"ALTER TABLE data.{table} ENABLE TRIGGER audit_capture_update"))


def _owner_rewrites_a_column(db: DatabaseHandle, table: str) -> None:
    with db.app.begin() as conn:
        conn.execute(text(f"ALTER TABLE data.{table} ALTER COLUMN note TYPE text USING 'x'"))


def _inheriting_table(db: DatabaseHandle, table: str) -> None:
    with db.app.begin() as conn:
        conn.execute(text(f"CREATE TABLE data.{table}_x () INHERITS (data.{table})"))
        conn.execute(text(f"INSERT INTO data.{table}_x (_row_id, name) VALUES (100, 'ghost')"))


def _superuser_without_triggers(db: DatabaseHandle, table: str) -> None:
    with db.superuser.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"DELETE FROM data.{table} WHERE name = 'ann'"))


def _scale_only(db: DatabaseHandle, table: str) -> None:
    with db.app.begin() as conn:  # 1.50 -> 1.5: equal numbers, so capture sees no change
        conn.execute(text(f"UPDATE data.{table} SET price = 1.5 WHERE name = 'ann'"))


def _forged_bulk_stream(db: DatabaseHandle, table: str) -> None:
    """An upload whose stored COPY stream is not the rows it inserted (the app role's own
    credentials, used by hand)."""
    with Session(db.app) as s, s.begin():
        dataset_id = s.scalar(
            text("SELECT id FROM portal.datasets WHERE table_name = :t"), {"t": table}
        )
        changeset = open_changeset(
            session=s,
            kind="upload",
            actor_username="mallory",
            actor_display_name="M",
            dataset_id=dataset_id,
        )
        s.execute(text("SELECT set_config('portal.bulk_load', 'on', true)"))
        s.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('real', 1)"))
        s.execute(text("SELECT set_config('portal.bulk_load', 'off', true)"))
        bulk, first = s.execute(
            text("SELECT id, first_row_id FROM audit.bulk_load WHERE changeset_id = :c"),
            {"c": changeset},
        ).one()
        fake = copy_csv(first, [("fake", 9, None, None)])
        s.execute(
            text(
                "INSERT INTO audit.bulk_content (bulk_load_id, compression, content,"
                " content_sha256) VALUES (:b, 'zlib', :c, :h)"
            ),
            {"b": bulk, "c": zlib.compress(fake), "h": hashlib.sha256(fake).hexdigest()},
        )


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_owner_disables_capture, {"differing": 1, "cells": [(2, "qty", 2, 666)]}),
        (
            _owner_rewrites_a_column,
            {
                "differing": 4,
                "cells": [
                    (1, "note", "first", "x"),
                    (2, "note", "second", "x"),
                    (3, "note", "third", "x"),
                    (5, "note", None, "x"),
                ],
            },
        ),
        (_inheriting_table, {"extra": 1, "sample_extra": (100,)}),
        (_superuser_without_triggers, {"missing": 1, "sample_missing": (1,)}),
        (_scale_only, {"differing": 1, "cells": [(1, "price", Decimal("1.50"), Decimal("1.5"))]}),
        (
            _forged_bulk_stream,
            {"differing": 1, "cells": [(6, "name", "fake", "real"), (6, "qty", 9, 1)]},
        ),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_a_change_made_around_capture_is_a_difference(
    fresh_db: DatabaseHandle,
    people: tuple[int, str],
    tamper: Callable[[DatabaseHandle, str], None],
    expected: dict[str, object],
) -> None:
    tamper(fresh_db, people[1])
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok  # the chain cannot see it
    [drift] = _check(fresh_db)
    assert not drift.ok
    found = {
        "differing": drift.differing,
        "extra": drift.extra,
        "missing": drift.missing,
        "sample_extra": drift.sample_extra,
        "sample_missing": drift.sample_missing,
        "cells": [(c.row_id, c.column, c.logged, c.stored) for c in drift.sample_cells],
    }
    assert {key: found[key] for key in expected} == expected
    assert drift.summary().startswith(f"dataset {people[0]} “People” does not match its audit log")


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (
            "UPDATE audit.row_change SET after = '[1, 2]' WHERE op = 'update'",
            "holds [1, 2], not a row",
        ),
        (
            "UPDATE audit.row_change SET after = '\"eve\"' WHERE op = 'insert'",
            'holds "eve", not a row',
        ),
        ("UPDATE audit.bulk_load SET columns = '[]'", "records no usable column list ([])"),
        (
            'UPDATE audit.bulk_load SET columns = \'[["name", "integer"]]\'',
            "do not load into the columns it records",
        ),
    ],
    ids=["update-image-a-list", "insert-image-a-string", "no-columns", "wrong-columns"],
)
def test_a_log_altered_past_reading_stops_the_check_with_an_audit_error(
    fresh_db: DatabaseHandle, people: tuple[int, str], damage: str, said: str
) -> None:
    """Audit rows a superuser rewrote (triggers off) into something that is no row image, or a
    bulk load whose column list no longer fits its stream: the chain names the changeset; the
    check of the datasets stops with an AuditError saying what it met (the Audit page shows
    it and records a failed check), not a TypeError or a syntax error from the replay."""
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(damage))
    with pytest.raises(AuditError, match="altered after sealing") as raised:
        _check(fresh_db)
    assert said in str(raised.value)
    with Session(fresh_db.app) as s:
        assert not verify(session=s).ok


def test_a_commit_during_the_check_is_not_a_difference(
    fresh_db: DatabaseHandle, people: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log and the table are read in one snapshot: a write committed between reading the
    one and the other is in neither."""
    rebuild = audit.reconcile.dataset_state

    def rebuild_then_commit(**kwargs: object) -> object:
        state = rebuild(**kwargs)  # type: ignore[arg-type]
        with fresh_db.app.begin() as conn:
            conn.execute(text(f"UPDATE data.{people[1]} SET qty = 99"))
        return state

    monkeypatch.setattr(audit.reconcile, "dataset_state", rebuild_then_commit)
    [drift] = _check(fresh_db)
    assert drift.ok, drift.summary()
    monkeypatch.undo()
    assert _check(fresh_db)[0].ok  # and the write was captured


def test_cli_verify_with_data(fresh_db: DatabaseHandle, people: tuple[int, str]) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--data"])
    assert ok.exit_code == 0, ok.output
    assert "4 rows, as the audit log has them" in ok.output
    _owner_disables_capture(fresh_db, people[1])
    assert runner.invoke(main, ["audit", "verify"]).exit_code == 0  # the chain alone: intact
    bad = runner.invoke(main, ["audit", "verify", "--data"])
    assert bad.exit_code == 1
    assert "chain intact" in bad.output
    assert "1 row differs (row 2 qty: log 2, table 666)" in bad.output


def test_a_drifted_row_count_is_noted_and_recounted(
    fresh_db: DatabaseHandle, people: tuple[int, str]
) -> None:
    """A stored count the table no longer bears out (kept before migration 0016, or after a
    write with triggers off) is bookkeeping, not tampering: verify notes it and names the
    command that corrects it, and its exit status stays the log's."""
    dataset_id = people[0]
    _store_row_count(fresh_db, dataset_id, 9)
    runner = CliRunner()
    noted = runner.invoke(main, ["audit", "verify", "--data"])
    assert noted.exit_code == 0, noted.output
    assert (
        f"dataset {dataset_id} “People”: 4 rows, as the audit log has them; its stored row count"
        f" says 9 (the Datasets page shows that): `portal dataset recount {dataset_id}` corrects it"
    ) in noted.output
    fixed = runner.invoke(main, ["dataset", "recount", str(dataset_id)])
    assert fixed.exit_code == 0, fixed.output
    assert fixed.output == f"dataset {dataset_id} “People”: stored row count 9 corrected to 4\n"
    clean = runner.invoke(main, ["audit", "verify", "--data"])
    assert clean.exit_code == 0, clean.output
    assert "stored row count" not in clean.output
    every = runner.invoke(main, ["dataset", "recount"])
    assert every.output == (
        f"dataset {dataset_id} “People”: 4 rows, as its stored count said; nothing was changed\n"
    )
    _store_row_count(fresh_db, dataset_id, 9)
    unknown = runner.invoke(main, ["dataset", "recount", str(dataset_id), "999"])
    assert unknown.exit_code == 2
    assert "no dataset has id 999" in unknown.output
    with fresh_db.app.connect() as conn:  # refused whole: the known one was not recounted
        stored = conn.scalar(
            text("SELECT row_count FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
        )
    assert stored == 9


def _store_row_count(db: DatabaseHandle, dataset_id: int, count: int) -> None:
    with db.app.begin() as conn:
        conn.execute(
            text("UPDATE portal.datasets SET row_count = :n WHERE id = :i"),
            {"n": count, "i": dataset_id},
        )


def test_a_recount_with_no_datasets_says_so(fresh_db: DatabaseHandle) -> None:
    out = CliRunner().invoke(main, ["dataset", "recount"])
    assert out.exit_code == 0, out.output
    assert out.output == "There are no datasets yet; nothing was counted.\n"


def _app_role_removes_the_dataset(db: DatabaseHandle, dataset_id: int, table: str) -> None:
    with db.app.begin() as conn:  # DML on portal.*, and the owner of its data tables
        conn.execute(text("DELETE FROM portal.datasets WHERE id = :id"), {"id": dataset_id})
        conn.execute(text(f"DROP TABLE data.{table}"))


def _app_role_unlists_the_dataset(db: DatabaseHandle, dataset_id: int, _table: str) -> None:
    with db.app.begin() as conn:
        conn.execute(text("DELETE FROM portal.datasets WHERE id = :id"), {"id": dataset_id})


def _app_role_drops_the_table(db: DatabaseHandle, _dataset_id: int, table: str) -> None:
    with db.app.begin() as conn:
        conn.execute(text(f"DROP TABLE data.{table}"))


@pytest.mark.parametrize(
    ("removal", "said"),
    [
        (
            _app_role_removes_the_dataset,
            "its row in portal.datasets was deleted outside the portal",
        ),
        (
            _app_role_unlists_the_dataset,
            "its row in portal.datasets was deleted outside the portal",
        ),
        (_app_role_drops_the_table, "its table data.{table} was dropped outside the portal"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_a_dataset_removed_outside_the_portal_is_a_difference(
    fresh_db: DatabaseHandle,
    people: tuple[int, str],
    removal: Callable[[DatabaseHandle, int, str], None],
    said: str,
) -> None:
    """The portal never deletes a dataset, but the app role's credentials can: its row in
    ``portal.datasets`` (DML on ``portal.*``) and its table (which it owns). The log still holds
    the dataset's changesets, so the check names it instead of skipping it (or stopping on the
    missing table), and the whole dataset's rows count as missing."""
    dataset_id, table = people
    removal(fresh_db, dataset_id, table)
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok  # the chain cannot see it
    [drift] = _check(fresh_db)
    assert not drift.ok
    assert (drift.dataset_id, drift.name, drift.missing) == (dataset_id, "People", 4)
    assert drift.summary() == (
        f"dataset {dataset_id} “People” does not match its audit log: "
        + said.format(table=table)
        + "; 4 rows of the log not in the table (ids 1, 2, 3, 5)"
    )
    out = CliRunner().invoke(main, ["audit", "verify", "--data"])
    assert out.exit_code == 1, out.output
    assert said.format(table=table) in out.output


def test_a_summary_lists_a_few_ids_and_counts_them_all() -> None:
    drift = DatasetDrift(
        dataset_id=3,
        name="P",
        rows=10,
        missing=0,
        extra=7,
        differing=1,
        sample_missing=(),
        sample_extra=(11, 12, 13, 14, 15),
        sample_cells=(CellDrift(1, "qty", 1, None),),
    )
    assert drift.summary() == (
        "dataset 3 “P” does not match its audit log: 1 row differs (row 1 qty: log 1, table"
        " None); 7 rows the log never recorded (ids 11, 12, 13, 14, 15, …)"
    )
