"""`portal serve` waits for its database: against a real PostgreSQL that starts only after the
first attempts failed, it proceeds; against one that never comes it gives up with a clear message
and exits 1 without starting Streamlit. Delays are tiny; waits are on conditions, not on time."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from portal import cli
from portal.db import wait_for_database
from portal.embedded import ClusterInfo, EmbeddedPostgres
from portal.errors import DatabaseLoginRefused, DatabaseUnavailable
from tests.conftest import DatabaseHandle
from tests.db.test_faults import login_refused

pytestmark = pytest.mark.db


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stopped_cluster() -> Iterator[tuple[EmbeddedPostgres, ClusterInfo]]:
    """A real cluster, created (initdb) and stopped again: a database that is not up yet."""
    base = Path(tempfile.mkdtemp(prefix="portal-late-pg-", dir="/tmp"))
    base.chmod(0o755)
    cluster = EmbeddedPostgres(base)
    info = cluster.start()
    cluster.stop()
    try:
        yield cluster, info
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_waits_for_a_database_that_starts_late(
    stopped_cluster: tuple[EmbeddedPostgres, ClusterInfo],
) -> None:
    cluster, info = stopped_cluster
    lines: list[str] = []
    first_failure = threading.Event()
    outcome: dict[str, object] = {}

    def log(line: str) -> None:
        lines.append(line)
        first_failure.set()

    def serve_wait() -> None:
        try:
            outcome["attempts"] = wait_for_database(
                info.url("app"), attempts=480, first_delay=0.05, max_delay=0.25, log=log
            )
        except Exception as exc:  # reported by the assertions below
            outcome["error"] = exc

    waiter = threading.Thread(target=serve_wait, daemon=True)
    waiter.start()
    assert first_failure.wait(timeout=30), "the first attempt never failed"
    try:
        started = cluster.start()
        assert started.port == info.port  # the cluster keeps its port while it is free
        waiter.join(timeout=150)  # longer than the waiter itself may take
        assert not waiter.is_alive(), lines[-3:]
    finally:
        cluster.stop()

    assert "error" not in outcome, outcome
    attempts = outcome["attempts"]
    assert isinstance(attempts, int)
    assert attempts == len(lines) + 1 >= 2
    assert lines[0].startswith(
        f"database unavailable at 127.0.0.1:{info.port}, retrying in 0.05s (attempt 1/480): "
    )
    assert lines[1].startswith(
        f"database unavailable at 127.0.0.1:{info.port}, retrying in 0.1s (attempt 2/480)"
    )
    assert info.app_password not in "\n".join(lines)


def test_gives_up_with_a_clear_message_and_backs_off() -> None:
    port = _closed_port()
    lines: list[str] = []
    slept: list[float] = []
    url = f"postgresql+psycopg2://portal_app:s3cret-pw@127.0.0.1:{port}/portal"
    with pytest.raises(DatabaseUnavailable) as gave_up:
        wait_for_database(
            url, attempts=5, first_delay=0.01, max_delay=0.03, log=lines.append, sleep=slept.append
        )
    assert slept == [0.01, 0.02, 0.03, 0.03]
    expected = [
        f"database unavailable at 127.0.0.1:{port}, retrying in {delay}s (attempt {n}/5): "
        for n, delay in enumerate(["0.01", "0.02", "0.03", "0.03"], start=1)
    ]
    assert [line[: len(start)] for line, start in zip(lines, expected, strict=True)] == expected
    message = str(gave_up.value)
    assert message.startswith(
        f"database unavailable at 127.0.0.1:{port}, gave up after 5 attempts over 0.09s ("
    )
    assert "PORTAL_DATABASE_URL" in message
    assert "s3cret-pw" not in message + "\n".join(lines)


def test_serve_exits_1_without_starting_streamlit(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("PORTAL_DATABASE_URL", f"postgresql+psycopg2://u:p@127.0.0.1:{port}/portal")
    execs: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: execs.append(argv))
    started = time.monotonic()
    result = CliRunner().invoke(
        cli.main, ["serve", "--db-wait-attempts", "3", "--db-wait-delay", "0.01"]
    )
    assert result.exit_code == 1, result.output
    assert f"database unavailable at 127.0.0.1:{port}, retrying in 0.01s (attempt 1/3)" in (
        result.output
    )
    assert "Error: database unavailable at" in result.output
    assert "gave up after 3 attempts" in result.output
    assert execs == []
    assert time.monotonic() - started < 30


def test_a_refused_login_is_not_waited_for(fresh_db: DatabaseHandle) -> None:
    """A wrong password does not heal with time: no retries, and the message says what to fix."""
    lines: list[str] = []
    slept: list[float] = []
    with (
        login_refused(fresh_db, "wrong password") as says,
        pytest.raises(DatabaseLoginRefused) as refused,
    ):
        wait_for_database(
            fresh_db.url("app"), attempts=5, first_delay=0.01, log=lines.append, sleep=slept.append
        )
    assert (slept, lines) == ([], [])
    assert says in refused.value.reason
    message = str(refused.value)
    assert f"the database at 127.0.0.1:{fresh_db.info.port} refused the portal's login" in message
    assert "PORTAL_DATABASE_URL" in message
    assert fresh_db.info.app_password not in message + refused.value.reason


def test_serve_exits_1_at_once_when_the_login_is_refused(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: execs.append(argv))
    started = time.monotonic()
    with login_refused(fresh_db, "role may not log in") as says:
        result = CliRunner().invoke(cli.main, ["serve", "--db-wait-delay", "5"])
    assert result.exit_code == 1, result.output
    assert "refused the portal's login" in result.output
    assert says in result.output
    assert "retrying" not in result.output
    assert execs == []
    assert time.monotonic() - started < 5


def test_serve_starts_streamlit_once_the_database_answers(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: execs.append(argv))
    monkeypatch.chdir(tmp_path)  # serve changes into the repository before it execs
    result = CliRunner().invoke(cli.main, ["serve", "--port", "8599"])
    assert result.exit_code == 0, result.output
    assert "unavailable" not in result.output
    [argv] = execs
    assert argv[1:4] == ["-m", "portal.streamlit_server", "run"]
    assert argv[argv.index("--server.port") + 1] == "8599"
