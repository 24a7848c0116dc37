"""The edit window's paging and total: whether rows follow is always exact (one row more is
read); the total is exact on the last window and up to ``COUNT_CAP`` rows past the window,
then PostgreSQL's estimate ("about"); nothing is counted when far more rows are expected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import writes
from portal.actor import Actor
from portal.browse import RowFilter
from portal.db import get_engine, session_scope
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
