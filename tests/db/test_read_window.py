"""The edit window's paging and total: whether rows follow is always exact (one row more is
read); the total is exact on the last window and up to ``COUNT_CAP`` rows past the window,
then PostgreSQL's estimate ("about"); nothing is counted when far more rows are expected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from portal import estimates, writes
from portal.actor import Actor
from portal.browse import RowFilter, condition
from portal.db import get_engine, session_scope
from portal.errors import ValidationError
from portal.spec import ColumnSpec, DatasetSpec, dataset_table
from tests.conftest import DatabaseHandle
from tests.factories import make_user, statements_sent, upload_dataset

pytestmark = pytest.mark.db

CSV = ("Name,Qty\n" + "".join(f"r{i},{i % 3}\n" for i in range(1, 31))).encode()


@pytest.fixture
def dataset(fresh_db: DatabaseHandle) -> int:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    dataset_id = upload_dataset(Actor(name, "Ed", "editor"), CSV, name="Counted")
    with fresh_db.superuser.begin() as conn:  # statistics for the planner's estimates
        conn.execute(text("ANALYZE data.ds_counted"))
    return dataset_id


@pytest.fixture
def counts() -> Iterator[list[str]]:
    """The count(*) statements the app runs while the test does."""
    with statements_sent(get_engine(), lambda sql: "count(" in sql.lower()) as seen:
        yield seen


def read(dataset: int, **kw: object) -> writes.EditWindow:
    with session_scope() as s:
        return writes.read_window(session=s, dataset_id=dataset, **kw)  # type: ignore[arg-type]


def test_the_last_window_gives_the_exact_total_without_counting(
    dataset: int, counts: list[str]
) -> None:
    whole = read(dataset, limit=100)
    assert (whole.total, whole.total_is_exact, whole.has_more) == (30, True, False)
    last = read(dataset, limit=5, offset=25)
    assert (last.total, last.total_is_exact, last.has_more) == (30, True, False)
    assert [r[1] for r in last.rows] == [f"r{i}" for i in range(26, 31)]
    zeros = read(dataset, limit=100, filters=[RowFilter("qty", "equals", "0")])
    assert (zeros.total, zeros.total_is_exact) == (10, True)
    assert counts == []


def test_the_total_is_counted_up_to_the_cap_then_estimated(
    dataset: int, counts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = read(dataset, limit=5)
    assert (first.total, first.total_is_exact, first.has_more) == (30, True, True)
    assert len(counts) == 1

    monkeypatch.setattr(writes, "COUNT_CAP", 10)
    capped = read(dataset, limit=5)  # counted to 16 of 30: the estimate (the row count) is 30
    assert (capped.total, capped.total_is_exact, capped.has_more) == (30, False, True)
    assert capped.total_text == "about 30"
    moved = read(dataset, limit=5, offset=20)  # the cap moves with the window
    assert (moved.total, moved.total_is_exact, moved.has_more) == (30, True, True)
    zeros = read(dataset, limit=5, filters=[RowFilter("qty", "equals", "0")])
    assert (zeros.total, zeros.total_is_exact, zeros.has_more) == (10, True, True)

    monkeypatch.setattr(writes, "COUNT_CAP", 1)
    counts.clear()
    far = read(dataset, limit=1)  # 30 expected, more than four times 1 + 1: nothing counted
    assert (far.total, far.total_is_exact, far.has_more) == (30, False, True)
    ones = read(dataset, limit=1, filters=[RowFilter("qty", "equals", "1")])
    assert (ones.total_is_exact, ones.has_more) == (False, True)
    assert 5 <= ones.total <= 20  # the planner's estimate of the 10 rows, from the statistics
    assert counts == []
    # A contains filter's pattern (a bound value; '%' and '_' match themselves) is estimated too.
    for needle in ("r1", "%", "_"):
        contains = read(dataset, limit=1, filters=[RowFilter("name", "contains", needle)])
        assert contains.total >= 1 if needle == "r1" else contains.total == 0


def test_a_window_past_the_end_counts_what_there_is(dataset: int) -> None:
    gone = read(dataset, limit=5, offset=100)
    assert (gone.rows, gone.total, gone.total_is_exact, gone.has_more) == ([], 30, True, False)


def test_an_estimate_is_shown_to_two_significant_digits(dataset: int) -> None:
    window = read(dataset, limit=5)
    assert replace(window, total=1_234, total_is_exact=True).total_text == "1,234"
    assert replace(window, total=1_234, total_is_exact=False).total_text == "about 1,200"
    assert replace(window, total=10_003_911, total_is_exact=False).total_text == "about 10,000,000"
    assert replace(window, total=87, total_is_exact=False).total_text == "about 87"


# --- estimates of equality filters, from the columns' statistics ------------------------------

SKEWED_SPEC = DatasetSpec(
    (
        ColumnSpec("Code", "code", "text"),
        ColumnSpec("Qty", "qty", "integer"),
        ColumnSpec("Price", "price", "decimal", scale=2),
        ColumnSpec("Day", "day", "date"),
        ColumnSpec("Seen", "seen", "datetime"),
        ColumnSpec("Active", "active", "boolean"),
        ColumnSpec("Size", "size", "category", options=("S", "M", "L")),
    )
)


def _skewed_csv(rows: int) -> bytes:
    """Common values and rare ones, empties, in every column type."""
    lines = ["Code,Qty,Price,Day,Seen,Active,Size"]
    for i in range(rows):
        common = i % 10 < 7
        lines.append(
            ",".join(
                (
                    "c0" if common else f"c{i}",
                    "" if i % 13 == 0 else str(i % 4 if common else i),
                    "1.50" if i % 2 else f"{i}.25",
                    f"2024-01-{i % 28 + 1:02d}",
                    "2024-05-01T10:00:00Z" if common else f"2024-05-02T{i % 24:02d}:00:00Z",
                    "" if i % 17 == 0 else ("true" if i % 5 else "false"),
                    "SML"[min(i % 9, 2)],
                )
            )
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def skewed(fresh_db: DatabaseHandle) -> tuple[int, str]:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    dataset_id = upload_dataset(
        Actor(name, "Ed", "editor"), _skewed_csv(3_000), spec=SKEWED_SPEC, name="Skewed"
    )
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("ANALYZE data.ds_skewed"))
    return dataset_id, "ds_skewed"


SKEWED_FILTERS = [
    RowFilter("code", "equals", "c0"),  # a most common value
    RowFilter("code", "equals", "c7"),  # a rare one
    RowFilter("code", "equals", "nowhere"),
    RowFilter("qty", "equals", "2"),
    RowFilter("qty", "equals", "1009"),
    RowFilter("qty", "empty", ""),
    RowFilter("qty", "equals", ""),
    RowFilter("price", "equals", "1.5"),  # the stored 1.50
    RowFilter("price", "equals", "8.25"),
    RowFilter("day", "equals", "2024-01-03"),
    RowFilter("seen", "equals", "2024-05-01T12:00:00+02:00"),  # the common instant
    RowFilter("active", "empty", ""),
    RowFilter("size", "equals", "L"),
    RowFilter("_row_id", "equals", "5"),
]


def _planner_estimate(dataset: int, filters: list[RowFilter]) -> int:
    with session_scope() as s:
        window = writes.read_window(session=s, dataset_id=dataset, limit=1)
        table = dataset_table(window.spec, "ds_skewed")
        where = [condition(table, window.spec, f) for f in filters]
        query = select(table.c["_row_id"]).where(*where).compile(dialect=s.get_bind().dialect)
        plan = s.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {query}", query.params)
        return int(plan.scalar_one()[0]["Plan"]["Plan Rows"])


def _estimate(dataset: int, filters: list[RowFilter]) -> int:
    with session_scope() as s:
        window = writes.read_window(session=s, dataset_id=dataset, limit=1)
        table = dataset_table(window.spec, "ds_skewed")
        return estimates.estimated_rows(
            session=s,
            table=table,
            spec=window.spec,
            filters=filters,
            where=[condition(table, window.spec, f) for f in filters],
            row_count=3_000,
        )


@pytest.mark.parametrize("row_filter", SKEWED_FILTERS, ids=lambda f: f"{f.column}-{f.value}")
def test_an_equality_is_estimated_as_the_planner_estimates_it(
    skewed: tuple[int, str], row_filter: RowFilter
) -> None:
    dataset, _ = skewed
    with statements_sent(get_engine(), lambda sql: "EXPLAIN" in sql) as explained:
        mine = _estimate(dataset, [row_filter])
    assert explained == []
    theirs = _planner_estimate(dataset, [row_filter])
    assert abs(mine - theirs) <= max(1, theirs // 100), (mine, theirs)


def test_a_false_is_estimated_from_its_own_frequency(skewed: tuple[int, str]) -> None:
    """The planner reads ``active = false`` as ``NOT active`` and counts the empty cells in
    (741 here); its own frequency is exact when every row was sampled."""
    dataset, _ = skewed
    falses = sum(1 for i in range(3_000) if i % 17 and not i % 5)
    assert _estimate(dataset, [RowFilter("active", "equals", "false")]) == falses


def test_statistics_are_read_once_then_kept_and_read_again_after_the_recheck_time(
    skewed: tuple[int, str], fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, table = skewed
    both = [RowFilter("code", "equals", "c0"), RowFilter("size", "equals", "S")]
    with statements_sent(get_engine(), lambda sql: "pg_stats" in sql) as looked_up:
        first = _estimate(dataset, both)
        assert len(looked_up) == 2  # one per column
        for value in ("c1", "c2", "c3"):
            _estimate(dataset, [RowFilter("code", "equals", value)])
        assert len(looked_up) == 2  # another value of a known column: no query
        # Both conditions, independent as the planner takes them: 70% of c0 times S's share.
        assert abs(first - _planner_estimate(dataset, both)) <= 30

        with fresh_db.superuser.begin() as conn:  # the data changes; the statistics follow
            conn.execute(text(f"UPDATE data.{table} SET code = 'c9' WHERE code = 'c0'"))
            conn.execute(text(f"ANALYZE data.{table}"))
        # Kept: c0 counts as 70% of the rows until the statistics are read again.
        assert _estimate(dataset, [RowFilter("code", "equals", "c0")]) == 2_100
        monkeypatch.setattr(estimates, "STATS_RECHECK_S", 0.0)
        assert _estimate(dataset, [RowFilter("code", "equals", "c9")]) == 2_101
        assert _estimate(dataset, [RowFilter("code", "equals", "c0")]) == 1
        assert len(looked_up) == 4


def test_a_column_never_analysed_or_a_range_is_estimated_by_explain(
    dataset: int, fresh_db: DatabaseHandle
) -> None:
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("CREATE TABLE data.fresh (LIKE data.ds_counted)"))
        conn.execute(text("GRANT SELECT ON data.fresh TO portal_app"))
    with (
        statements_sent(get_engine(), lambda sql: "EXPLAIN" in sql) as explained,
        session_scope() as s,
    ):
        window = writes.read_window(session=s, dataset_id=dataset, limit=1)
        table = dataset_table(window.spec, "fresh")
        for f in (RowFilter("qty", "equals", "1"), RowFilter("qty", "range", "1", "2")):
            estimates.estimated_rows(
                session=s,
                table=table,
                spec=window.spec,
                filters=[f],
                where=[condition(table, window.spec, f)],
                row_count=30,
            )
    assert len(explained) == 2


def test_a_range_to_a_day_on_a_datetime_column_takes_the_whole_day(
    dataset: int, fresh_db: DatabaseHandle
) -> None:
    """A range from 2024-06-01 to 2024-06-01 on a date-time column found only midnight: the day
    was read as its midnight, so every later time that day fell outside. A day alone as the
    upper end now reaches to the end of that day; with a time it is that moment, as before."""
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    seen = upload_dataset(
        Actor(name, "Ed", "editor"),
        b"Name,Seen\n"
        b"late may,2024-05-31 23:59:59\nmidnight,2024-06-01 00:00:00\n"
        b"noon,2024-06-01 12:00:00\nlast second,2024-06-01 23:59:59.999999\n"
        b"next day,2024-06-02 00:00:00\nthe end,9999-12-31 23:59:59\n",
        name="Seen",
    )

    def names(low: str, high: str) -> list[str]:
        found = read(seen, filters=[RowFilter("seen", "range", low, high)])
        return [r[1] for r in found.rows]

    day = ["midnight", "noon", "last second"]
    assert names("2024-06-01", "2024-06-01") == day
    assert names("", " 2024-06-01 ") == ["late may", *day]
    assert names("2024-06-01", "2024-06-01 12:00") == ["midnight", "noon"]
    assert names("2024-06-02", "9999-12-31") == ["next day", "the end"]
    assert names("2024-06-01 23:00", "2024-06-01") == ["last second"]  # not after the day
    with pytest.raises(ValidationError, match="starts after it ends"):
        names("2024-06-02", "2024-06-01")


def test_a_range_that_starts_after_it_ends_is_refused_saying_so(dataset: int) -> None:
    """From 3 to 1 matched no row, and the page said only that nothing matched, as if there
    were no such rows; it is now refused, saying to swap the ends."""
    with pytest.raises(ValidationError, match=r"the range starts after it ends.*swap"):
        read(dataset, filters=[RowFilter("qty", "range", "3", "1")])
    with pytest.raises(ValidationError, match="Filter on “Row id”: the range starts after"):
        read(dataset, filters=[RowFilter("_row_id", "range", "9", "2")])
    assert len(read(dataset, filters=[RowFilter("qty", "range", "1", "1")]).rows) == 10
    # Text compares in the database's collation: left to it.
    assert read(dataset, filters=[RowFilter("name", "range", "r9", "r1")]).rows == []
