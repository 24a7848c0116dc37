"""The Audit and History pages on a large log.

1. The Audit page's query — the newest 50 changesets for a dataset and an actor in a date
   range — over a log of 5,000,000 row changes (500,000 changesets of 10 rows each, 20 datasets,
   50 actors, one year): median of many runs (target < 5 ms; DESIGN §9 anchor with a matching
   btree: 0.36 ms), and its plan, which must use ``ix_changeset_dataset_actor_committed_seq``.
   Also the next page (keyset) and a month's activity aggregate per day by actor and by dataset
   (target < 300 ms).
2. "As of": a 100,000-row dataset after 1,000 changesets (one bulk upload, then 999 edits of
   updates, inserts and deletes, captured by the production triggers), rebuilt from the audit
   log as it stands after the last changeset, vs reading the current table.

The log of part 1 is generated set-based (generate_series) and written directly with triggers
off (``session_replication_role = replica``, as a restore would), so its changesets are not
sealed into a valid chain: the page's queries do not read the chain. Part 2 goes through the
real capture and sealing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from audit import search
from audit.bulk import bulk_insert, reserve_row_ids
from audit.capture import install_capture
from audit.changesets import open_changeset
from audit.search import ChangesetKey, TrailFilter
from audit.trail import dataset_state
from benchmarks.common import COLUMN_NAMES, cluster, create_table_sql, csv_rows

ROWS_PER_CHANGESET = 10
DATASETS, ACTORS = 20, 50
START = datetime(2025, 1, 1, tzinfo=UTC)
ANCHOR_MS = 0.36
AS_OF_DATASET = 1000  # apart from the generated log's datasets 1..20


def generate_log(superuser: Engine, row_changes: int) -> int:
    """``row_changes`` row changes in changesets of ``ROWS_PER_CHANGESET``; returns changesets."""
    changesets = row_changes // ROWS_PER_CHANGESET
    step = 365 * 86400 / changesets  # seconds between changesets: one year in all
    with superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        conn.execute(text("SET maintenance_work_mem = '256MB'"))
        conn.execute(
            text(
                "INSERT INTO audit.changeset (seq, kind, dataset_id, actor_username,"
                " actor_display_name, reason, committed_at, inserted, updated, deleted,"
                " prev_hash, hash)"
                " SELECT i, CASE WHEN i % 97 = 0 THEN 'out_of_band' ELSE 'edit' END,"
                f" i % {DATASETS} + 1, 'user' || ((i / {DATASETS}) % {ACTORS}),"
                f" 'User ' || ((i / {DATASETS}) % {ACTORS}), 'reason ' || i,"
                " :start + make_interval(secs => i * :step), 0,"
                f" {ROWS_PER_CHANGESET}, 0, '', md5(i::text)"
                " FROM generate_series(1, :n) AS i"
            ),
            {"start": START, "step": step, "n": changesets},
        )
        conn.execute(
            text(
                "INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, before, after)"
                " SELECT c.id, c.dataset_id, (c.seq * 7 + j) % 100000 + 1, 'update',"
                " jsonb_build_object('qty', j), jsonb_build_object('qty', j + 1)"
                " FROM audit.changeset c CROSS JOIN generate_series(1, :per) AS j"
                " ORDER BY c.id, j"
            ),
            {"per": ROWS_PER_CHANGESET},
        )
        conn.execute(
            text(
                "UPDATE audit.chain_head SET seq = :n, hash = md5(CAST(:n AS text)),"
                " changeset_id = (SELECT max(id) FROM audit.changeset)"
            ),
            {"n": changesets},
        )
    with superuser.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text("VACUUM ANALYZE audit.changeset"))
        conn.execute(text("VACUUM ANALYZE audit.row_change"))
    return changesets


def median_ms(run: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def page_query(app: Engine, repeat: int) -> float:
    f = TrailFilter(
        dataset_id=7,
        actor="user3",
        since=START + timedelta(days=60),
        until=START + timedelta(days=240),
    )
    with Session(app) as s:
        first = search.search_changesets(session=s, trail_filter=f)
        stmt = search.changesets_statement(f)
        print("  plan of the first page (EXPLAIN ANALYZE):")
        for line in search.explain(s, stmt, analyze=True).splitlines():
            print(f"    {line}")
        next_key = first.next_key or ChangesetKey(START + timedelta(days=200), 10**9)
        sql_ms = median_ms(lambda: s.execute(stmt).all(), repeat)
        call_ms = median_ms(lambda: search.search_changesets(session=s, trail_filter=f), repeat)
        next_ms = median_ms(
            lambda: search.search_changesets(session=s, trail_filter=f, after=next_key), repeat
        )
        unfiltered_ms = median_ms(
            lambda: search.search_changesets(session=s, trail_filter=TrailFilter()), repeat
        )
        oob_ms = median_ms(
            lambda: search.search_changesets(
                session=s, trail_filter=TrailFilter(kind="out_of_band")
            ),
            repeat,
        )
    print(f"  page 1 ({len(first.items)} changesets), the statement alone  {sql_ms:8.2f} ms")
    print(f"  page 1 through search_changesets()                   {call_ms:8.2f} ms")
    print(f"  page 2 (keyset after page 1)                         {next_ms:8.2f} ms")
    print(f"  no filter, newest 50                                 {unfiltered_ms:8.2f} ms")
    print(f"  kind = out_of_band, newest 50                        {oob_ms:8.2f} ms")
    print(f"  target < 5 ms; anchor 0.36 ms -> {call_ms / ANCHOR_MS:.1f}x the anchor")
    return call_ms


def activity_month(app: Engine, repeat: int) -> None:
    month = TrailFilter(since=START + timedelta(days=120), until=START + timedelta(days=151))
    with Session(app) as s:
        for by in ("actor", "dataset"):
            points = search.activity(session=s, trail_filter=month, by=by)  # type: ignore[arg-type]
            ms = median_ms(
                lambda by=by: search.activity(session=s, trail_filter=month, by=by), repeat
            )
            print(
                f"  activity for a month by {by:<8} ({len(points):,} day x {by} points)"
                f"   {ms:8.1f} ms   (target < 300 ms)"
            )


def build_dataset(app: Engine, rows: int, changesets: int) -> int:
    """A ``rows``-row dataset (``AS_OF_DATASET``) loaded in bulk, then ``changesets - 1``
    captured edits."""
    with Session(app) as s, s.begin():
        s.execute(text(create_table_sql("asof")))
        install_capture(session=s, table_name="asof", dataset_id=AS_OF_DATASET)
        cs = open_changeset(
            session=s,
            kind="upload",
            actor_username="bench",
            actor_display_name="B",
            dataset_id=AS_OF_DATASET,
        )
        first = reserve_row_ids(session=s, table_name="asof", count=rows)
        bulk_insert(
            session=s,
            changeset_id=cs,
            table_name="asof",
            columns=COLUMN_NAMES,
            csv_bytes=csv_rows(first, rows),
        )
    for i in range(1, changesets):
        with Session(app) as s, s.begin():
            open_changeset(
                session=s,
                kind="edit",
                actor_username="bench",
                actor_display_name="B",
                dataset_id=AS_OF_DATASET,
            )
            lo = (i * 97) % (rows - 50) + 1
            s.execute(
                text(
                    "UPDATE data.asof SET score = score + 1, price = price + 0.01,"
                    " _version = _version + 1 WHERE _row_id BETWEEN :lo AND :lo + 19"
                ),
                {"lo": lo},
            )
            if i % 10 == 0:
                s.execute(text("DELETE FROM data.asof WHERE _row_id = :r"), {"r": lo + 30})
                s.execute(
                    text(
                        "INSERT INTO data.asof (name, amount, price, day, active, category,"
                        " description, score, code, total)"
                        " VALUES (:n, 1, 1.50, '2024-02-01', true, 'c', 'd', 1, 'x', 1)"
                    ),
                    {"n": f"new {i}"},
                )
    with Session(app) as s:
        s.execute(text("ANALYZE data.asof"))
        return int(s.scalar(text("SELECT seq FROM audit.chain_head")) or 0)


def as_of(app: Engine, rows: int, changesets: int, repeat: int) -> float:
    start = time.perf_counter()
    seq = build_dataset(app, rows, changesets)
    print(
        f"  built {rows:,} rows + {changesets - 1:,} edits in {time.perf_counter() - start:.1f} s"
    )
    with Session(app) as s:
        state = dataset_state(session=s, dataset_id=AS_OF_DATASET, as_of_seq=seq, exact=True)
        current = s.execute(text("SELECT * FROM data.asof")).all()
        assert len(state) == len(current)

        def read_current() -> None:
            raw: Any = s.connection().connection.dbapi_connection
            with raw.cursor() as cur:
                cur.execute("SELECT * FROM data.asof")
                cur.fetchall()

        table_ms = median_ms(read_current, repeat)
        rebuild_ms = median_ms(
            lambda: dataset_state(session=s, dataset_id=AS_OF_DATASET, as_of_seq=seq, exact=True),
            repeat,
        )
    ratio = rebuild_ms / table_ms
    print(f"  read the current table ({len(current):,} rows)            {table_ms:8.1f} ms")
    print(f"  rebuild as of the last changeset (#{seq}) from the log  {rebuild_ms:8.1f} ms")
    print(f"  ratio as-of / current table                         {ratio:8.1f}x")
    return ratio


def main(row_changes: int, rows: int, changesets: int, repeat: int) -> tuple[float, float]:
    with cluster() as info:
        superuser = create_engine(info.url("superuser"))
        app = create_engine(info.url("app"))
        print(f"audit page query over {row_changes:,} row changes")
        start = time.perf_counter()
        generate_log(superuser, row_changes)
        print(f"  generated in {time.perf_counter() - start:.1f} s")
        page_ms = page_query(app, repeat)
        activity_month(app, max(3, repeat // 20))
        print(f'"as of" a {rows:,}-row dataset after {changesets:,} changesets')
        ratio = as_of(app, rows, changesets, max(3, repeat // 40))
        superuser.dispose()
        app.dispose()
        return page_ms / ANCHOR_MS, ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        main(row_changes=500_000, rows=20_000, changesets=200, repeat=50)
    else:
        main(row_changes=5_000_000, rows=100_000, changesets=1_000, repeat=200)
