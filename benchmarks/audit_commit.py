"""Commit of one diff — 1,000 updated rows, 100 inserts, 100 deletes — with audit capture and
sealing vs the same statements on an identical table without triggers.

Target (issue 3): <= 1.5x. The statements are set-based (psycopg2 execute_values), with the
optimistic ``_version`` check the portal's commits use.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from audit.bulk import bulk_insert, reserve_row_ids
from audit.capture import install_capture
from audit.changesets import open_changeset
from benchmarks.common import COLUMN_NAMES, cluster, create_table_sql, csv_rows

UPDATES, INSERTS, DELETES = 1000, 100, 100


class Table:
    """One benchmark table and the versions of its live rows."""

    def __init__(self, engine: Engine, name: str, rows: int, audited: bool) -> None:
        self.engine, self.name, self.audited = engine, name, audited
        with Session(engine) as s, s.begin():
            s.execute(text(create_table_sql(name)))
            if audited:
                install_capture(session=s, table_name=name, dataset_id=1)
                cs = open_changeset(
                    session=s,
                    kind="upload",
                    actor_username="bench",
                    actor_display_name="Bench",
                    dataset_id=1,
                )
                first = reserve_row_ids(session=s, table_name=name, count=rows)
                bulk_insert(
                    session=s,
                    changeset_id=cs,
                    table_name=name,
                    columns=COLUMN_NAMES,
                    csv_bytes=csv_rows(first, rows),
                )
            else:
                raw: Any = s.connection().connection.dbapi_connection
                with raw.cursor() as cur:
                    cur.copy_expert(
                        f"COPY data.{name} (_row_id, {', '.join(COLUMN_NAMES)})"
                        " FROM STDIN WITH (FORMAT csv)",
                        io.BytesIO(csv_rows(1, rows)),
                    )
                s.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('data.{name}', '_row_id'), {rows})")
                )
            s.execute(text(f"ANALYZE data.{name}"))
        self.versions = dict.fromkeys(range(1, rows + 1), 1)

    def commit(self, updates: list[int], deletes: list[int], serial: int) -> float:
        start = time.perf_counter()
        with Session(self.engine) as s, s.begin():
            if self.audited:
                open_changeset(
                    session=s,
                    kind="edit",
                    actor_username="bench",
                    actor_display_name="Bench",
                    dataset_id=1,
                    reason="benchmark",
                )
            raw: Any = s.connection().connection.dbapi_connection
            with raw.cursor() as cur:
                execute_values(
                    cur,
                    f"UPDATE data.{self.name} AS t SET price = v.price, score = v.score,"
                    " _version = t._version + 1"
                    " FROM (VALUES %s) AS v(_row_id, _version, price, score)"
                    " WHERE t._row_id = v._row_id AND t._version = v._version",
                    [(r, self.versions[r], serial + r / 100, serial) for r in updates],
                    template="(%s::bigint, %s::integer, %s::numeric, %s::integer)",
                    page_size=len(updates),
                )
                assert cur.rowcount == len(updates)
                execute_values(
                    cur,
                    f"DELETE FROM data.{self.name} AS t USING (VALUES %s) AS v(_row_id, _version)"
                    " WHERE t._row_id = v._row_id AND t._version = v._version",
                    [(r, self.versions[r]) for r in deletes],
                    template="(%s::bigint, %s::integer)",
                    page_size=len(deletes),
                )
                assert cur.rowcount == len(deletes)
                execute_values(
                    cur,
                    f"INSERT INTO data.{self.name} ({', '.join(COLUMN_NAMES)}) VALUES %s"
                    " RETURNING _row_id",
                    [
                        (f"new {serial}-{i}", i, 1.5, "2024-02-01", True, "c", "d", i, "x", i)
                        for i in range(INSERTS)
                    ],
                    page_size=INSERTS,
                    fetch=True,
                )
        elapsed = time.perf_counter() - start
        for r in updates:
            self.versions[r] += 1
        for r in deletes:
            del self.versions[r]
        return elapsed


def main(rows: int, rounds: int) -> float:
    with cluster() as info:
        engine = create_engine(info.url("app"))
        plain = Table(engine, "plain", rows, audited=False)
        audited = Table(engine, "audited", rows, audited=True)
        rng = random.Random(7)
        plain_t, audited_t = [], []
        for serial in range(rounds + 2):  # the first two rounds warm caches and are dropped
            live = sorted(plain.versions)
            chosen = rng.sample(live, UPDATES + DELETES)
            updates, deletes = sorted(chosen[:UPDATES]), sorted(chosen[UPDATES:])
            pair = [(plain, plain_t), (audited, audited_t)]
            if serial % 2:
                pair.reverse()
            for table, times in pair:
                elapsed = table.commit(updates, deletes, serial)
                if serial >= 2:
                    times.append(elapsed)
        # A session's first captured UPDATE of one row, then the full commit: each round on new
        # connections (nothing planned yet), both tables alike.
        after_small = []
        for serial in range(rounds + 2, rounds + 9):
            chosen = rng.sample(sorted(plain.versions), UPDATES + DELETES)
            updates, deletes = sorted(chosen[:UPDATES]), sorted(chosen[UPDATES:])
            engine.dispose()
            times = []
            for table in (plain, audited):
                table.commit(updates[:1], deletes[:1], serial)
                times.append(table.commit(updates[1:], deletes[1:], serial))
            after_small.append(times[1] / times[0])
        with engine.connect() as conn:
            rows_changed = conn.scalar(text("SELECT count(*) FROM audit.row_change"))
        bare, full = statistics.median(plain_t), statistics.median(audited_t)
        ratio = full / bare
        paired = statistics.median(a / b for a, b in zip(audited_t, plain_t, strict=True))
        print(
            f"commit of {UPDATES:,} updates + {INSERTS} inserts + {DELETES} deletes on a"
            f" {rows:,}-row table, {rounds} rounds, median"
        )
        print(f"  bare statements, no triggers        {bare * 1000:7.1f} ms")
        print(
            f"  with changeset, capture and seal    {full * 1000:7.1f} ms"
            f"   ({rows_changed:,} row changes captured in all)"
        )
        print(f"  ratio audited / bare                {ratio:7.2f}x   (target <= 1.50x)")
        print(f"  median of the rounds' own ratios    {paired:7.2f}x")
        print(
            f"  the same after a one-row UPDATE     {statistics.median(after_small):7.2f}x"
            "   (first in its session: capture plans each statement for its own rows)"
        )
        engine.dispose()
        return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    main(args.rows, args.rounds)
