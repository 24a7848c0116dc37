"""Faults against real PostgreSQL, nothing mocked: what breaks, what the portal says, and that the
data and the audit log are whole afterwards (``portal audit verify`` run as a separate process).

- The server restarted (a throw-away cluster of this module, stopped and started again): reads
  say ``DatabaseUnavailable`` while it is down and work again on the same engine once it is back
  (``pool_pre_ping``); a transaction open across the restart is ``ConnectionLost`` and left
  nothing; a COMMIT cut off with the server staying down is ``CommitOutcomeUnknown``.
- The committing backend terminated (``pg_terminate_backend``) while the commit waits on a lock
  this test holds — on a row it updates, or on the chain head inside COMMIT: ``ConnectionLost``,
  no changeset or row change of that attempt, and the same ChangeSet commits on the next try.
- The app process SIGKILLed mid-upload (during COPY, or with every row loaded and the COMMIT not
  yet sent) or mid-commit: no dataset, table, changeset or stored file is left; killed while its
  COMMIT was already running, the commit lands whole.
- The server refusing work: disk full (a tablespace on a 1 MB tmpfs), a configured limit
  (``temp_file_limit``), a revoked privilege, a read-only database, and each mapped SQLSTATE
  raised by the server itself: a ``portal.errors`` class whose message says what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg2
import pytest
from psycopg2 import sql
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.events import record_event
from portal import db, diffs, migrate, writes
from portal.actor import Actor
from portal.db import APPLICATION_NAME, database_answers, session_scope
from portal.diffs import ChangeSet
from portal.embedded import ClusterInfo, EmbeddedPostgres
from portal.errors import (
    CommitOutcomeUnknown,
    ConnectionLost,
    DatabaseFull,
    DatabaseLoginRefused,
    DatabasePrivilege,
    DatabaseReadOnly,
    DatabaseRefused,
    DatabaseUnavailable,
)
from tests.conftest import DatabaseHandle, _superuser_exec, create_database, drop_database
from tests.db.test_writes import CSV, SPEC
from tests.factories import data_table, make_user, upload_dataset

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
EDITS = {"edited_rows": {0: {"qty": 11}}, "added_rows": [{"name": "eve"}], "deleted_rows": [3]}


# --------------------------------------------------------------------------- helpers


def editor_in(database: DatabaseHandle) -> Actor:
    with Session(database.app) as s, s.begin():
        name, _ = make_user(s, role="editor", display_name="Fay F.")
    return Actor(name, "Fay F.", "editor")


def pending_edits(dataset_id: int) -> tuple[writes.EditWindow, ChangeSet]:
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id)
    window = diffs.make_window(read.spec, diffs.editor_frame(read.spec, read.rows), read.versions)
    return read, diffs.build_changeset(window, EDITS, may_edit=True)


def commit(actor: Actor, read: writes.EditWindow, changes: ChangeSet) -> writes.CommitResult:
    with session_scope() as s:
        return writes.commit(
            session=s,
            actor=actor,
            dataset_id=read.dataset_id,
            spec_version=read.spec_version,
            changes=changes,
            reason="fault test",
        )


def snapshot(database: DatabaseHandle) -> dict[str, Any]:
    """Everything a half-written commit or upload could leave behind."""
    with database.owner.connect() as conn:
        one = conn.scalar
        tables = list(
            conn.scalars(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'data' ORDER BY tablename")
            )
        )
        return {
            "datasets": one(text("SELECT count(*) FROM portal.datasets")),
            "data_tables": tables,
            "changesets": one(text("SELECT count(*) FROM audit.changeset")),
            "unsealed": one(text("SELECT count(*) FROM audit.changeset WHERE hash IS NULL")),
            "row_changes": one(text("SELECT count(*) FROM audit.row_change")),
            "bulk_loads": one(text("SELECT count(*) FROM audit.bulk_load")),
            "uploads": one(text("SELECT count(*) FROM audit.upload")),
            "head": tuple(conn.execute(text("SELECT seq, hash FROM audit.chain_head")).one()),
        }


def rows_of(database: DatabaseHandle, dataset_id: int) -> list[tuple[Any, ...]]:
    table = data_table(database.owner, dataset_id)
    with database.owner.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY _row_id"))]


def portal_audit_verify(app_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``portal audit verify`` as its own process, as an operator would run it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
        "PORTAL_DATABASE_URL": app_url,
        "PORTAL_ENV": "dev",
        "PORTAL_DATA_DIR": str(tmp_path / "verify-data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_chain_intact(database: DatabaseHandle, tmp_path: Path) -> None:
    done = portal_audit_verify(database.url("app"), tmp_path)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "chain intact" in done.stdout


@contextmanager
def holding(database: DatabaseHandle, statement: str) -> Iterator[None]:
    """A superuser transaction holding the lock ``statement`` takes, until the block ends."""
    conn = psycopg2.connect(**database.info.connect_kwargs("superuser", database.name))
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        yield
    finally:
        if not conn.closed:
            # The server may have gone away under it (a restart test).
            with contextlib.suppress(psycopg2.OperationalError):
                conn.rollback()
        conn.close()


def portal_backends(database: DatabaseHandle, condition: str = "true") -> list[int]:
    """Pids of the portal's connections to ``database`` matching ``condition``."""
    with database.superuser.connect() as conn:
        return list(
            conn.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :db"
                    f" AND application_name = :app AND ({condition})"
                ),
                {"db": database.name, "app": APPLICATION_NAME},
            )
        )


def wait_for(
    found: Callable[[], list[int]], *, timeout: float = 60.0, what: str = "a backend"
) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = found()
        if pids:
            return pids
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def waiting_on_lock(database: DatabaseHandle) -> list[int]:
    return portal_backends(database, "wait_event_type = 'Lock'")


class Terminator(threading.Thread):
    """Terminates the portal's backend as soon as it waits on a lock (``pg_terminate_backend``),
    from a connection of its own, as an admin or a crashing pooler would."""

    def __init__(self, database: DatabaseHandle) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.terminated: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for pid in wait_for(lambda: waiting_on_lock(self.database), what="a lock wait"):
                with self.database.superuser.connect() as conn:
                    if conn.scalar(text("SELECT pg_terminate_backend(:p)"), {"p": pid}):
                        self.terminated.append(pid)
        except BaseException as exc:  # reported by the test thread
            self.error = exc


# --------------------------------------------------------------------------- restarts


@dataclass
class Restartable:
    """A migrated database on a cluster of this module's own, which a test may stop and start."""

    cluster: EmbeddedPostgres
    handle: DatabaseHandle

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        self.cluster.stop(mode)

    def start(self) -> None:
        info = self.cluster.start()
        assert info.port == self.handle.info.port, "the restarted server moved to another port"


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[tuple[EmbeddedPostgres, ClusterInfo]]:
    base = Path(tempfile.mkdtemp(prefix="portal-faults-pg-", dir="/tmp"))
    base.chmod(0o755)
    cluster = EmbeddedPostgres(base)
    info = cluster.start()
    _superuser_exec(info, "postgres", "ALTER SYSTEM SET fsync = off", "SELECT pg_reload_conf()")
    create_database(info, "faults_template")
    _superuser_exec(info, "faults_template", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    migrate.upgrade(info.url("owner", "faults_template"))
    try:
        yield cluster, info
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def restartable(
    own_cluster: tuple[EmbeddedPostgres, ClusterInfo], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Restartable]:
    cluster, info = own_cluster
    info = cluster.start()  # running, whatever the last test did
    name = f"r_{os.urandom(6).hex()}"
    create_database(info, name, template="faults_template")
    monkeypatch.setenv("PORTAL_DATABASE_URL", info.url("app", name))
    monkeypatch.setenv("PORTAL_ENV", "dev")
    db.reset_engine()
    engines = {
        role: create_engine(info.url(role, name), poolclass=pool.NullPool)  # type: ignore[arg-type]
        for role in ("app", "owner", "superuser")
    }
    try:
        yield Restartable(cluster, DatabaseHandle(info, name, **engines))
    finally:
        db.reset_engine()
        for engine in engines.values():
            engine.dispose()
        cluster.start()
        drop_database(info, name)


def events(database: DatabaseHandle) -> list[str]:
    with database.owner.connect() as conn:
        return list(conn.scalars(text("SELECT actor_username FROM audit.event ORDER BY id")))


def test_reads_fail_clearly_while_the_server_is_down_and_heal_when_it_is_back(
    restartable: Restartable,
) -> None:
    with session_scope() as s:  # the pool now holds a connection to the old server
        assert s.scalar(text("SELECT 1")) == 1
    restartable.stop()
    assert not database_answers()
    with (
        pytest.raises(DatabaseUnavailable, match="database is unavailable") as down,
        session_scope() as s,
    ):
        s.execute(text("SELECT 1"))
    assert type(down.value) is DatabaseUnavailable
    restartable.start()
    assert database_answers()
    for _ in range(3):  # the same engine, no reset: every pooled connection was replaced
        with session_scope() as s:
            assert s.scalar(text("SELECT count(*) FROM portal.datasets")) == 0


def test_a_transaction_open_across_a_restart_leaves_nothing(restartable: Restartable) -> None:
    with pytest.raises(ConnectionLost, match="nothing was saved"), session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="across-restart")
        s.flush()
        restartable.stop()
        restartable.start()
        s.execute(text("SELECT 1"))
    assert events(restartable.handle) == []
    with session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="after-restart")
    assert events(restartable.handle) == ["after-restart"]


def test_a_commit_cut_off_by_a_server_that_stays_down_is_reported_as_unknown(
    restartable: Restartable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    database = restartable.handle
    actor = editor_in(database)
    dataset = upload_dataset(actor, CSV, spec=SPEC, name="People")
    read, changes = pending_edits(dataset)
    before, rows_before = snapshot(database), rows_of(database, dataset)
    monkeypatch.setattr(db, "COMMIT_STATUS_WAIT_S", 1.0)

    def stop_when_committing() -> None:
        wait_for(lambda: waiting_on_lock(database), what="the COMMIT's lock wait")
        # Immediate: in a fast shutdown the lock's holder can end first, and the COMMIT then
        # gets the lock and lands before its own backend stops (seen once, in a clean-clone
        # run on a loaded machine). Backends quitting at once release nothing.
        restartable.stop("immediate")

    stopper = threading.Thread(target=stop_when_committing, daemon=True)
    with holding(database, "SELECT 1 FROM audit.chain_head WHERE id = 1 FOR UPDATE"):
        stopper.start()
        with pytest.raises(CommitOutcomeUnknown, match="not known") as unknown:
            commit(actor, read, changes)
    stopper.join(60)
    xid = unknown.value.xid
    assert xid is not None
    assert xid.isdigit()
    assert db.transaction_status(xid) is None  # the server is still down: it cannot say
    restartable.start()
    # It had not landed: the server rolled it back when it stopped. Its id, whose log the crash
    # lost, may already belong to a later transaction (seen: the server says "committed"), so
    # the Edit page confirms the server's word by the changeset the commit would have written.
    assert db.transaction_status(xid) in ("aborted", "committed")
    with session_scope() as s:
        found = writes.changeset_of_transaction(session=s, dataset_id=dataset, actor=actor, xid=xid)
    assert found is None
    assert snapshot(database) == before
    assert rows_of(database, dataset) == rows_before
    assert_chain_intact(database, tmp_path)


def test_a_committed_status_from_a_restarted_server_is_not_taken_for_a_lost_commit(
    restartable: Restartable,
) -> None:
    """After a crash the id of a transaction whose log was lost can go to another one: a
    server that restarted since the commit was sent is not believed when it says "committed"."""
    with session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="before-restart")
        s.flush()
        written = db._written_xid(s)
    assert written is not None
    xid, started = written
    assert db._commit_outcome(xid, started=started, wait=0) == "committed"
    restartable.stop()
    restartable.start()
    assert db._commit_outcome(xid, wait=0) == "committed"  # what the server says
    assert db._commit_outcome(xid, started=started, wait=0) is None  # not taken as proof


# --------------------------------------------------------------------------- pg_terminate_backend


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    return editor_in(fresh_db)


@pytest.fixture
def people(editor: Actor) -> int:
    return upload_dataset(editor, CSV, spec=SPEC, name="People")


@pytest.mark.parametrize("held", ["row", "commit"])
def test_a_backend_terminated_mid_commit_rolls_back_whole_and_the_edits_commit_on_retry(
    fresh_db: DatabaseHandle, editor: Actor, people: int, tmp_path: Path, held: str
) -> None:
    read, changes = pending_edits(people)
    before, rows_before = snapshot(fresh_db), rows_of(fresh_db, people)
    lock = {
        # the first UPDATE waits: the changeset is open, nothing committed yet
        "row": f"SELECT 1 FROM {data_table(fresh_db.owner, people)} WHERE _row_id = 1 FOR UPDATE",
        # every write is done and COMMIT is running: the seal waits for the chain head
        "commit": "SELECT 1 FROM audit.chain_head WHERE id = 1 FOR UPDATE",
    }[held]
    terminator = Terminator(fresh_db)
    started = time.perf_counter()
    with holding(fresh_db, lock):
        terminator.start()
        with pytest.raises(ConnectionLost) as lost:
            commit(editor, read, changes)
    terminator.join(60)
    assert terminator.error is None
    assert len(terminator.terminated) == 1
    assert "lost during the commit; nothing was saved" in str(lost.value)
    assert time.perf_counter() - started < 30

    assert snapshot(fresh_db) == before  # no changeset, row change or head move of that attempt
    assert rows_of(fresh_db, people) == rows_before
    assert_chain_intact(fresh_db, tmp_path)

    result = commit(editor, read, changes)  # the same edits, kept by the caller, go in whole
    after = snapshot(fresh_db)
    assert after["changesets"] == before["changesets"] + 1
    assert after["unsealed"] == 0
    assert after["head"][0] == before["head"][0] + 1
    assert result.updated_rows == 1
    assert result.deleted_rows == 1
    assert len(result.inserted_ids) == 1
    assert_chain_intact(fresh_db, tmp_path)


def test_the_outcome_of_a_transaction_is_read_back_by_its_id(fresh_db: DatabaseHandle) -> None:
    with session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="kept")
        kept = db._written_xid(s)
    with pytest.raises(RuntimeError), session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="dropped")
        dropped = db._written_xid(s)
        raise RuntimeError("roll back")
    with session_scope() as s:
        s.execute(text("SELECT 1"))
        assert db._written_xid(s) is None  # wrote nothing: nothing to look up
    assert kept is not None
    assert dropped is not None
    assert db._commit_outcome(kept[0], started=kept[1]) == "committed"
    assert db._commit_outcome(dropped[0], started=dropped[1]) == "aborted"
    assert db.transaction_status(kept[0]) == "committed"


# --------------------------------------------------------------------------- the app process killed

UPLOAD_SNIPPET = """
import sys
from portal import uploads
from portal.actor import Actor

data = open(sys.argv[1], "rb").read()
parsed = uploads.read_file(data)
spec, _ = uploads.propose_spec(parsed)
result = uploads.check(parsed, spec)
assert result.ok
print("checked", flush=True)
uploads.import_file(
    actor=Actor(sys.argv[2], "Killed K.", "editor"), filename="big.csv", data=data,
    parsed=parsed, spec=spec, result=result, target=uploads.NewDataset("Big"), reason="killed",
)
print("stored", flush=True)
"""

COMMIT_SNIPPET = f"""
import sys
from portal import diffs, writes
from portal.actor import Actor
from portal.db import session_scope

dataset_id = int(sys.argv[1])
with session_scope() as s:
    read = writes.read_window(session=s, dataset_id=dataset_id)
window = diffs.make_window(read.spec, diffs.editor_frame(read.spec, read.rows), read.versions)
changes = diffs.build_changeset(window, {EDITS!r}, may_edit=True)
with session_scope() as s:
    writes.commit(
        session=s, actor=Actor(sys.argv[2], "Killed K.", "editor"), dataset_id=dataset_id,
        spec_version=read.spec_version, changes=changes, reason="killed",
    )
print("committed", flush=True)
"""


def app_process(
    database: DatabaseHandle, tmp_path: Path, snippet: str, *args: str
) -> subprocess.Popen[str]:
    db.reset_engine()  # this process's pooled connections would pass for the app's
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")},
        "PORTAL_DATABASE_URL": database.url("app"),
        "PORTAL_ENV": "dev",
        "PORTAL_DATA_DIR": str(tmp_path / "app-data"),
    }
    return subprocess.Popen(
        [sys.executable, "-c", snippet, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the app process and reap it."""
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def wait_until_backends_gone(database: DatabaseHandle) -> None:
    """PostgreSQL ends a dead client's backend when it next talks to it (after a lock wait,
    once the lock is released) and rolls back its transaction."""
    deadline = time.monotonic() + 30
    while portal_backends(database) and time.monotonic() < deadline:
        time.sleep(0.05)
    if portal_backends(database):
        with database.superuser.connect() as conn:
            alive = conn.execute(
                text(
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 80)"
                    " FROM pg_stat_activity WHERE datname = :db"
                ),
                {"db": database.name},
            ).all()
        raise AssertionError(f"the killed process's backend lives on: {alive}")


def big_csv(path: Path, rows: int) -> Path:
    with path.open("w") as out:
        out.write("Code,Amount,Label,Day\n")
        for i in range(rows):
            day = f"2024-01-{i % 28 + 1:02d}"
            out.write(f"C{i:07d},{i % 9973}.{i % 100:02d},label {i % 977},{day}\n")
    return path


@pytest.mark.parametrize("when", ["during COPY", "rows loaded, before COMMIT"])
def test_an_upload_killed_midway_leaves_no_dataset_and_no_changeset(
    fresh_db: DatabaseHandle, editor: Actor, tmp_path: Path, when: str
) -> None:
    before = snapshot(fresh_db)
    csv = big_csv(tmp_path / "big.csv", 400_000 if when == "during COPY" else 2_000)
    # The safety net and the second stop: with this lock held, the upload cannot store its file
    # in audit.upload (its last write before COMMIT), so it can never commit during the test.
    with holding(fresh_db, "LOCK TABLE audit.upload IN SHARE MODE"):
        proc = app_process(fresh_db, tmp_path, UPLOAD_SNIPPET, str(csv), editor.username)
        try:
            if when == "during COPY":
                copying = (
                    "state = 'active' AND query LIKE 'COPY data.%'"
                    " AND wait_event_type IS DISTINCT FROM 'Lock'"
                )
                wait_for(lambda: portal_backends(fresh_db, copying), what="the upload's COPY")
            else:
                # Past COPY and the bulk load's record: storing the file is all that is left.
                storing = "wait_event_type = 'Lock' AND query LIKE 'COPY audit.upload %'"
                wait_for(lambda: portal_backends(fresh_db, storing), what="the upload's last write")
            kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    wait_until_backends_gone(fresh_db)
    assert "stored" not in (proc.stdout.read() if proc.stdout else "")
    assert snapshot(fresh_db) == before  # no dataset, no data table, no changeset, no file
    assert_chain_intact(fresh_db, tmp_path)


@pytest.mark.parametrize("when", ["mid-transaction", "COMMIT sent"])
def test_a_commit_killed_midway_is_all_or_nothing(
    fresh_db: DatabaseHandle, editor: Actor, people: int, tmp_path: Path, when: str
) -> None:
    before, rows_before = snapshot(fresh_db), rows_of(fresh_db, people)
    table = data_table(fresh_db.owner, people)
    lock = {
        "mid-transaction": f"SELECT 1 FROM {table} WHERE _row_id = 1 FOR UPDATE",
        "COMMIT sent": "SELECT 1 FROM audit.chain_head WHERE id = 1 FOR UPDATE",
    }[when]
    with holding(fresh_db, lock):
        proc = app_process(fresh_db, tmp_path, COMMIT_SNIPPET, str(people), editor.username)
        try:
            wait_for(lambda: waiting_on_lock(fresh_db), what="the commit's lock wait")
            kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    # The lock released, the orphaned backend runs on until it next talks to its dead client.
    wait_until_backends_gone(fresh_db)
    after = snapshot(fresh_db)
    if when == "mid-transaction":  # COMMIT was never sent: PostgreSQL rolled it all back
        assert after == before
        assert rows_of(fresh_db, people) == rows_before
    else:  # COMMIT had reached the server: it completes, whole, sealed, with its row changes
        assert after["changesets"] == before["changesets"] + 1
        assert after["unsealed"] == 0
        assert after["row_changes"] == before["row_changes"] + 3
        assert after["head"][0] == before["head"][0] + 1
        names = [r[2] for r in rows_of(fresh_db, people)]
        assert names == ["ann", "bob", "cy", "eve"]
    assert_chain_intact(fresh_db, tmp_path)


# --------------------------------------------------------------------------- the server refuses


@pytest.mark.parametrize(
    ("sqlstate", "kind", "says"),
    [
        ("53100", DatabaseFull, "run out of disk space"),
        ("53200", DatabaseFull, "ran out of memory"),
        ("53400", DatabaseFull, "configured limit"),
        ("42501", DatabasePrivilege, "not allowed"),
        ("25006", DatabaseReadOnly, "read-only"),
        ("40P01", DatabaseRefused, "Try again"),
        ("40001", DatabaseRefused, "collided with someone else's"),
        ("55P03", DatabaseRefused, "locked by other work"),
        ("42P01", DatabaseRefused, "portal migrate"),
        ("42703", DatabaseRefused, "portal migrate"),
        ("42883", DatabaseRefused, "portal migrate"),
        ("57014", DatabaseRefused, "took too long"),
    ],
)
def test_each_server_refusal_becomes_a_portal_error_that_says_what_to_do(
    fresh_db: DatabaseHandle, sqlstate: str, kind: type[DatabaseRefused], says: str
) -> None:
    raise_it = f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{sqlstate}'; END $$"
    with pytest.raises(kind, match=says) as refused, session_scope() as s:
        record_event(session=s, kind="sign_in", actor_username="refused")
        s.execute(text(raise_it))
    assert refused.value.sqlstate == sqlstate
    assert "nothing was saved" in str(refused.value)
    assert events(fresh_db) == []


def test_other_database_errors_are_left_to_the_caller(fresh_db: DatabaseHandle) -> None:
    raise_it = "DO $$ BEGIN RAISE EXCEPTION 'dup' USING ERRCODE = 'unique_violation'; END $$"
    with pytest.raises(IntegrityError), session_scope() as s:
        s.execute(text(raise_it))


def test_a_read_only_database_refuses_commits_and_uploads_clearly(
    fresh_db: DatabaseHandle, editor: Actor, people: int, tmp_path: Path
) -> None:
    read, changes = pending_edits(people)
    _superuser_exec(
        fresh_db.info,
        "postgres",
        sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(
            sql.Identifier(fresh_db.name)
        ),
    )
    db.reset_engine()  # new connections get the setting
    before = snapshot(fresh_db)
    with pytest.raises(DatabaseReadOnly, match="read-only"):
        commit(editor, read, changes)
    with pytest.raises(DatabaseReadOnly, match="read-only"):
        upload_dataset(editor, CSV, spec=SPEC, name="More")
    assert snapshot(fresh_db) == before


def test_a_revoked_privilege_is_named_as_a_set_up_fault(
    fresh_db: DatabaseHandle, editor: Actor, people: int, tmp_path: Path
) -> None:
    read, changes = pending_edits(people)
    before, rows_before = snapshot(fresh_db), rows_of(fresh_db, people)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("REVOKE INSERT ON audit.changeset FROM portal_app"))
    with pytest.raises(DatabasePrivilege, match="permission denied for table changeset"):
        commit(editor, read, changes)
    with pytest.raises(DatabasePrivilege, match="tell an admin"):
        upload_dataset(editor, CSV, spec=SPEC, name="More")
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("GRANT INSERT ON audit.changeset TO portal_app"))
        conn.execute(text(f"REVOKE UPDATE ON {data_table(fresh_db.owner, people)} FROM portal_app"))
    # The data table's own privilege fails inside portal.writes' psycopg2 cursor: named the same.
    with pytest.raises(DatabasePrivilege, match="permission denied for table") as refused:
        commit(editor, read, changes)
    assert "tell an admin" in str(refused.value)
    assert snapshot(fresh_db) == before
    assert rows_of(fresh_db, people) == rows_before
    assert_chain_intact(fresh_db, tmp_path)


def test_a_configured_limit_is_reported_not_raised_as_a_traceback(
    fresh_db: DatabaseHandle,
) -> None:
    with fresh_db.superuser.begin() as conn:  # temp_file_limit is for superusers to set
        conn.execute(
            text(f'ALTER ROLE portal_app IN DATABASE "{fresh_db.name}" SET temp_file_limit = 64')
        )
    db.reset_engine()
    with pytest.raises(DatabaseFull, match="configured limit") as refused, session_scope() as s:
        s.execute(text("SET LOCAL work_mem = '64kB'"))
        s.execute(text("SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC")).all()
    assert refused.value.sqlstate == "53400"
    assert "temp_file_limit" in str(refused.value)


@pytest.fixture
def tiny_tablespace(fresh_db: DatabaseHandle) -> Iterator[str]:
    """A tablespace on a 1 MB tmpfs, the database's default for new tables."""
    mount = Path(tempfile.mkdtemp(prefix="portal-tiny-", dir="/tmp"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        owner = fresh_db.info.data_dir.stat()
        os.chown(mount, owner.st_uid, owner.st_gid)
        space = f"tiny_{fresh_db.name}"
        with fresh_db.superuser.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text(f"CREATE TABLESPACE {space} LOCATION '{mount}'"))
            conn.execute(text(f"GRANT CREATE ON TABLESPACE {space} TO portal_app"))
            conn.execute(text(f'ALTER DATABASE "{fresh_db.name}" SET default_tablespace = {space}'))
        db.reset_engine()
        try:
            yield space
        finally:
            db.reset_engine()
            with fresh_db.superuser.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(text(f'ALTER DATABASE "{fresh_db.name}" RESET default_tablespace'))
                conn.execute(text(f"DROP TABLESPACE {space}"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()


def test_a_full_disk_refuses_an_upload_clearly_and_leaves_nothing(
    fresh_db: DatabaseHandle, editor: Actor, tiny_tablespace: str, tmp_path: Path
) -> None:
    before = snapshot(fresh_db)
    data = big_csv(tmp_path / "big.csv", 40_000).read_bytes()  # about 1.7 MB of rows
    with pytest.raises(DatabaseFull, match="run out of disk space") as full:
        upload_dataset(editor, data, name="Too big")
    assert full.value.sqlstate == "53100"
    assert "No space left on device" in str(full.value)
    assert snapshot(fresh_db) == before
    assert_chain_intact(fresh_db, tmp_path)


# --------------------------------------------------------------------------- the login refused


LOGIN_FAULTS = {
    # (what the superuser changes, what puts it back, what PostgreSQL says)
    "wrong password": (
        "ALTER ROLE portal_app PASSWORD 'not the portal''s password'",
        "ALTER ROLE portal_app PASSWORD {app_password}",
        'password authentication failed for user "portal_app"',
    ),
    "role renamed away": (
        "ALTER ROLE portal_app RENAME TO portal_app_gone",
        "ALTER ROLE portal_app_gone RENAME TO portal_app",
        # Not 'role "portal_app" does not exist', which only the server's own log says: a
        # client asked for a password is not told whether the role exists.
        'password authentication failed for user "portal_app"',
    ),
    "role may not log in": (
        "ALTER ROLE portal_app NOLOGIN",
        "ALTER ROLE portal_app LOGIN",
        'role "portal_app" is not permitted to log in',
    ),
    "no CONNECT on the database": (
        "REVOKE CONNECT ON DATABASE {database} FROM portal_app",
        "GRANT CONNECT ON DATABASE {database} TO portal_app",
        "permission denied for database",
    ),
}


@contextmanager
def login_refused(database: DatabaseHandle, fault: str) -> Iterator[str]:
    """The cluster refuses the portal's login (``LOGIN_FAULTS[fault]``) until the block ends;
    yields what PostgreSQL says. The engine is reset so that no pooled connection (logged in
    before the change) hides it."""
    change, undo, says = LOGIN_FAULTS[fault]
    names = {
        "app_password": sql.Literal(database.info.app_password),
        "database": sql.Identifier(database.name),
    }
    _superuser_exec(database.info, "postgres", sql.SQL(change).format(**names))
    db.reset_engine()
    try:
        yield says
    finally:
        _superuser_exec(database.info, "postgres", sql.SQL(undo).format(**names))
        db.reset_engine()


@pytest.mark.parametrize("fault", LOGIN_FAULTS)
def test_a_refused_login_is_a_set_up_fault_not_an_outage(
    fresh_db: DatabaseHandle, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting does not fix a wrong password: the person is told that an admin must fix the
    portal's database settings (not that the database may be restarting, nor the password or
    the URL), and the server's log says what PostgreSQL refused."""
    with login_refused(fresh_db, fault) as says, caplog.at_level("ERROR", logger="portal.db"):
        with pytest.raises(DatabaseLoginRefused) as refused, session_scope() as s:
            record_event(session=s, kind="sign_in", actor_username="refused")
        # It answered, with a refusal: a page waiting for the database reruns and says this.
        assert database_answers()
    message = str(refused.value)
    assert not isinstance(refused.value, DatabaseUnavailable)  # no retrying in a loop
    assert "cannot sign in to its database" in message
    assert "tell an admin" in message
    assert "restarting" not in message
    assert fresh_db.info.app_password not in message
    assert str(fresh_db.info.port) not in message  # nothing of the URL
    assert says in refused.value.reason
    assert fresh_db.info.app_password not in refused.value.reason
    assert says in caplog.text
    assert events(fresh_db) == []


def test_a_database_that_does_not_exist_is_a_set_up_fault(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_DATABASE_URL", fresh_db.info.url("app", "no_such_database"))
    db.reset_engine()
    with pytest.raises(DatabaseLoginRefused) as refused, session_scope() as s:
        s.execute(text("SELECT 1"))
    assert "cannot sign in to its database" in str(refused.value)
    assert 'database "no_such_database" does not exist' in refused.value.reason


def test_pg_hba_conf_refusing_the_portal_is_a_set_up_fault(fresh_db: DatabaseHandle) -> None:
    hba = fresh_db.info.data_dir / "pg_hba.conf"
    kept = hba.read_text()
    hba.write_text(f"host {fresh_db.name} portal_app all reject\n{kept}")
    _superuser_exec(fresh_db.info, "postgres", "SELECT pg_reload_conf()")
    db.reset_engine()
    try:
        with pytest.raises(DatabaseLoginRefused) as refused, session_scope() as s:
            s.execute(text("SELECT 1"))
    finally:
        hba.write_text(kept)
        _superuser_exec(fresh_db.info, "postgres", "SELECT pg_reload_conf()")
    assert "cannot sign in to its database" in str(refused.value)
    assert "pg_hba.conf rejects connection" in refused.value.reason


@pytest.mark.parametrize(
    ("limit", "says"),
    [
        ("ALTER ROLE portal_app CONNECTION LIMIT 0", 'too many connections for role "portal_app"'),
        ("ALTER DATABASE {database} CONNECTION LIMIT 0", "too many connections for database"),
    ],
    ids=["role", "database"],
)
def test_no_free_connection_is_said_as_such_not_as_a_restart(
    fresh_db: DatabaseHandle, caplog: pytest.LogCaptureFixture, limit: str, says: str
) -> None:
    """The connection limit reached: worth waiting for (the page retries), but what to tell an
    admin is that the limit is too low, not that the database may be restarting."""
    database = sql.Identifier(fresh_db.name)
    _superuser_exec(fresh_db.info, "postgres", sql.SQL(limit).format(database=database))
    db.reset_engine()
    try:
        with (
            caplog.at_level("WARNING", logger="portal.db"),
            pytest.raises(DatabaseUnavailable) as busy,
            session_scope() as s,
        ):
            record_event(session=s, kind="sign_in", actor_username="refused")
    finally:
        undo = limit.replace("LIMIT 0", "LIMIT -1")
        _superuser_exec(fresh_db.info, "postgres", sql.SQL(undo).format(database=database))
        db.reset_engine()
    message = str(busy.value)
    assert "no free connection" in message
    assert "restarting" not in message
    assert "tell an admin" in message
    assert says in caplog.text
    assert events(fresh_db) == []
