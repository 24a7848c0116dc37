"""From the editor's state to a committed and sealed changeset: 1,000 cell edits over 1,000 rows,
100 inserts and 100 deletes on a 100,000-row dataset created through the portal, vs the bare
set-based statements on an identical table without triggers, in the same run.

Target (issue 6, DESIGN.md §9): <= 1.5x the bare statements and < 100 ms.

A third side runs the same portal path on a copy of the dataset whose capture triggers were
dropped (the seal still runs, over no row changes): what the portal costs besides capture, and so
what capture itself costs.

The audited side is the real path: ``diffs.build_changeset(window, state)`` (every value
re-validated) then ``writes.commit`` in ``session_scope()`` (changeset, optimistic versions,
capture triggers, seal at COMMIT). Reading the window is not timed, and neither is a first
``build_changeset`` on it (it gives the bare side its statements): the Edit page builds the
ChangeSet on every run, so by the commit the window's cells are read out and the values sent
checked (``Window.checked``), as here. That first build is timed apart and printed too. The bare
side runs the same ``UPDATE … FROM (VALUES …)`` per set of changed columns, ``DELETE … USING
(VALUES …)`` and ``INSERT … VALUES … RETURNING`` with ``execute_values`` on a trigger-less copy
of the table, from values computed in advance. Rounds alternate which side goes first.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import date, timedelta
from itertools import groupby
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import MetaData, create_engine, text
from sqlalchemy.orm import Session

from benchmarks.common import bench_editor, cluster
from portal import diffs, uploads, writes
from portal.datasets import get_dataset
from portal.db import reset_engine, session_scope
from portal.diffs import ChangeSet
from portal.spec import ColumnSpec, DatasetSpec, ddl_table

EDITS, INSERTS, DELETES = 1_000, 100, 100
EDITED_COLUMNS = ("price", "score", "amount", "description")  # one cell per edited row
SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True),
        ColumnSpec("Amount", "amount", "integer"),
        ColumnSpec("Price", "price", "decimal", scale=2),
        ColumnSpec("Day", "day", "date"),
        ColumnSpec("Active", "active", "boolean"),
        ColumnSpec("Category", "category", "text"),
        ColumnSpec("Description", "description", "text"),
        ColumnSpec("Score", "score", "integer"),
        ColumnSpec("Code", "code", "text"),
        ColumnSpec("Total", "total", "integer"),
    )
)
SQL_TYPES = {"text": "text", "integer": "bigint", "decimal": "numeric", "boolean": "boolean"}
SQL_TYPES |= {"date": "date"}


def make_csv(rows: int) -> bytes:
    header = ",".join(c.label for c in SPEC.columns)
    lines = [
        f"name {i},{i},{i * 1.5:.2f},2024-01-{i % 28 + 1:02d},{'true' if i % 2 else 'false'},"
        f'cat{i % 7},"some text, {i}",{i % 1000},x{i},{i * 3}'
        for i in range(rows)
    ]
    return (header + "\n" + "\n".join(lines) + "\n").encode()


def editor_state(rng: random.Random, serial: int) -> dict[str, Any]:
    """What the grid would send: edits on the first 1,000 rows of the window (one cell each),
    the last 100 deleted, 100 new rows with every column filled."""
    edited: dict[str, dict[str, Any]] = {}
    for p in range(EDITS):
        column = EDITED_COLUMNS[p % len(EDITED_COLUMNS)]
        value: Any = {
            "price": round(rng.uniform(0, 10_000), 2),
            "score": rng.randint(0, 10**6),
            "amount": rng.randint(-(10**9), 10**9),
            "description": f"edited {serial}-{p}",
        }[column]
        edited[str(p)] = {column: value}  # positions arrive as JSON keys
    day = date(2024, 2, 1)
    added = [
        {
            "name": f"new {serial}-{i}",
            "amount": i,
            "price": 1.5,
            "day": (day + timedelta(days=i)).isoformat(),
            "active": True,
            "category": "c",
            "description": "d",
            "score": i,
            "code": "x",
            "total": i,
        }
        for i in range(INSERTS)
    ]
    return {
        "edited_rows": edited,
        "added_rows": added,
        "deleted_rows": list(range(EDITS, EDITS + DELETES)),
    }


def bare_commit(engine: Any, table: str, changes: ChangeSet) -> float:
    """The same set-based statements on the trigger-less table, values ready; seconds."""
    types = {c.name: SQL_TYPES[c.type] for c in SPEC.columns}
    order = {n: k for k, n in enumerate(SPEC.names)}

    def columns_of(u: Any) -> tuple[str, ...]:
        return tuple(sorted(u.after, key=order.__getitem__))

    groups = [
        (names, sorted(group, key=lambda u: u.row_id))
        for names, group in groupby(sorted(changes.updates, key=columns_of), key=columns_of)
    ]
    deletes = sorted(changes.deletes, key=lambda d: d.row_id)
    inserts = [tuple(i.values[n] for n in SPEC.names) for i in changes.inserts]
    start = time.perf_counter()
    with Session(engine) as s, s.begin():
        raw: Any = s.connection().connection.dbapi_connection
        with raw.cursor() as cur:
            for names, updates in groups:
                sets = ", ".join(f'"{n}" = v."{n}"' for n in names)
                casts = ", ".join(f"%s::{types[n]}" for n in names)
                matched = execute_values(
                    cur,
                    f"UPDATE {table} AS t SET {sets}, _version = t._version + 1"
                    f" FROM (VALUES %s) AS v(_row_id, _seen, {', '.join(names)})"
                    " WHERE t._row_id = v._row_id AND t._version = v._seen RETURNING t._row_id",
                    [(u.row_id, u.version, *(u.after[n] for n in names)) for u in updates],
                    template=f"(%s::bigint, %s::integer, {casts})",
                    page_size=len(updates),
                    fetch=True,
                )
                assert len(matched) == len(updates)
            matched = execute_values(
                cur,
                f"DELETE FROM {table} AS t USING (VALUES %s) AS v(_row_id, _seen)"
                " WHERE t._row_id = v._row_id AND t._version = v._seen RETURNING t._row_id",
                [(d.row_id, d.version) for d in deletes],
                template="(%s::bigint, %s::integer)",
                page_size=len(deletes),
                fetch=True,
            )
            assert len(matched) == len(deletes)
            execute_values(
                cur,
                f"INSERT INTO {table} ({', '.join(SPEC.names)}) VALUES %s RETURNING _row_id",
                inserts,
                template="(" + ", ".join(f"%s::{types[n]}" for n in SPEC.names) + ")",
                page_size=len(inserts),
                fetch=True,
            )
    return time.perf_counter() - start


def main(rows: int, rounds: int) -> float:
    with cluster() as info:
        os.environ["PORTAL_MAX_UPLOAD_MB"] = "1024"
        actor = bench_editor(info)
        engine = create_engine(info.url("app"))
        data = make_csv(rows)
        parsed = uploads.read_file(data)
        result = uploads.check(parsed, SPEC)
        assert result.ok, result.errors[:3]
        dataset_id, uncaptured_id = (
            uploads.import_file(
                actor=actor,
                filename="bench.csv",
                data=data,
                parsed=parsed,
                spec=SPEC,
                result=result,
                target=uploads.NewDataset(name),
            ).dataset_id
            for name in ("Edit bench", "Edit bench, capture dropped")
        )
        with Session(engine) as s, s.begin():
            audited, uncaptured = (
                get_dataset(session=s, dataset_id=i).table_name for i in (dataset_id, uncaptured_id)
            )
            ddl_table(SPEC, "bare", MetaData()).create(s.connection())
            s.execute(
                text(f"INSERT INTO data.bare OVERRIDING SYSTEM VALUE SELECT * FROM data.{audited}")
            )
            s.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('data.bare', '_row_id'),"
                    f" (SELECT max(_row_id) FROM data.{audited}))"
                )
            )
            # Both with full statistics, as autovacuum leaves a table soon after an upload (the
            # upload's own analysis samples less): the same plans on both sides.
            s.execute(text("ANALYZE data.bare"))
            s.execute(text(f"ANALYZE data.{audited}"))
            s.execute(text(f"ANALYZE data.{uncaptured}"))
            for op in ("insert", "update", "delete"):  # the table's owner may
                s.execute(text(f"DROP TRIGGER audit_capture_{op} ON data.{uncaptured}"))

        rng = random.Random(6)
        bare_t, diff_t, commit_t, full_t, uncaptured_t, first_t = [], [], [], [], [], []
        for serial in range(rounds + 2):  # the first two rounds warm caches and are dropped
            offset = rng.randrange(0, rows // 2)
            windows, spec_versions = {}, {}
            for dataset in (dataset_id, uncaptured_id):  # the same rows in both
                with session_scope() as s:
                    read = writes.read_window(
                        session=s, dataset_id=dataset, offset=offset, limit=EDITS + DELETES
                    )
                spec_versions[dataset] = read.spec_version
                windows[dataset] = diffs.make_window(
                    read.spec, diffs.editor_frame(read.spec, read.rows), read.versions
                )
            state = editor_state(rng, serial)
            start = time.perf_counter()
            expected = diffs.build_changeset(windows[dataset_id], state, may_edit=True)
            first_t.append(time.perf_counter() - start)
            for window in windows.values():  # read out, as the Edit page's runs leave it
                diffs.build_changeset(window, state, may_edit=True)

            def portal_commit(dataset: int) -> tuple[float, float]:
                start = time.perf_counter()
                changes = diffs.build_changeset(windows[dataset], state, may_edit=True)  # noqa: B023
                built = time.perf_counter()
                with session_scope() as s:
                    done = writes.commit(
                        session=s,
                        actor=actor,
                        dataset_id=dataset,
                        spec_version=spec_versions[dataset],  # noqa: B023
                        changes=changes,
                        reason="benchmark",
                    )
                end = time.perf_counter()
                assert done.updated_cells == EDITS
                assert len(done.inserted_ids) == INSERTS
                return built - start, end - built

            timed: dict[str, Any] = {}
            sides = {
                "bare": lambda: bare_commit(engine, "data.bare", expected),  # noqa: B023
                "portal": lambda: portal_commit(dataset_id),
                "uncaptured": lambda: sum(portal_commit(uncaptured_id)),
            }
            order = list(sides)
            for name in order[serial % 3 :] + order[: serial % 3]:  # each side first in turn
                timed[name] = sides[name]()
            if serial >= 2:
                building, committing = timed["portal"]
                bare_t.append(timed["bare"])
                diff_t.append(building)
                commit_t.append(committing)
                full_t.append(building + committing)
                uncaptured_t.append(timed["uncaptured"])
        with engine.connect() as conn:
            captured = conn.scalar(text("SELECT count(*) FROM audit.row_change"))
        bare, full = statistics.median(bare_t), statistics.median(full_t)
        ratio = full / bare
        ms = 1000
        print(
            f"edit commit: {EDITS:,} cell edits over {EDITS:,} rows + {INSERTS} inserts"
            f" + {DELETES} deletes on a {rows:,}-row dataset, {rounds} rounds, median"
        )
        print(f"  bare statements, no triggers             {bare * ms:7.1f} ms")
        print(
            f"  portal: editor state -> sealed changeset {full * ms:7.1f} ms"
            f"   ({captured:,} row changes captured in all)"
        )
        diff, commit = statistics.median(diff_t), statistics.median(commit_t)
        print(
            f"    of which diffs.build_changeset         {diff * ms:7.1f} ms"
            f"   ({diff / bare:.2f}x the bare statements)"
        )
        first = statistics.median(first_t[2:])
        print(
            f"      (first build of the state on its window {first * ms:5.1f} ms:"
            " cells read out, every value checked)"
        )
        print(
            f"    of which writes.commit + COMMIT        {commit * ms:7.1f} ms"
            f"   ({commit / bare:.2f}x the bare statements)"
        )
        uncaptured = statistics.median(uncaptured_t)
        print(
            f"  the same, capture triggers dropped       {uncaptured * ms:7.1f} ms"
            f"   ({uncaptured / bare:.2f}x the bare statements: the portal's own work)"
        )
        capture = statistics.median(
            (f - u) / b for f, u, b in zip(full_t, uncaptured_t, bare_t, strict=True)
        )
        print(
            f"    so capturing the row changes costs     {capture * bare * ms:7.1f} ms"
            f"   ({capture:.2f}x the bare statements; median of the rounds' own)"
        )
        verdict = "met" if ratio <= 1.5 and full < 0.1 else "NOT met"
        print(
            f"  ratio portal / bare                      {ratio:7.2f}x"
            f"   (target <= 1.50x and < 100 ms: {verdict})"
        )
        paired = statistics.median(f / b for f, b in zip(full_t, bare_t, strict=True))
        print(f"  median of the rounds' own ratios         {paired:7.2f}x")
        engine.dispose()
        reset_engine()
        return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    main(args.rows, args.rounds)
