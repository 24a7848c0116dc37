"""The edit window's count: exact up to ``COUNT_CAP`` rows past the window, then capped."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from portal import writes
from portal.actor import Actor
from portal.browse import RowFilter
from portal.db import session_scope
from tests.conftest import DatabaseHandle
from tests.factories import make_user, upload_dataset

pytestmark = pytest.mark.db

CSV = ("Name,Qty\n" + "".join(f"r{i},{i % 3}\n" for i in range(1, 31))).encode()


def test_the_total_is_exact_up_to_the_cap_then_capped(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    dataset = upload_dataset(Actor(name, "Ed", "editor"), CSV, name="Counted")
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset, limit=5)
    assert (read.total, read.total_is_exact) == (30, True)

    monkeypatch.setattr(writes, "COUNT_CAP", 10)
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset, limit=5)
        assert (read.total, read.total_is_exact) == (15, False)  # 5 shown + 10 counted past
        read = writes.read_window(session=s, dataset_id=dataset, limit=5, offset=20)
        assert (read.total, read.total_is_exact) == (30, True)  # the cap moves with the window
        assert [r[1] for r in read.rows] == [f"r{i}" for i in range(21, 26)]
        read = writes.read_window(
            session=s, dataset_id=dataset, limit=5, filters=[RowFilter("qty", "equals", "0")]
        )
        assert (read.total, read.total_is_exact) == (10, True)
