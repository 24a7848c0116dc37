"""Bulk loads are audited as one record, checked against what COPY really inserted, covered by
the hash chain, and replayed exactly."""

from __future__ import annotations

import hashlib
import zlib
from typing import Any
from unittest.mock import patch

import pyarrow as pa
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit import bulk
from audit.bulk import bulk_insert, reserve_row_ids
from audit.chain import verify
from audit.changesets import close_changeset, open_changeset
from audit.trail import dataset_state
from portal.errors import AuditError
from tests.conftest import DatabaseHandle
from tests.factories import copy_csv, make_captured_table

pytestmark = pytest.mark.db

DATASET = 11
KEEP_UPLOAD = text(
    "INSERT INTO audit.upload (changeset_id, dataset_id, actor_username, filename, size_bytes,"
    " sha256, mime_type, content) VALUES (:cs, :ds, 'ann', 'f.csv', :size, :sha, 'text/csv',"
    " :content) RETURNING id"
)
FILE = {
    "size": 4,
    "sha": hashlib.sha256(b"a,b\n").hexdigest(),
    "content": zlib.compress(b"a,b\n"),
}
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


def _load(s: Session, table: str, rows=ROWS, *, first: int | None = None) -> int:
    cs = open_changeset(
        session=s,
        kind="upload",
        actor_username="ann",
        actor_display_name="Ann",
        dataset_id=DATASET,
        reason="import",
    )
    reserved = reserve_row_ids(session=s, table_name=table, count=len(rows))
    bulk_insert(
        session=s,
        changeset_id=cs,
        table_name=table,
        columns=COLUMNS,
        csv_bytes=copy_csv(reserved if first is None else first, rows),
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


def test_rows_without_consecutive_ids_are_refused(fresh_db: DatabaseHandle, table: str) -> None:
    stream = copy_csv(1, ROWS[:1]) + copy_csv(5, ROWS[1:2])  # ids 1 and 5
    with Session(fresh_db.app) as s, pytest.raises(DBAPIError, match="consecutive"), s.begin():
        cs = open_changeset(
            session=s, kind="upload", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        bulk_insert(session=s, changeset_id=cs, table_name=table, columns=COLUMNS, csv_bytes=stream)
    assert _table_state(fresh_db, table) == {}


def test_wrong_column_order_is_refused_before_anything_is_written(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, pytest.raises(AuditError, match="in that order"), s.begin():
        cs = open_changeset(
            session=s, kind="upload", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        bulk_insert(
            session=s,
            changeset_id=cs,
            table_name=table,
            columns=COLUMNS[::-1],
            csv_bytes=copy_csv(1, ROWS),
        )


def test_bulk_rows_without_recorded_content_fail_the_commit(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """Switching bulk mode on by hand and loading rows without their content cannot commit:
    rows never land unrecorded."""
    with (
        Session(fresh_db.app) as s,
        pytest.raises(DBAPIError, match="no recorded content"),
        s.begin(),
    ):
        open_changeset(
            session=s,
            kind="upload",
            actor_username="a",
            actor_display_name="A",
            dataset_id=DATASET,
        )
        s.execute(text("SET LOCAL portal.bulk_load = 'on'"))
        s.execute(text(f"INSERT INTO data.{table} (name) VALUES ('sneaky')"))
    assert _table_state(fresh_db, table) == {}
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 0


def test_a_write_after_a_bulk_load_in_the_same_changeset_is_refused(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, pytest.raises(DBAPIError, match="last write"), s.begin():
        _load(s, table)
        s.execute(text(f"UPDATE data.{table} SET qty = 0"))
    assert _table_state(fresh_db, table) == {}


def test_bulk_mode_outside_a_portal_changeset_is_refused(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with fresh_db.app.connect() as conn, pytest.raises(DBAPIError, match="opened by the portal"):
        conn.execute(text("SET portal.bulk_load = 'on'"))
        conn.execute(text(f"INSERT INTO data.{table} (name) VALUES ('sneaky')"))


def test_tampered_bulk_content_is_named_by_verify(fresh_db: DatabaseHandle, table: str) -> None:
    with Session(fresh_db.app) as s, s.begin():
        _load(s, table)
    with Session(fresh_db.app) as s, s.begin():
        _load(s, table, [("kiwi", 9, "1", None)])
    empty = pa.Codec("zstd").compress(b"", asbytes=True)  # a valid stream, of nothing
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(
            text("UPDATE audit.bulk_content SET content = :empty WHERE bulk_load_id = 2"),
            {"empty": empty},
        )
    with Session(fresh_db.app) as s:
        result = verify(session=s)
    assert (result.ok, result.failed_seq) == (False, 2)
    assert "do not match their SHA-256" in (result.problem or "")


def test_bulk_content_links_its_upload(fresh_db: DatabaseHandle, table: str) -> None:
    with Session(fresh_db.app) as s, s.begin():
        cs = open_changeset(
            session=s,
            kind="upload",
            actor_username="ann",
            actor_display_name="Ann",
            dataset_id=DATASET,
        )
        upload = s.scalar(KEEP_UPLOAD, {"cs": cs, "ds": DATASET, **FILE})
        first = reserve_row_ids(session=s, table_name=table, count=len(ROWS))
        result = bulk_insert(
            session=s,
            changeset_id=cs,
            table_name=table,
            columns=COLUMNS,
            csv_bytes=copy_csv(first, ROWS),
            upload_id=upload,
        )
    assert (result.first_row_id, result.last_row_id, result.row_count) == (1, 4, 4)
    with fresh_db.app.connect() as conn:
        stored = conn.execute(
            text("SELECT bulk_load_id, upload_id, compression FROM audit.bulk_content")
        ).one()
    assert tuple(stored) == (result.bulk_load_id, upload, "zstd")
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


def test_close_changeset_counts_bulk_rows(fresh_db: DatabaseHandle, table: str) -> None:
    with Session(fresh_db.app) as s, s.begin():
        cs = _load(s, table)
        counts = close_changeset(session=s, changeset_id=cs)
    assert (counts.inserted, counts.updated, counts.deleted) == (len(ROWS), 0, 0)


def test_chunked_stream_loads_the_same_rows_and_hashes_the_whole(
    fresh_db: DatabaseHandle, table: str
) -> None:
    stream = copy_csv(1, ROWS)
    pieces = [stream[:10], stream[10:57], stream[57:]]
    with Session(fresh_db.app) as s, s.begin():
        cs = open_changeset(
            session=s, kind="upload", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        reserve_row_ids(session=s, table_name=table, count=len(ROWS))
        bulk_insert(
            session=s, changeset_id=cs, table_name=table, columns=COLUMNS, csv_bytes=iter(pieces)
        )
    with fresh_db.app.connect() as conn:
        digest = conn.scalar(text("SELECT content_sha256 FROM audit.bulk_content"))
    assert digest == hashlib.sha256(stream).hexdigest()
    with Session(fresh_db.app) as s:
        assert dataset_state(session=s, dataset_id=DATASET) == _table_state(fresh_db, table)
        assert verify(session=s).ok


def test_a_failing_chunked_copy_raises_and_writes_nothing(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """A row breaking a constraint half-way stops the COPY; the producer thread must not hang."""
    good = copy_csv(1, ROWS[:2])
    duplicate = copy_csv(3, [ROWS[0]] * 50_000)  # 'apple' again: unique violation

    def pieces():
        yield good
        for _ in range(200):  # far more than the queue holds
            yield duplicate

    with Session(fresh_db.app) as s, pytest.raises(DBAPIError, match="unique"), s.begin():
        cs = open_changeset(
            session=s, kind="upload", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        bulk_insert(
            session=s, changeset_id=cs, table_name=table, columns=COLUMNS, csv_bytes=pieces()
        )
    assert _table_state(fresh_db, table) == {}


def test_stored_streams_decompress_whatever_their_codec() -> None:
    """zstd frames, one per slice, read back as one stream; zlib (before migration 0003) too."""
    data = b"".join(f"{i},row {i}\n".encode() for i in range(300_000))
    with patch.object(bulk, "SLICE_SIZE", 1 << 16):
        frames = b"".join(
            pa.Codec("zstd").compress(piece, asbytes=True) for piece in bulk._slices([data])
        )
    assert bulk.decompress("zstd", frames) == data
    assert bulk.decompress("zlib", zlib.compress(data, 1)) == data
    with pytest.raises(ValueError, match="unknown compression"):
        bulk.decompress("rot13", data)
    with pytest.raises(OSError, match="ZSTD decompress failed"):
        bulk.decompress("zstd", b"not zstd")


# --- Uploads and bulk contents join only an open changeset of their own transaction (0015) ---

KEEP_CONTENT = text(
    "INSERT INTO audit.bulk_content (bulk_load_id, upload_id, content, content_sha256)"
    " VALUES (:bulk, :upload, '\\x00', 'x')"
)


def _refusal(db: DatabaseHandle, statement: Any, **params: object) -> str:
    """What PostgreSQL says to ``statement`` run by the app role in a transaction of its own
    (rolled back), "" if it takes it."""
    with db.app.connect() as conn:
        try:
            conn.execute(statement, params)
        except DBAPIError as exc:
            return str(exc.orig)
        finally:
            conn.rollback()
    return ""


def test_an_upload_cannot_join_a_sealed_or_another_transaction_s_changeset(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """With the app role's credentials, an upload kept under another person's changeset still
    open elsewhere was sealed into it (and verify said intact); one added to a sealed changeset
    made verify report tampering nobody can undo."""
    with Session(fresh_db.app) as s, s.begin():
        sealed = _load(s, table)
    others = Session(fresh_db.app)
    others.begin()
    open_elsewhere = open_changeset(
        session=others,
        kind="edit",
        actor_username="bob",
        actor_display_name="Bob",
        dataset_id=DATASET,
        reason="his edit",
    )
    try:
        for cs in (sealed, open_elsewhere, None):
            said = _refusal(fresh_db, KEEP_UPLOAD, cs=cs, ds=DATASET, **FILE)
            assert "an upload is kept only with an open changeset of its own transaction" in said
    finally:
        others.rollback()
        others.close()
    with Session(fresh_db.app) as s:
        assert s.scalar(text("SELECT count(*) FROM audit.upload")) == 0
        assert verify(session=s).ok


def test_an_upload_joins_its_own_open_changeset_of_its_dataset_only(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        cs = _load(s, table)
        with pytest.raises(DBAPIError, match="which is of another dataset"), s.begin_nested():
            s.execute(KEEP_UPLOAD, {"cs": cs, "ds": DATASET + 1, **FILE})
        s.execute(KEEP_UPLOAD, {"cs": cs, "ds": DATASET, **FILE})
    with Session(fresh_db.app) as s:
        assert s.scalar(text("SELECT count(*) FROM audit.upload")) == 1
        assert verify(session=s).ok


def test_a_bulk_content_joins_only_its_own_open_bulk_load_and_upload(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        sealed = _load(s, table)
        upload_of_sealed = s.scalar(KEEP_UPLOAD, {"cs": sealed, "ds": DATASET, **FILE})
    with Session(fresh_db.app) as s:
        bulk_of_sealed = s.scalar(
            text("SELECT id FROM audit.bulk_load WHERE changeset_id = :cs"), {"cs": sealed}
        )
    said = _refusal(fresh_db, KEEP_CONTENT, bulk=bulk_of_sealed, upload=None)
    assert f"bulk load {bulk_of_sealed} is not of an open changeset of this transaction" in said
    with Session(fresh_db.app) as s, s.begin():
        _load(s, table, [("kiwi", 1, "1", "")])
        mine = s.scalar(text("SELECT max(id) FROM audit.bulk_load"))
        # refused before its key is checked (bulk_insert kept this load's content already)
        with pytest.raises(DBAPIError, match="is not of changeset"), s.begin_nested():
            s.execute(KEEP_CONTENT, {"bulk": mine, "upload": upload_of_sealed})
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok
