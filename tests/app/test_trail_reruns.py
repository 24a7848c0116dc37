"""The Audit and History pages rerun their whole script on every click; what is slow to read
is read once per changeset, page or state, not again on each rerun. Counted, not timed: the
statements sent against ``audit.row_change``, the rows a page query reads there, the
decompressions of a bulk load's stored stream, and the unpicklings of a rebuilt table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from audit import bulk
from portal.actor import Actor
from portal.trail_views import AsOf
from tests.app.conftest import show_app, signed_in
from tests.conftest import DatabaseHandle
from tests.factories import make_user, table_name, upload_dataset
from tests.trail_seed import edit, seed_trail

pytestmark = pytest.mark.app

AUDIT = "pages/7_audit.py"
HISTORY = "pages/5_history.py"


@contextmanager
def row_change_statements() -> Iterator[list[tuple[str, Any]]]:
    """Every statement (and its parameters) sent against ``audit.row_change`` meanwhile."""
    sent: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "audit.row_change" in statement:
            sent.append((statement, params))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", before)


def rows_read(db: DatabaseHandle, statement: str, params: Any) -> int:
    """The rows of ``audit.row_change`` a statement reads, as on a large log, where the planner
    goes through the primary key rather than the whole table."""
    raw = db.app.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("SET LOCAL enable_seqscan = off")
            counted = (
                "SELECT pg_stat_get_xact_tuples_returned('audit.row_change'::regclass)"
                " + pg_stat_get_xact_tuples_fetched('audit.row_change'::regclass)"
            )
            cur.execute(counted)
            before = cur.fetchone()[0]
            cur.execute(statement, params)
            cur.fetchall()
            cur.execute(counted)
            return int(cur.fetchone()[0]) - before
    finally:
        raw.rollback()
        raw.close()


def an_editor(db: DatabaseHandle) -> Actor:
    with Session(db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    return Actor(name, "Ed", "editor")


def inserts_then_updates(db: DatabaseHandle, inserted: int, updated: int) -> int:
    """One out-of-band changeset: ``inserted`` rows inserted, then ``updated`` of them updated;
    its seq."""
    ds = upload_dataset(an_editor(db), b"Name,Qty\na,1\n", name="Counted")
    table = table_name(db.app, ds)
    with db.superuser.begin() as conn:
        conn.execute(
            text(
                f'INSERT INTO data."{table}" (name, qty, _version)'
                " SELECT 'n' || g, g, 0 FROM generate_series(1, :n) g"
            ),
            {"n": inserted},
        )
        conn.execute(
            text(f'UPDATE data."{table}" SET qty = -qty WHERE _row_id BETWEEN 2 AND :last'),
            {"last": updated + 1},
        )
    with db.app.connect() as conn:
        return int(conn.scalar(text("SELECT seq FROM audit.chain_head")))


def open_changeset(at: AppTest, key: str, seq: int) -> None:
    label = next(o for o in at.selectbox(key=key).options if o.startswith(f"#{seq} "))
    at.selectbox(key=key).select(label).run()
    assert not at.exception


def test_a_page_of_a_large_changeset_s_updates_is_read_once_along_the_primary_key(
    fresh_db: DatabaseHandle,
) -> None:
    """The changeset's row changes are counted once per rerun (the header counted them again
    for the page), and the first page of its updates starts at its first update instead of
    reading past every insert before it."""
    seq = inserts_then_updates(fresh_db, inserted=3_000, updated=60)
    at, _ = signed_in(fresh_db, "admin")
    show_app(at)
    at.switch_page(AUDIT).run()
    open_changeset(at, "audit.open", seq)
    [op] = [r for r in at.radio if (r.key or "").endswith(".op")]
    op.set_value("update").run()
    assert not at.exception
    with row_change_statements() as sent:
        at.run()
    assert not at.exception
    shown = at.main.dataframe[1].value
    assert shown["Row id"].tolist()[:4] == [2, 2, 3, 3]
    assert shown["State"].tolist()[:2] == ["before", "after"]
    counts = [s for s in sent if "count(" in s[0]]
    pages = [s for s in sent if "count(" not in s[0]]
    assert len(counts) == 1, counts
    assert len(pages) == 1, pages
    assert rows_read(fresh_db, *pages[0]) <= 60  # the updates, not the 3,000 inserts first
    [older] = [b for b in at.button if (b.key or "").endswith(".update.pager.older")]
    older.click().run()
    assert at.main.dataframe[1].value["Row id"].tolist()[::2] == list(range(52, 62))


@pytest.fixture
def decompressions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per stored stream decompressed (a bulk load's rows, or an upload's file)."""
    done: list[int] = []
    real = bulk.decompress

    def counted(compression: str, content: bytes) -> bytes:
        done.append(len(content))
        return real(compression, content)

    monkeypatch.setattr(bulk, "decompress", counted)
    return done


def test_a_page_of_bulk_loaded_rows_is_replayed_once_not_on_every_rerun(
    fresh_db: DatabaseHandle, decompressions: list[int]
) -> None:
    """Each page of an upload's rows is rebuilt from the stored stream (decompressed whole and
    checked against its SHA-256); a rerun of the page (any click elsewhere on it) shows the
    same page without doing that again."""
    trail = seed_trail(fresh_db)
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.switch_page(HISTORY).run()
    at.selectbox(key="history.dataset").select(trail.people).run()
    open_changeset(at, f"history.{trail.people}.open", trail.seqs["people upload"])
    assert at.main.dataframe[1].value["Row id"].tolist() == list(range(1, 51))
    assert len(decompressions) == 1
    at.run()
    at.radio(key="history.view").set_value("Changesets").run()
    assert at.main.dataframe[1].value["Row id"].tolist() == list(range(1, 51))
    assert len(decompressions) == 1
    [page] = [n for n in at.number_input if (n.key or "").endswith(".page")]
    page.set_value(5).run()
    assert at.main.dataframe[1].value["Row id"].tolist() == list(range(201, 251))
    assert len(decompressions) == 2
    [page] = [n for n in at.number_input if (n.key or "").endswith(".page")]
    page.set_value(1).run()
    assert at.main.dataframe[1].value["Row id"].tolist() == list(range(1, 51))
    assert len(decompressions) == 2


def test_a_row_s_history_is_read_once_until_its_dataset_changes(
    fresh_db: DatabaseHandle, decompressions: list[int]
) -> None:
    """A bulk-loaded row's first version is rebuilt from the stored stream; showing the row
    again reads nothing again, until a new changeset of its dataset, whose version it then
    shows."""
    trail = seed_trail(fresh_db)
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.query_params["dataset"] = str(trail.people)
    at.query_params["row"] = "3"
    at.switch_page(HISTORY).run()
    assert at.main.dataframe[0].value["Why"].tolist() == ["seed", "typo"]
    assert len(decompressions) == 1
    at.run()
    assert at.main.dataframe[0].value["Why"].tolist() == ["seed", "typo"]
    assert len(decompressions) == 1
    edit(
        fresh_db,
        trail.ann,
        trail.people,
        [("UPDATE {table} SET qty = 7, _version = _version + 1 WHERE _row_id = 3", {})],
        "recount",
    )
    at.run()
    assert at.main.dataframe[0].value["Why"].tolist() == ["seed", "typo", "recount"]


def test_the_table_as_of_a_changeset_is_not_copied_again_on_every_rerun(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuilt table (up to 500,000 rows) is kept once; a rerun, or another page of it,
    shows it without unpickling a copy of the whole table each time."""
    copies: list[int] = []

    def counted(self: AsOf, state: dict[str, Any]) -> None:
        copies.append(len(state["frame"]))
        self.__dict__.update(state)

    monkeypatch.setattr(AsOf, "__setstate__", counted, raising=False)
    ds = upload_dataset(
        an_editor(fresh_db),
        b"Name\n" + b"".join(b"n%d\n" % n for n in range(250)),
        name="Paged",
    )
    with fresh_db.app.connect() as conn:
        seq = int(conn.scalar(text("SELECT seq FROM audit.chain_head")))
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.switch_page(HISTORY).run()
    at.selectbox(key="history.dataset").select(ds).run()
    open_changeset(at, f"history.{ds}.open", seq)
    at.toggle(key=f"history.{ds}.as_of").set_value(True).run()
    assert at.main.dataframe[-1].value["Row id"].tolist() == list(range(1, 101))
    at.run()
    at.number_input(key=f"history.{ds}.{seq}.as_of_page").set_value(3).run()
    assert not at.exception
    assert at.main.dataframe[-1].value["Row id"].tolist() == list(range(201, 251))
    assert copies == []
