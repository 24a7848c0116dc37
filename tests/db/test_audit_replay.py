"""The audit log alone rebuilds every dataset as it stood after every changeset: uploads (bulk
loads), portal edits and writes made outside the portal alike — as a whole ("as of"), with
exact decimals, a slice of a bulk load at a time, and one row's versions at a time."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.bulk import bulk_insert, reserve_row_ids
from audit.chain import verify
from audit.changesets import open_changeset
from audit.trail import bulk_rows, bulk_rows_slice, dataset_state, row_versions
from tests.conftest import DatabaseHandle
from tests.factories import copy_csv, make_captured_table

pytestmark = pytest.mark.db

_dataset_ids = itertools.count(1000)
names = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
values = st.tuples(
    st.none() | st.integers(-5, 5),
    st.none() | st.decimals(-99, 99, places=2),
    st.none() | st.text(max_size=8).filter(lambda t: "\x00" not in t),
)
operation = st.one_of(
    st.tuples(st.just("bulk"), st.lists(values, min_size=0, max_size=6)),
    st.tuples(st.just("insert"), st.lists(values, min_size=1, max_size=4)),
    st.tuples(st.just("update"), st.integers(0, 7), st.integers(-5, 5)),
    st.tuples(st.just("delete"), st.integers(0, 7)),
    st.tuples(st.just("out_of_band"), st.integers(0, 7)),
)


def _apply(db: DatabaseHandle, table: str, dataset: int, op: tuple, serial: int) -> None:
    kind = op[0]
    if kind == "out_of_band":
        with db.superuser.begin() as conn:
            conn.execute(
                text(
                    f"UPDATE data.{table} SET note = coalesce(note, '') || 'x'"
                    f" WHERE _row_id % 8 = {op[1]}"
                )
            )
        return
    with Session(db.app) as s, s.begin():
        cs = open_changeset(
            session=s,
            kind="upload" if kind == "bulk" else "edit",
            actor_username="p",
            actor_display_name="P",
            dataset_id=dataset,
        )
        if kind == "bulk":
            rows = [(f"b{serial}_{i}", *v) for i, v in enumerate(op[1])]
            first = reserve_row_ids(session=s, table_name=table, count=len(rows))
            bulk_insert(
                session=s,
                changeset_id=cs,
                table_name=table,
                columns=["name", "qty", "price", "note"],
                csv_bytes=copy_csv(first, rows),
            )
        elif kind == "insert":
            for i, (qty, price, note) in enumerate(op[1]):
                s.execute(
                    text(
                        f"INSERT INTO data.{table} (name, qty, price, note) VALUES (:n, :q, :p, :t)"
                    ),
                    {"n": f"i{serial}_{i}", "q": qty, "p": price, "t": note},
                )
        elif kind == "update":
            s.execute(
                text(
                    f"UPDATE data.{table} SET qty = :q, _version = _version + 1"
                    f" WHERE _row_id % 8 = {op[1]}"
                ),
                {"q": op[2]},
            )
        else:
            s.execute(text(f"DELETE FROM data.{table} WHERE _row_id % 8 = {op[1]}"))


def _snapshot(db: DatabaseHandle, table: str) -> tuple[int, dict[int, dict], dict[int, dict]]:
    """The chain head's seq and the table's rows, as psycopg2 reads jsonb and exactly."""
    with db.app.connect() as conn:
        seq = conn.scalar(text("SELECT seq FROM audit.chain_head"))
        rows = conn.execute(
            text(
                f"SELECT _row_id, (to_jsonb(t) - '_row_id' - '_version')::text FROM data.{table} t"
            )
        ).all()
    return (
        seq,
        {row_id: json.loads(image) for row_id, image in rows},
        {row_id: json.loads(image, parse_float=Decimal) for row_id, image in rows},
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=10))
def test_state_as_of_every_changeset_matches_the_table(
    fresh_db: DatabaseHandle, operations: list[tuple]
) -> None:
    dataset = next(_dataset_ids)
    with Session(fresh_db.app) as s, s.begin():
        table = make_captured_table(s, dataset_id=dataset)
    snapshots = []
    for serial, op in enumerate(operations):
        _apply(fresh_db, table, dataset, op, serial)
        snapshots.append(_snapshot(fresh_db, table))
    with Session(fresh_db.app) as s:
        for seq, expected, exact in snapshots:
            assert dataset_state(session=s, dataset_id=dataset, as_of_seq=seq) == expected, seq
            rebuilt = dataset_state(session=s, dataset_id=dataset, as_of_seq=seq, exact=True)
            assert rebuilt == exact, seq
        assert verify(session=s).ok
        # Each row's last version is the row as it is now (None once deleted).
        final = snapshots[-1][2]
        ever = {row_id for _, _, state in snapshots for row_id in state}
        for row_id in ever:
            versions = row_versions(session=s, dataset_id=dataset, row_id=row_id)
            assert versions[-1].row == final.get(row_id), row_id
            assert versions[0].change.op == "insert"
        # Any slice of a bulk load is the same rows as the whole load's replay.
        loads = s.execute(
            text("SELECT id, row_count FROM audit.bulk_load WHERE dataset_id = :d"), {"d": dataset}
        ).all()
        for bulk_id, count in loads:
            whole = bulk_rows(session=s, bulk_load_id=bulk_id, exact=True)
            for offset, limit in ((0, 1), (1, 2), (count - 1, 5), (0, count), (count, 3)):
                part = bulk_rows_slice(session=s, bulk_load_id=bulk_id, offset=offset, limit=limit)
                assert part == dict(list(whole.items())[offset : offset + limit])
