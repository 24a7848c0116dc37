"""``make bench``: every benchmark, each printing its ratios against its own baseline."""

from __future__ import annotations

import argparse

from benchmarks import (
    audit_bulk,
    audit_commit,
    audit_page,
    edit_commit,
    edit_window,
    ingest,
    load,
    load_pages,
)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the benchmarks and print ratios.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    results = {
        "commit (1,000 upd + 100 ins + 100 del), audited / bare": audit_commit.main(
            rows=20_000 if args.quick else 100_000, rounds=5 if args.quick else 15
        ),
        "edit commit (state -> sealed changeset) / bare statements": edit_commit.main(
            rows=20_000 if args.quick else 100_000, rounds=5 if args.quick else 15
        ),
        "edit window (page, filter, sort), 10M rows / 10k rows": edit_window.main(
            rows=1_000_000 if args.quick else 10_000_000, rounds=3 if args.quick else 7
        ),
        "bulk insert, audited / plain COPY": audit_bulk.main(
            rows=50_000 if args.quick else 1_000_000, rounds=1 if args.quick else 3
        ),
        "ingest (read+parse+validate+load+audit) / psql \\copy": ingest.main(
            rows=50_000 if args.quick else 1_000_000, rounds=1 if args.quick else 3
        ),
    }
    page_vs_anchor, as_of_ratio = audit_page.main(
        row_changes=500_000 if args.quick else 5_000_000,
        rows=20_000 if args.quick else 100_000,
        changesets=200 if args.quick else 1_000,
        repeat=50 if args.quick else 200,
    )
    results["audit page query (dataset+actor+dates, newest 50) / 0.36 ms anchor"] = page_vs_anchor
    results["as of the last changeset, rebuilt from the log / reading the table"] = as_of_ratio
    throughput, p95_vs_target = load.main(sessions=20, seconds=10 if args.quick else 30)
    results["load: commits/s, 20 sessions / 1 session"] = throughput
    results["load: p95 commit latency, 20 sessions / 250 ms target"] = p95_vs_target
    pages, _problems = load_pages.main(sessions=20, seconds=10 if args.quick else 30)
    results["load pages: p95 Commit click, 20 AppTest procs / 250 ms"] = (
        pages.latency(0.95) / load.P95_TARGET_S
    )
    print("\nsummary")
    for name, ratio in results.items():
        print(f"  {name:<58} {ratio:5.2f}x")


if __name__ == "__main__":
    main()
