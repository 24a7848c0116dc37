"""Indexes on demand: a large dataset's column gets its ``(column, _row_id)`` btree the first time
its Edit window is sorted or filtered by it, built in the background; an interrupted build is
redone; small datasets and ``contains`` filters build nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import browse, indexes, writes
from portal.actor import Actor
from portal.browse import RowFilter, Sort
from portal.config import get_settings
from portal.db import get_engine, session_scope
from portal.spec import index_name
from tests.conftest import DatabaseHandle
from tests.factories import make_user, statements_sent, table_name, upload_dataset

pytestmark = pytest.mark.db

CSV = ("Name,Qty,Note\n" + "".join(f"r{i},{i % 3},n{i}\n" for i in range(1, 31))).encode()


@pytest.fixture
def dataset(fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("PORTAL_INDEX_FROM_ROWS", "20")
    get_settings.cache_clear()
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    dataset_id = upload_dataset(Actor(name, "Ed", "editor"), CSV, name="Indexed")
    return dataset_id, table_name(fresh_db.app, dataset_id)


def index_state(db: DatabaseHandle, table: str) -> dict[str, tuple[bool, str]]:
    """Index name -> (valid, definition) of the table's indexes other than its keys."""
    with db.owner.connect() as conn:
        return {
            r.relname: (r.indisvalid, r.definition)
            for r in conn.execute(
                text(
                    "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) AS definition"
                    " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE i.indrelid = CAST(:t AS regclass)"
                    " AND NOT i.indisprimary AND NOT i.indisunique"
                ),
                {"t": f"data.{table}"},
            )
        }


def read(dataset_id: int, **kw: object) -> writes.EditWindow:
    with session_scope() as s:
        return writes.read_window(session=s, dataset_id=dataset_id, limit=5, **kw)  # type: ignore[arg-type]


def test_sorting_or_filtering_a_large_dataset_builds_the_column_s_index_once(
    fresh_db: DatabaseHandle, dataset: tuple[int, str]
) -> None:
    dataset_id, table = dataset
    assert read(dataset_id).indexing == ()  # by _row_id: the primary key serves it
    assert read(dataset_id, filters=[RowFilter("note", "contains", "1")]).indexing == ()
    assert index_state(fresh_db, table) == {}

    first = read(dataset_id, sort=Sort("qty", descending=True))
    assert first.indexing == ("qty",)  # this read ran without it; the page says so
    indexes.wait(timeout=30)
    qty_index = index_name(table, "qty")
    valid, definition = index_state(fresh_db, table)[qty_index]
    assert valid
    assert definition.endswith("USING btree (qty, _row_id)")
    assert read(dataset_id, sort=Sort("qty")).indexing == ()
    # The rows come back the same with the index: ties by _row_id.
    assert [r[0] for r in read(dataset_id, sort=Sort("qty", descending=True)).rows] == [
        r[0] for r in first.rows
    ]

    filtered = read(dataset_id, filters=[RowFilter("note", "equals", "n7")], sort=Sort("qty"))
    assert filtered.indexing == ("note",)
    indexes.wait(timeout=30)
    assert set(index_state(fresh_db, table)) == {qty_index, index_name(table, "note")}


def test_small_datasets_are_not_indexed(
    fresh_db: DatabaseHandle, dataset: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id, table = dataset
    monkeypatch.setenv("PORTAL_INDEX_FROM_ROWS", "31")
    get_settings.cache_clear()
    assert read(dataset_id, sort=Sort("qty")).indexing == ()
    indexes.wait(timeout=30)
    assert index_state(fresh_db, table) == {}


def test_an_index_left_invalid_by_an_interrupted_build_is_rebuilt(
    fresh_db: DatabaseHandle, dataset: tuple[int, str]
) -> None:
    dataset_id, table = dataset
    name = index_name(table, "qty")
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f'CREATE INDEX "{name}" ON data."{table}" (qty, _row_id)'))
        conn.execute(
            text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = CAST(:i AS regclass)"),
            {"i": f'data."{name}"'},
        )
    assert index_state(fresh_db, table)[name][0] is False
    assert read(dataset_id, sort=Sort("qty")).indexing == ("qty",)
    indexes.wait(timeout=30)
    assert index_state(fresh_db, table)[name][0] is True
    assert read(dataset_id, sort=Sort("qty")).indexing == ()


def test_an_index_seen_valid_is_not_looked_up_again_until_the_recheck_time(
    fresh_db: DatabaseHandle, dataset: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id, table = dataset
    read(dataset_id, sort=Sort("qty"))
    indexes.wait(timeout=30)

    def ensure_lookup(sql: str) -> bool:  # not a build's own check
        return "pg_index" in sql and "ANY(" in sql

    with statements_sent(get_engine(), ensure_lookup) as lookups:
        assert read(dataset_id, sort=Sort("qty")).indexing == ()  # looked up: now valid
        assert read(dataset_id, sort=Sort("qty", descending=True)).indexing == ()
        assert len(lookups) == 1

        # Dropped by hand: the next read past the recheck time sees it and builds it again.
        with fresh_db.superuser.begin() as conn:
            conn.execute(text(f'DROP INDEX data."{index_name(table, "qty")}"'))
        monkeypatch.setattr(indexes, "READY_RECHECK_S", 0.0)
        assert read(dataset_id, sort=Sort("qty")).indexing == ("qty",)
        assert len(lookups) == 2
    indexes.wait(timeout=30)
    assert index_state(fresh_db, table)[index_name(table, "qty")][0] is True


def test_the_datasets_page_read_asks_for_the_same_indexes(
    fresh_db: DatabaseHandle, dataset: tuple[int, str]
) -> None:
    dataset_id, table = dataset

    def page(**kw: object) -> browse.RowsPage:
        with session_scope() as s:
            return browse.read_page(session=s, dataset_id=dataset_id, page_size=5, **kw)  # type: ignore[arg-type]

    assert page().indexing == ()
    assert page(row_filter=RowFilter("note", "contains", "1")).indexing == ()
    first = page(sort=Sort("qty", descending=True))
    assert first.indexing == ("qty",)
    indexes.wait(timeout=30)
    assert index_state(fresh_db, table)[index_name(table, "qty")][0] is True
    again = page(sort=Sort("qty", descending=True))
    assert again.indexing == ()
    assert again.rows["_row_id"].tolist() == first.rows["_row_id"].tolist()
    assert page(row_filter=RowFilter("note", "equals", "n7")).indexing == ("note",)
    indexes.wait(timeout=30)


def test_a_build_that_fails_leaves_no_invalid_index_and_is_not_retried_at_every_read(
    fresh_db: DatabaseHandle, dataset: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A value too long for a btree (over about 2,700 bytes that do not compress) fails the
    build: its INVALID index was left for every write to trip over, and each read dropped it and
    scanned the whole table again to rebuild it, the page saying for good that it was building."""
    dataset_id, table = dataset
    long_note = "".join(f"{i * 7919 % 100_003:05x}" for i in range(2_400))  # 12,000 bytes
    with Session(fresh_db.app) as s, s.begin():
        s.execute(text(f'UPDATE data."{table}" SET note = :n WHERE _row_id = 1'), {"n": long_note})
    note_equals = [RowFilter("note", "equals", "n7")]
    assert read(dataset_id, filters=note_equals).indexing == ("note",)
    indexes.wait(timeout=30)
    assert index_state(fresh_db, table) == {}
    failed = [r for r in caplog.records if "building index" in r.getMessage()]
    assert len(failed) == 1
    again = read(dataset_id, filters=note_equals)
    assert again.indexing == ()  # nothing is being built: the page does not say so
    assert [r[0] for r in again.rows] == [7]
    indexes.wait(timeout=30)
    assert len([r for r in caplog.records if "building index" in r.getMessage()]) == 1
