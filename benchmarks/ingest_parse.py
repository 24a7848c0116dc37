"""The pure part of an upload — read_upload (size, MIME, UTF-8, dialect, parse) + validate +
copy_stream — against ``pandas.read_csv(dtype=str)`` of the same bytes.

No target of its own: it shows what the pure pipeline costs before the database load (DESIGN §9:
the whole ingest must stay within 2.0x ``psql \\copy``). Run ``python -m benchmarks.ingest_parse``
(``--rows``, ``--rounds``).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import pandas as pd

from portal.csv_import import copy_stream, read_upload
from portal.spec import ColumnSpec, DatasetSpec, validate

SPEC = DatasetSpec(
    (
        ColumnSpec("name", "name", "text", required=True),
        ColumnSpec("amount", "amount", "integer"),
        ColumnSpec("price", "price", "decimal", scale=2, min=0),
        ColumnSpec("day", "day", "date"),
        ColumnSpec("active", "active", "boolean"),
        ColumnSpec("category", "category", "category", options=tuple(f"cat{i}" for i in range(7))),
        ColumnSpec("description", "description", "text", max_length=200),
        ColumnSpec("score", "score", "integer", min=0, max=1000),
        ColumnSpec("code", "code", "text", regex="^x[0-9]+$"),
        ColumnSpec("total", "total", "integer"),
    )
)


def make_csv(rows: int) -> bytes:
    """``rows`` rows of the ten columns above, with a header, as a person would upload them."""
    header = ",".join(c.label for c in SPEC.columns) + "\n"
    lines = [
        f"name {i},{i},{i * 1.5:.2f},2024-01-{i % 28 + 1:02d},{'true' if i % 2 else 'false'},"
        f'cat{i % 7},"some text, {i}",{i % 1000},x{i},{i * 3}\n'
        for i in range(rows)
    ]
    return (header + "".join(lines)).encode()


def _pipeline(data: bytes) -> tuple[float, float, float]:
    start = time.perf_counter()
    parsed = read_upload(data, max_bytes=len(data))
    parsed_at = time.perf_counter()
    result = validate(SPEC, parsed.frame, line_numbers=parsed.line_numbers)
    validated_at = time.perf_counter()
    stream = copy_stream(result.typed, SPEC, first_row_id=1)
    done = time.perf_counter()
    if not result.ok or not stream:
        raise SystemExit(f"the benchmark data should be valid: {result.errors[:3]}")
    return parsed_at - start, validated_at - parsed_at, done - validated_at


def main(rows: int, rounds: int) -> float:
    data = make_csv(rows)
    print(
        f"ingest parse: {rows:,} rows x 10 columns, {len(data) / 1e6:.0f} MB CSV, {rounds} rounds,"
        " median"
    )
    pandas_times, parse_times, validate_times, copy_times = [], [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        pd.read_csv(io.BytesIO(data), dtype=str)
        pandas_times.append(time.perf_counter() - start)
        parse, check, copy = _pipeline(data)
        parse_times.append(parse)
        validate_times.append(check)
        copy_times.append(copy)
    baseline = statistics.median(pandas_times)
    parts = {
        "read_upload (magic, UTF-8, dialect, parse)": statistics.median(parse_times),
        "validate (10 columns, every rule)": statistics.median(validate_times),
        "copy_stream (COPY CSV for bulk_insert)": statistics.median(copy_times),
    }
    ours = statistics.median(
        p + v + c for p, v, c in zip(parse_times, validate_times, copy_times, strict=True)
    )
    print(f"  pandas.read_csv(dtype=str)                   {baseline:7.2f} s")
    for name, seconds in parts.items():
        print(f"  {name:<44} {seconds:7.2f} s")
    ratio = ours / baseline
    print(f"  parse + validate + copy_stream               {ours:7.2f} s")
    print(f"  ratio pipeline / pandas parse                {ratio:7.2f}x")
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.rows, args.rounds)
