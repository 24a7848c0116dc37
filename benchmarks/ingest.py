"""Ingest of a 1,000,000-row x 10-column CSV through the portal's own code path — read, sniff,
parse, validate, load with COPY, audit (original file kept, rows as one bulk load, changeset
sealed) — vs ``psql \\copy`` of the same file into the same typed table, in the same run.

Target (issue 5): <= 2.0x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import MetaData, create_engine
from sqlalchemy.orm import Session

from benchmarks.common import bench_editor, cluster
from portal import uploads
from portal.db import reset_engine
from portal.embedded import ClusterInfo
from portal.spec import ddl_table

HEADER = "Name,Amount,Price,Day,Active,Category,Description,Score,Code,Total\n"


def make_csv(rows: int) -> bytes:
    lines = [HEADER] + [
        f"name {i},{i},{i * 1.5:.2f},2024-01-{i % 28 + 1:02d},{'true' if i % 2 else 'false'},"
        f'cat{i % 7},"some text, {i}",{i % 1000},x{i},{i * 3}\n'
        for i in range(rows)
    ]
    return "".join(lines).encode()


def _libpq_url(info: ClusterInfo) -> str:
    user, password = info.credentials("app")
    return f"postgresql://{user}:{quote(password, safe='')}@{info.host}:{info.port}/{info.database}"


def main(rows: int, rounds: int) -> float:
    data = make_csv(rows)
    with cluster() as info, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        path.write_bytes(data)
        os.environ["PORTAL_MAX_UPLOAD_MB"] = "1024"
        actor = bench_editor(info)
        parsed = uploads.read_file(data)
        spec, _ = uploads.propose_spec(parsed)
        engine = create_engine(info.url("app"))
        print(
            f"ingest: {rows:,} rows x 10 columns, {len(data) / 1e6:.0f} MB CSV, {rounds} rounds,"
            " median"
        )
        copy_times, portal_times = [], []
        for r in range(rounds):
            table = f"copy_{r}"
            with Session(engine) as s, s.begin():
                ddl_table(spec, table, MetaData()).create(s.connection())
            columns = ", ".join(f'"{c.name}"' for c in spec.columns)
            start = time.perf_counter()
            subprocess.run(
                [
                    "psql",
                    _libpq_url(info),
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-q",
                    "-c",
                    f"\\copy data.{table} ({columns}) FROM '{path}' WITH (FORMAT csv, HEADER true)",
                ],
                check=True,
                timeout=600,
            )
            copy_times.append(time.perf_counter() - start)

            start = time.perf_counter()
            parsed = uploads.read_file(data)
            result = uploads.check(parsed, spec)
            assert result.ok, result.errors[:3]
            outcome = uploads.import_file(
                actor=actor,
                filename="people.csv",
                data=data,
                parsed=parsed,
                spec=spec,
                result=result,
                target=uploads.NewDataset(f"People {r}"),
            )
            portal_times.append(time.perf_counter() - start)
            assert outcome.rows == rows
        copy, portal = sorted(copy_times)[rounds // 2], sorted(portal_times)[rounds // 2]
        ratio = portal / copy
        print(f"  psql \\copy into the typed table          {copy:7.2f} s")
        print(f"  portal: read+parse+validate+load+audit    {portal:7.2f} s")
        print(f"  ratio portal / psql \\copy                {ratio:7.2f}x   (target <= 2.00x)")
        engine.dispose()
        reset_engine()
        return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.rows, args.rounds)
