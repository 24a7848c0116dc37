"""Concurrent commits on real PostgreSQL: a row committed under an open commit is a conflict, and
many committers of overlapping edits lose nothing, deadlock never surfaces, every success is in
the table and the audit log exactly once, and the chain stays whole and gap-free."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from portal import diffs, writes
from portal.actor import Actor
from portal.datasets import Recount, recount_rows
from portal.db import session_scope
from portal.diffs import ChangeSet
from portal.errors import NotFound
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import data_table, make_user, upload_dataset

pytestmark = pytest.mark.db

SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True, unique=True),
        ColumnSpec("Qty", "qty", "integer", min=0),
        ColumnSpec("Note", "note", "text"),
    )
)
ROWS = 24
CSV = ("Name,Qty,Note\n" + "".join(f"r{i},{i},n{i}\n" for i in range(1, ROWS + 1))).encode()
THREADS = 8
ROUNDS = 6


@pytest.fixture
def editors(fresh_db: DatabaseHandle) -> list[Actor]:
    actors = []
    with Session(fresh_db.app) as s, s.begin():
        for n in range(THREADS):
            name, _ = make_user(s, role="editor", username=f"ed{n}", display_name=f"Editor {n}")
            actors.append(Actor(name, f"Editor {n}", "editor"))
    return actors


@pytest.fixture
def dataset(editors: list[Actor]) -> int:
    return upload_dataset(editors[0], CSV, spec=SPEC, name="Stock")


def read(dataset_id: int, limit: int = 1_000) -> tuple[writes.EditWindow, diffs.Window]:
    with session_scope() as s:
        found = writes.read_window(session=s, dataset_id=dataset_id, limit=limit)
    base = diffs.editor_frame(found.spec, found.rows)
    return found, diffs.make_window(found.spec, base, found.versions)


def table_rows(db: DatabaseHandle, dataset_id: int) -> dict[int, tuple[Any, ...]]:
    """``{_row_id: (_version, name, qty, note)}`` as the table holds them now."""
    table = data_table(db.app, dataset_id)
    with db.app.connect() as conn:
        found = conn.execute(text(f"SELECT _row_id, _version, name, qty, note FROM {table}"))
        return {r[0]: tuple(r[1:]) for r in found}


def commit_together(
    dataset_id: int, spec_version: int, actors: list[Actor], changes: list[ChangeSet]
) -> list[object]:
    """Commit each ChangeSet in its own thread, all released at once: results or exceptions."""
    barrier = threading.Barrier(len(changes))
    outcome: list[object] = [None] * len(changes)

    def commit(n: int) -> None:
        barrier.wait(10)
        try:
            with session_scope() as s:
                outcome[n] = writes.commit(
                    session=s,
                    actor=actors[n],
                    dataset_id=dataset_id,
                    spec_version=spec_version,
                    changes=changes[n],
                    reason=f"together {n}",
                )
        except Exception as exc:
            outcome[n] = exc

    threads = [threading.Thread(target=commit, args=(n,)) for n in range(len(changes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def test_a_row_committed_under_an_open_commit_is_a_conflict_and_nothing_is_lost(
    fresh_db: DatabaseHandle, editors: list[Actor], dataset: int
) -> None:
    first, second = editors[0], editors[1]
    read_a, win_a = read(dataset)
    read_b, win_b = read(dataset)
    a_written = threading.Event()
    outcome: dict[str, object] = {}

    def commit_a() -> None:
        with session_scope() as s:
            writes.commit(
                session=s,
                actor=first,
                dataset_id=dataset,
                spec_version=read_a.spec_version,
                changes=diffs.build_changeset(
                    win_a, {"edited_rows": {0: {"qty": 100}}}, may_edit=True
                ),
                reason="a",
            )
            a_written.set()  # written and holding row 1's lock; commits after a pause
            threading.Event().wait(0.5)

    def commit_b() -> None:
        a_written.wait(10)
        try:
            with session_scope() as s:  # blocks on row 1 until A commits, then sees it moved
                outcome["b"] = writes.commit(
                    session=s,
                    actor=second,
                    dataset_id=dataset,
                    spec_version=read_b.spec_version,
                    changes=diffs.build_changeset(
                        win_b, {"edited_rows": {0: {"note": "b"}, 1: {"qty": 200}}}, may_edit=True
                    ),
                    reason="b",
                )
        except Exception as exc:
            outcome["b"] = exc

    threads = [threading.Thread(target=commit_a), threading.Thread(target=commit_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    conflict = outcome["b"]
    assert isinstance(conflict, writes.EditConflict), conflict
    [row] = conflict.conflicts
    assert (row.row_id, row.by, row.reason, row.version) == (1, "Editor 0", "a", 2)
    assert row.now is not None
    assert row.now["qty"] == 100
    now = table_rows(fresh_db, dataset)
    assert now[1] == (2, "r1", 100, "n1")  # A's edit, none of B's
    assert now[2] == (1, "r2", 2, "n2")  # B's other row untouched too
    with fresh_db.app.connect() as conn:
        reasons = conn.execute(text("SELECT reason FROM audit.changeset ORDER BY seq")).scalars()
        assert list(reasons) == ["test data", "a"]
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


@dataclass
class Outcomes:
    lock: threading.Lock = field(default_factory=threading.Lock)
    committed: list[tuple[writes.CommitResult, ChangeSet]] = field(default_factory=list)
    conflicts: int = 0
    other: list[BaseException] = field(default_factory=list)


def random_state(rng: random.Random, win: diffs.Window, worker: int, serial: int) -> dict[str, Any]:
    """Overlapping edits: a few rows, each with its own set of columns (so two commits can
    touch the same rows in different statement orders), now and then a delete or an insert."""
    rows = len(win.shown)
    edited: dict[int, dict[str, Any]] = {}
    for position in rng.sample(range(rows), k=min(rows, rng.randint(2, 6))):
        cells: dict[str, Any] = {}
        if rng.random() < 0.6:
            cells["qty"] = rng.randint(0, 10_000)
        if not cells or rng.random() < 0.6:
            cells["note"] = f"w{worker}s{serial}"
        edited[position] = cells
    state: dict[str, Any] = {"edited_rows": edited}
    if rows > 10 and rng.random() < 0.2:
        state["deleted_rows"] = [rng.randrange(rows)]
    if rng.random() < 0.3:
        state["added_rows"] = [{"name": f"new-{worker}-{serial}", "qty": serial}]
    return state


def test_concurrent_committers_lose_nothing_and_keep_the_chain_whole(
    fresh_db: DatabaseHandle, editors: list[Actor], dataset: int
) -> None:
    start_read, _ = read(dataset)
    initial = {int(r[0]): (start_read.versions[int(r[0])], *r[1:]) for r in start_read.rows}
    outcomes = Outcomes()
    barrier = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        rng = random.Random(1000 + n)
        for serial in range(ROUNDS):
            found, win = read(dataset)
            changes = diffs.build_changeset(win, random_state(rng, win, n, serial), may_edit=True)
            barrier.wait(30)  # every worker commits at once
            try:
                with session_scope() as s:
                    result = writes.commit(
                        session=s,
                        actor=editors[n],
                        dataset_id=dataset,
                        spec_version=found.spec_version,
                        changes=changes,
                        reason=f"worker {n} round {serial}",
                    )
                with outcomes.lock:
                    outcomes.committed.append((result, changes))
            except writes.EditConflict:
                with outcomes.lock:
                    outcomes.conflicts += 1
            except BaseException as exc:
                with outcomes.lock:
                    outcomes.other.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert outcomes.other == [], [str(e) for e in outcomes.other]  # no deadlock, no other error
    assert outcomes.committed, "no commit succeeded"
    assert len(outcomes.committed) + outcomes.conflicts == THREADS * ROUNDS

    with fresh_db.app.connect() as conn:
        seqs = dict(conn.execute(text("SELECT id, seq FROM audit.changeset")).all())
        logged = conn.execute(
            text(
                "SELECT changeset_id, row_id, op, before::text, after::text"
                " FROM audit.row_change WHERE changeset_id = ANY(:ids)"
            ),
            {"ids": [r.changeset_id for r, _ in outcomes.committed]},
        ).all()

    # Seq gap-free: the upload, then one changeset per successful commit and none for a failure.
    assert sorted(seqs.values()) == list(range(1, len(outcomes.committed) + 2))

    # Every success is in the audit log exactly once, with exactly its row changes.
    by_changeset: dict[int, list[tuple[int, str, Any, Any]]] = {}
    for cid, row_id, op, before, after in logged:
        by_changeset.setdefault(cid, []).append(
            (
                row_id,
                op,
                json.loads(before) if before else None,
                json.loads(after) if after else None,
            )
        )
    for result, changes in outcomes.committed:
        found = sorted(by_changeset[result.changeset_id])
        expected = sorted(
            [(u.row_id, "update", dict(u.before), dict(u.after)) for u in changes.updates]
            + [(d.row_id, "delete", None, None) for d in changes.deletes]
            + [
                (i, "insert", None, dict(ins.values))
                for i, ins in zip(result.inserted_ids, changes.inserts, strict=True)
            ]
        )
        assert [(r, op) for r, op, _, _ in found] == [(r, op) for r, op, _, _ in expected]
        for (_, op, before, after), (_, _, want_before, want_after) in zip(
            found, expected, strict=True
        ):
            if op == "update":
                assert (before, after) == (want_before, want_after)
            if op == "insert":
                assert {k: after[k] for k in want_after} == want_after

    # No lost update: the table is the initial rows with the successes replayed in seq order.
    replay = dict(initial)
    for result, changes in sorted(outcomes.committed, key=lambda c: seqs[c[0].changeset_id]):
        for u in changes.updates:
            version, *values = replay[u.row_id]
            assert version == u.version  # each success was made against what it replaced
            named = dict(zip(SPEC.names, values, strict=True)) | dict(u.after)
            replay[u.row_id] = (version + 1, *(named[n] for n in SPEC.names))
        for d in changes.deletes:
            assert replay.pop(d.row_id)[0] == d.version
        for row_id, ins in zip(result.inserted_ids, changes.inserts, strict=True):
            replay[row_id] = (1, *(ins.values[n] for n in SPEC.names))
    assert table_rows(fresh_db, dataset) == replay

    with Session(fresh_db.app) as s:
        result = verify(session=s)
        assert result.ok, result
        assert result.head.seq == len(outcomes.committed) + 1


def test_two_commits_locking_shared_rows_in_opposite_orders_do_not_deadlock(
    fresh_db: DatabaseHandle, editors: list[Actor]
) -> None:
    # Each commit changes one column on half the rows and the other column on the other half:
    # grouped by column set, the statements lock the two halves in opposite orders. Today no
    # deadlock can happen because writes.commit takes the dataset's row FOR NO KEY UPDATE, so
    # commits to one dataset run one at a time; with a shared lock there, this test deadlocks.
    size = 4_000  # big enough that the two commits' first statements overlap
    rows = "".join(f"r{i},{i},n{i}\n" for i in range(1, size + 1))
    dataset = upload_dataset(editors[0], f"Name,Qty,Note\n{rows}".encode(), spec=SPEC)
    low, high = range(0, size // 2), range(size // 2, size)
    for attempt in range(5):
        a, b = f"a{attempt}", f"b{attempt}"
        states = [
            {"edited_rows": {p: {"qty": attempt} for p in low} | {p: {"note": a} for p in high}},
            {"edited_rows": {p: {"note": b} for p in low} | {p: {"qty": attempt} for p in high}},
        ]
        found, win = read(dataset, limit=size)
        changes = [diffs.build_changeset(win, s, may_edit=True) for s in states]
        outcome = commit_together(dataset, found.spec_version, editors[:2], changes)
        kinds = sorted(type(o).__name__ for o in outcome)
        assert kinds == ["CommitResult", "EditConflict"], [str(o) for o in outcome]
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


def test_commits_to_other_rows_of_one_dataset_do_not_wait_for_each_other(
    fresh_db: DatabaseHandle, editors: list[Actor], dataset: int
) -> None:
    """While one commit's transaction is still open, another editor's commit of other rows (and
    a new row) goes through: the dataset is not locked for the whole commit."""
    found, win = read(dataset)
    a_written, b_done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def commit_b() -> None:
        a_written.wait(10)
        try:
            with session_scope() as s:
                outcome["b"] = writes.commit(
                    session=s,
                    actor=editors[1],
                    dataset_id=dataset,
                    spec_version=found.spec_version,
                    changes=diffs.build_changeset(
                        win,
                        {"edited_rows": {5: {"qty": 55}}, "added_rows": [{"name": "new"}]},
                        may_edit=True,
                    ),
                    reason="b",
                )
        except Exception as exc:
            outcome["b"] = exc
        b_done.set()

    thread = threading.Thread(target=commit_b)
    thread.start()
    with session_scope() as s:
        writes.commit(
            session=s,
            actor=editors[0],
            dataset_id=dataset,
            spec_version=found.spec_version,
            changes=diffs.build_changeset(
                win, {"edited_rows": {0: {"qty": 100}, 1: {"note": "a"}}}, may_edit=True
            ),
            reason="a",
        )
        a_written.set()
        assert b_done.wait(15), "the second commit waited for the first one's transaction"
    thread.join(15)
    assert isinstance(outcome["b"], writes.CommitResult), outcome["b"]
    now = table_rows(fresh_db, dataset)
    assert (now[1][2], now[2][3], now[6][2]) == (100, "a", 55)
    assert any(r[1] == "new" for r in now.values())
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


# -- writes outside the portal ----------------------------------------------------------------


def row_count(db: DatabaseHandle, dataset_id: int) -> int:
    with db.app.connect() as conn:
        return int(
            conn.scalar(
                text("SELECT row_count FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
            )
        )


def commit_held_open(db: DatabaseHandle, dataset: int, editor: Actor, rows: int) -> Session:
    """A portal commit adding ``rows`` new rows, written but not committed: its session, which
    holds the dataset's row until it commits (the caller commits and closes it)."""
    found, window = read(dataset)
    added = [{"name": f"new{i}", "qty": i} for i in range(rows)]
    changes = diffs.build_changeset(window, {"added_rows": added}, may_edit=True)
    portal = Session(db.app)
    writes.commit(
        session=portal,
        actor=editor,
        dataset_id=dataset,
        spec_version=found.spec_version,
        changes=changes,
        reason=f"{rows} more",
    )
    return portal


def wait_for_a_lock(db: DatabaseHandle, pid: int) -> None:
    """Return once backend ``pid`` waits for a lock; fail after 5 s."""
    with db.superuser.connect() as watch:
        for _ in range(500):
            waiting = watch.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            )
            if waiting == "Lock":
                return
            threading.Event().wait(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock (last: {waiting})")


def test_writes_outside_the_portal_keep_the_row_count(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The count stayed as the portal last left it: the Datasets page said 24 rows of a table
    that had 26."""
    table = data_table(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:  # psql, say: one transaction, three ways
        conn.execute(
            text(f"INSERT INTO {table} (name, qty) VALUES ('x1', 1), ('x2', 2), ('x3', 3)")
        )
        conn.execute(text(f"DELETE FROM {table} WHERE name = 'r1'"))
        conn.execute(text(f"UPDATE {table} SET qty = qty + 1 WHERE name = 'r2'"))
    assert row_count(fresh_db, dataset) == ROWS + 2
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET note = 'n' WHERE name = 'r3'"))
    with fresh_db.superuser.connect() as conn:  # rolled back: nothing happened
        conn.execute(text(f"DELETE FROM {table} WHERE name LIKE 'x%'"))
        conn.rollback()
    assert row_count(fresh_db, dataset) == ROWS + 2
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == ROWS + 2


def test_a_write_outside_the_portal_and_a_commit_counting_rows_do_not_deadlock(
    fresh_db: DatabaseHandle, dataset: int, editors: list[Actor]
) -> None:
    """A portal commit that adds rows holds its dataset's row from its count's update to its
    COMMIT, where its seal takes the chain's head; the out-of-band seal takes the dataset's row
    before the head, or the two would wait for each other."""
    table = data_table(fresh_db.app, dataset)
    portal = commit_held_open(fresh_db, dataset, editors[0], 1)
    outside = fresh_db.superuser.connect()
    outside.execute(text(f"INSERT INTO {table} (name, qty) VALUES ('x1', 1), ('x2', 2)"))
    pid = outside.scalar(text("SELECT pg_backend_pid()"))
    errors: list[BaseException] = []

    def commit_outside() -> None:
        try:
            outside.commit()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=commit_outside)
    thread.start()
    wait_for_a_lock(fresh_db, pid)  # its seal waits for the dataset's row
    portal.commit()
    portal.close()
    thread.join(timeout=30)
    outside.close()
    assert errors == []
    assert row_count(fresh_db, dataset) == ROWS + 3
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


def test_a_recount_corrects_a_drifted_count_and_leaves_a_right_one(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    table = data_table(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:  # triggers off: the count misses these two rows
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"INSERT INTO {table} (name, qty) VALUES ('x1', 1), ('x2', 2)"))
    assert row_count(fresh_db, dataset) == ROWS
    with Session(fresh_db.app) as s, s.begin():
        done = recount_rows(session=s, dataset_id=dataset)
    assert (done.was, done.rows) == (ROWS, ROWS + 2)
    assert done.summary() == f"dataset {dataset} “Stock”: stored row count 24 corrected to 26"
    assert row_count(fresh_db, dataset) == ROWS + 2
    with Session(fresh_db.app) as s, s.begin():
        again = recount_rows(session=s, dataset_id=dataset)
    assert (again.was, again.rows) == (ROWS + 2, ROWS + 2)
    assert again.summary().endswith("26 rows, as its stored count said; nothing was changed")
    with Session(fresh_db.app) as s, s.begin(), pytest.raises(NotFound):
        recount_rows(session=s, dataset_id=dataset + 100)


def test_a_recount_waits_for_a_commit_under_way_and_counts_its_rows(
    fresh_db: DatabaseHandle, dataset: int, editors: list[Actor]
) -> None:
    """A recount counting before a commit adding rows is in would leave the count short of
    them: it waits for the dataset's row the commit holds, then counts."""
    table = data_table(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:  # a drifted count: 24 stored, 25 rows
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"INSERT INTO {table} (name, qty) VALUES ('x1', 1)"))
    portal = commit_held_open(fresh_db, dataset, editors[0], 3)
    counter = Session(fresh_db.app)
    pid = counter.scalar(text("SELECT pg_backend_pid()"))
    done: list[Recount] = []
    thread = threading.Thread(
        target=lambda: done.append(recount_rows(session=counter, dataset_id=dataset))
    )
    thread.start()
    wait_for_a_lock(fresh_db, pid)
    portal.commit()
    portal.close()
    thread.join(timeout=30)
    counter.commit()
    counter.close()
    assert [(d.was, d.rows) for d in done] == [(ROWS + 3, ROWS + 4)]
    assert row_count(fresh_db, dataset) == ROWS + 4
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text(f"SELECT count(*) FROM {table}")) == ROWS + 4
