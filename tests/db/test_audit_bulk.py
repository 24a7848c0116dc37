"""Bulk loads are audited as one record, checked against what COPY really inserted, covered by
the hash chain, and replayed exactly."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.bulk import bulk_insert, reserve_row_ids
from audit.chain import verify
from audit.changesets import open_changeset
from audit.trail import dataset_state
from tests.conftest import DatabaseHandle
from tests.factories import copy_csv, make_captured_table

pytestmark = pytest.mark.db

DATASET = 11
COLUMNS = ["name", "qty", "price", "note"]
ROWS = [
    ("apple", 1, "0.50", 'a, "quoted" note'),
    ("pear", None, "10.10", ""),
    ("plum", 3, None, None),
    ("fig", -4, "7", "line\nbreak ☃"),
]


@pytest.fixture
def table(fresh_db: DatabaseHandle) -> str:
    with Session(fresh_db.app) as s, s.begin():
        return make_captured_table(s, dataset_id=DATASET)


def _load(s: Session, table: str, rows=ROWS, *, declared: int | None = None) -> int:
    cs = open_changeset(
        session=s,
        kind="upload",
        actor_username="ann",
        actor_display_name="Ann",
        dataset_id=DATASET,
        reason="import",
    )
    first = reserve_row_ids(session=s, table_name=table, count=len(rows))
    bulk_insert(
        session=s,
        changeset_id=cs,
        dataset_id=DATASET,
        table_name=table,
        columns=COLUMNS,
        first_row_id=first,
        row_count=len(rows) if declared is None else declared,
        csv_bytes=copy_csv(first, rows),
    )
    return cs


def _table_state(db: DatabaseHandle, table: str) -> dict[int, dict]:
    with db.app.connect() as conn:
        rows = conn.execute(
            text(f"SELECT _row_id, to_jsonb(t) - '_row_id' - '_version' FROM data.{table} t")
        ).all()
    return dict(rows)


def test_bulk_load_is_one_audit_record_and_replays_exactly(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        cs = _load(s, table)
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.row_change")) == 0
        bulk = conn.execute(
            text(
                "SELECT changeset_id, first_row_id, last_row_id, row_count,"
                " columns FROM audit.bulk_load"
            )
        ).one()
        counts = conn.execute(text("SELECT inserted, updated, deleted FROM audit.changeset")).one()
    assert tuple(bulk) == (
        cs,
        1,
        4,
        4,
        [["name", "text"], ["qty", "integer"], ["price", "numeric(12,2)"], ["note", "text"]],
    )
    assert tuple(counts) == (4, 0, 0)
    real = _table_state(fresh_db, table)
    assert real[2] == {"name": "pear", "qty": None, "price": 10.10, "note": ""}
    assert real[3]["note"] is None  # unquoted empty field is NULL, quoted "" is empty text
    with Session(fresh_db.app) as s:
        assert dataset_state(session=s, dataset_id=DATASET) == real
        assert verify(session=s).ok


def test_rows_that_do_not_match_the_declaration_are_refused(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, pytest.raises(DBAPIError, match="declared 3 rows"), s.begin():
        _load(s, table, ROWS[:2], declared=3)
    assert _table_state(fresh_db, table) == {}


def test_declared_but_never_loaded_bulk_load_fails_the_commit(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, pytest.raises(DBAPIError, match="never loaded"), s.begin():
        cs = open_changeset(
            session=s, kind="upload", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        s.execute(
            text(
                "INSERT INTO audit.bulk_load (changeset_id, dataset_id, first_row_id, last_row_id,"
                " row_count, columns, content, content_sha256)"
                " VALUES (:cs, :ds, 1, 5, 5, '[]', '\\x00', 'x')"
            ),
            {"cs": cs, "ds": DATASET},
        )
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 0


def test_a_write_after_a_bulk_load_in_the_same_changeset_is_refused(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, pytest.raises(DBAPIError, match="last write"), s.begin():
        _load(s, table)
        s.execute(text(f"UPDATE data.{table} SET qty = 0"))
    assert _table_state(fresh_db, table) == {}


def test_bulk_load_without_the_portal_changeset_is_refused(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        _load(s, table)
    with fresh_db.app.connect() as conn, pytest.raises(DBAPIError, match="not a bulk load"):
        conn.execute(text("SET portal.bulk_load_id = '1'"))  # someone else's, already sealed
        conn.execute(text(f"INSERT INTO data.{table} (name) VALUES ('sneaky')"))


def test_tampered_bulk_content_is_named_by_verify(fresh_db: DatabaseHandle, table: str) -> None:
    with Session(fresh_db.app) as s, s.begin():
        _load(s, table)
    with Session(fresh_db.app) as s, s.begin():
        _load(s, table, [("kiwi", 9, "1", None)])
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(
            text("UPDATE audit.bulk_load SET content = '\\x789c030000000001' WHERE id = 2")
        )  # zlib of b""
    with Session(fresh_db.app) as s:
        result = verify(session=s)
    assert (result.ok, result.failed_seq) == (False, 2)
    assert "do not match their SHA-256" in (result.problem or "")
