"""Bulk insert with audit capture vs the same COPY into the same table without triggers.

Target (issue 3): <= 1.5x for 1,000,000 rows x 10 columns.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import psycopg2
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from audit.bulk import bulk_insert, reserve_row_ids
from audit.capture import install_capture
from audit.changesets import open_changeset
from benchmarks.common import COLUMN_NAMES, cluster, create_table_sql, csv_rows


def main(rows: int, rounds: int) -> float:
    with cluster() as info:
        engine = create_engine(info.url("app"))
        data = csv_rows(1, rows)
        print(
            f"bulk insert: {rows:,} rows x 10 columns, {len(data) / 1e6:.0f} MB CSV,"
            f" {rounds} rounds, median"
        )
        raw_times, audited_times = [], []
        for r in range(rounds):
            runs = [
                lambda r=r: raw_times.append(
                    _raw_copy(info.connect_kwargs("app"), f"raw_{r}", data)
                ),
                lambda r=r: audited_times.append(
                    _audited(engine, f"audited_{r}", r + 1, rows, data)
                ),
            ]
            for run in runs if r % 2 == 0 else reversed(runs):  # each goes first half the time
                run()
        raw, audited = statistics.median(raw_times), statistics.median(audited_times)
        ratio = audited / raw
        paired = statistics.median(a / b for a, b in zip(audited_times, raw_times, strict=True))
        print(f"  plain COPY, no triggers      {raw:7.2f} s")
        print(f"  COPY + audit (bulk load)     {audited:7.2f} s")
        print(f"  ratio audited / plain        {ratio:7.2f}x   (target <= 1.50x)")
        print(f"  median of the rounds' ratios {paired:7.2f}x")
        engine.dispose()
        return ratio


def _raw_copy(connect_kwargs: dict[str, object], table: str, data: bytes) -> float:
    conn = psycopg2.connect(**connect_kwargs)
    with conn.cursor() as cur:
        cur.execute(create_table_sql(table))
    conn.commit()
    start = time.perf_counter()
    with conn.cursor() as cur:
        cur.copy_expert(
            f"COPY data.{table} (_row_id, {', '.join(COLUMN_NAMES)}) FROM STDIN WITH (FORMAT csv)",
            io.BytesIO(data),
        )
    conn.commit()
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def _audited(engine: Engine, table: str, dataset_id: int, rows: int, data: bytes) -> float:
    with Session(engine) as s, s.begin():
        s.execute(text(create_table_sql(table)))
        install_capture(session=s, table_name=table, dataset_id=dataset_id)
    start = time.perf_counter()
    with Session(engine) as s, s.begin():
        cs = open_changeset(
            session=s,
            kind="upload",
            actor_username="bench",
            actor_display_name="Bench",
            dataset_id=dataset_id,
            reason="bench",
        )
        first = reserve_row_ids(session=s, table_name=table, count=rows)
        assert first == 1
        bulk_insert(
            session=s, changeset_id=cs, table_name=table, columns=COLUMN_NAMES, csv_bytes=data
        )
    return time.perf_counter() - start


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    main(args.rows, args.rounds)
