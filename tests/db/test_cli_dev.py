"""`portal dev` on a fresh data directory: embedded PostgreSQL, migrations, first admin, serve;
a second start reuses everything; Ctrl-C stops the portal and the database cleanly. A generated
first-admin password must be replaced at the first sign-in, and its file goes once it is."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, pool, text
from sqlalchemy.orm import Session

from portal import signin
from portal.actor import cli_actor
from portal.cli import main
from portal.config import get_settings
from portal.embedded import EmbeddedPostgres
from portal.users import password_matches, reset_password
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.db


@pytest.fixture
def data_dir():
    base = Path(tempfile.mkdtemp(prefix="portal-dev-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    try:
        EmbeddedPostgres(base).stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)  # a cluster: about 47 MB per test left in /tmp


def _env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_DATA_DIR"] = str(data_dir)
    env.update({f"PORTAL_{k.upper()}": v for k, v in settings.items()})
    return env


def _portal(data_dir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portal.cli", *args],
        env=_env(data_dir, **settings),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dev_prepares_database_and_first_admin_once(data_dir: Path) -> None:
    first = _portal(data_dir, "dev", "--no-serve")
    assert first.returncode == 0, first.stderr
    assert "first admin created: user 'admin', password " in first.stdout
    password_file = data_dir / "admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert password in first.stdout  # shown once on the terminal
    assert "embedded PostgreSQL stopped" in first.stdout

    second = _portal(data_dir, "dev", "--no-serve")
    assert second.returncode == 0, second.stderr
    assert "first admin created" not in second.stdout
    assert f"sign in as 'admin' with the password in {password_file}" in second.stdout

    with EmbeddedPostgres(data_dir) as cluster:
        engine = create_engine(cluster.info().url("app"), poolclass=pool.NullPool)
        with engine.connect() as conn:
            users = conn.execute(
                text("SELECT username, role, password_hash FROM portal.users")
            ).all()
            events = conn.scalar(text("SELECT count(*) FROM audit.event WHERE kind = 'user_admin'"))
        engine.dispose()
    assert [(u.username, u.role) for u in users] == [("admin", "admin")]
    assert password_matches(password, users[0].password_hash)
    assert events == 1


def test_dev_uses_the_configured_admin_password(data_dir: Path) -> None:
    env_password = "correct horse battery staple"
    result = _portal(data_dir, "dev", "--no-serve", admin_password=env_password)
    assert result.returncode == 0, result.stderr
    assert "password from PORTAL_ADMIN_PASSWORD" in result.stdout
    assert env_password not in result.stdout
    assert not (data_dir / "admin-password").exists()


def test_the_developer_s_libpq_settings_do_not_reach_the_embedded_cluster(data_dir: Path) -> None:
    """PGSSLMODE=require, set for a hosted database, made the embedded cluster (no TLS) refuse
    every login, with advice to delete the cluster and its data; a PGTARGETSESSIONATTRS for a
    standby refused the cluster as not one."""
    first = _portal(data_dir, "dev", "--no-serve")
    assert first.returncode == 0, first.stderr
    for name, value in [("PGSSLMODE", "require"), ("PGTARGETSESSIONATTRS", "standby")]:
        env = _env(data_dir) | {name: value}
        for args in (["dev", "--no-serve"], ["user", "list"]):
            result = subprocess.run(
                [sys.executable, "-m", "portal.cli", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert result.returncode == 0, (name, args, result.stderr)
            assert "delete the cluster directory" not in result.stderr
    assert not EmbeddedPostgres(data_dir).is_running()


def test_a_data_directory_named_in_another_encoding_is_used(data_dir: Path) -> None:
    """A checkout under a directory named in Latin-1 ("café" as b"caf\\xe9"): initdb quotes the
    path back, and reading its output as UTF-8 stopped `portal dev` with a UnicodeDecodeError
    traceback before the cluster existed."""
    latin1 = Path(os.fsdecode(bytes(data_dir) + b"/caf\xe9"))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "portal.cli", "dev", "--no-serve"],
            env=_env(latin1),
            capture_output=True,
            text=True,
            errors="replace",  # the path, in the output, is no UTF-8
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "first admin created: user 'admin'" in result.stdout
        assert (latin1 / "pg" / "PG_VERSION").is_file()
        assert not EmbeddedPostgres(latin1).is_running()
    finally:
        EmbeddedPostgres(latin1).stop()


def dev_here() -> Result:
    """`portal dev --no-serve` in this process, on the test's database (PORTAL_DATABASE_URL is
    set, so no embedded cluster is started)."""
    return CliRunner().invoke(main, ["dev", "--no-serve"])


def user_admin_events(db: DatabaseHandle) -> list[tuple[str, str, str]]:
    with db.owner.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT target, detail->>'action', detail->>'role' FROM audit.event"
                " WHERE kind = 'user_admin' ORDER BY id"
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_generated_first_admin_password_must_be_replaced(fresh_db: DatabaseHandle) -> None:
    result = dev_here()
    assert result.exit_code == 0, result.output
    password = (get_settings().data_dir / "admin-password").read_text().strip()
    assert password in result.output
    assert "the first sign-in asks admin to choose their own" in result.output
    assert signin.authenticate("admin", password).must_change_password is True
    assert user_admin_events(fresh_db) == [("admin", "create", "admin")]


def test_dev_removes_the_admin_password_file_once_admin_chose_theirs(
    fresh_db: DatabaseHandle,
) -> None:
    assert dev_here().exit_code == 0
    secret_file = get_settings().data_dir.resolve() / "admin-password"
    generated = secret_file.read_text().strip()
    again = dev_here()
    assert f"sign in as 'admin' with the password in {secret_file}" in again.output
    assert secret_file.exists()

    signin.change_own_password(
        "admin",
        current_password=generated,
        new_password="the admin's own password",
        confirm_password="the admin's own password",
    )
    after = dev_here()
    assert after.exit_code == 0, after.output
    assert f"removed {secret_file}: it no longer holds admin's password" in after.output
    assert "sign in as" not in after.output
    assert generated not in after.output
    assert not secret_file.exists()
    last = dev_here()
    assert last.exit_code == 0, last.output
    assert "admin-password" not in last.output
    assert user_admin_events(fresh_db) == [
        ("admin", "create", "admin"),
        ("admin", "change_own_password", None),
    ]


def test_dev_removes_the_admin_password_file_after_a_reset(fresh_db: DatabaseHandle) -> None:
    assert dev_here().exit_code == 0
    secret_file = get_settings().data_dir.resolve() / "admin-password"
    with Session(fresh_db.app) as s, s.begin():  # another temporary password, still to change
        reset_password(
            session=s, actor=cli_actor(), username="admin", password="another temporary one"
        )
    after = dev_here()
    assert after.exit_code == 0, after.output
    assert f"removed {secret_file}: it no longer holds admin's password" in after.output
    assert not secret_file.exists()
    assert signin.authenticate("admin", "another temporary one").must_change_password is True
    assert user_admin_events(fresh_db) == [
        ("admin", "create", "admin"),
        ("admin", "reset_password", None),
    ]


def test_dev_keeps_the_admin_password_file_while_it_still_works(fresh_db: DatabaseHandle) -> None:
    """As in a data directory from before admin had to replace it: the flag is not set, the file
    still holds admin's password, so it stays (removing it would lose the only copy)."""
    assert dev_here().exit_code == 0
    secret_file = get_settings().data_dir.resolve() / "admin-password"
    with fresh_db.owner.begin() as conn:
        conn.execute(text("UPDATE portal.users SET must_change_password = false"))
    again = dev_here()
    assert again.exit_code == 0, again.output
    assert f"sign in as 'admin' with the password in {secret_file}" in again.output
    assert signin.authenticate("admin", secret_file.read_text().strip()).username == "admin"


def test_an_admin_password_file_readable_by_others_is_made_private_again(
    fresh_db: DatabaseHandle,
) -> None:
    """`.data` copied without its modes (`cp -r`, a restored backup): the file holding admin's
    password stayed readable by every user of the machine, though the README says mode 0600
    (the cluster's credentials file is put back to 0600 on each start)."""
    assert dev_here().exit_code == 0
    secret_file = get_settings().data_dir.resolve() / "admin-password"
    secret_file.chmod(0o644)
    again = dev_here()
    assert again.exit_code == 0, again.output
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert f"{secret_file} was readable by others: it is now mode 0600" in again.output
    assert "readable by others" not in dev_here().output


def test_a_configured_first_admin_password_is_kept(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_ADMIN_PASSWORD", "correct horse battery staple")
    result = dev_here()
    assert result.exit_code == 0, result.output
    assert "password from PORTAL_ADMIN_PASSWORD" in result.output
    signed = signin.authenticate("admin", "correct horse battery staple")
    assert signed.must_change_password is False  # the operator chose it; it was never shown
    assert user_admin_events(fresh_db) == [("admin", "create", "admin")]


def test_a_first_admin_password_set_in_another_encoding_is_refused_plainly(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An .env saved as Latin-1: Python keeps the byte it cannot decode as a lone surrogate.
    monkeypatch.setenv("PORTAL_ADMIN_PASSWORD", os.fsdecode(b"caf\xe9 horse battery staple"))
    result = dev_here()
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a UnicodeEncodeError
    assert "The password is not UTF-8 text" in result.output
    assert user_admin_events(fresh_db) == []


@pytest.mark.parametrize(
    ("configured", "problem"),
    [
        ("abababababab", "a repeated or running sequence of characters"),
        ("admin", "is 5 characters long; use at least 12"),
    ],
    ids=["repeat", "short"],
)
def test_a_first_admin_password_against_the_rules_names_the_variable(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch, configured: str, problem: str
) -> None:
    """README: a setting outside its limits stops the portal with a message naming the
    variable. The operator typed no password: "The password is …" alone did not say which."""
    monkeypatch.setenv("PORTAL_ADMIN_PASSWORD", configured)
    result = dev_here()
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "PORTAL_ADMIN_PASSWORD" in result.output
    assert problem in result.output
    assert "no admin was created" in result.output
    assert user_admin_events(fresh_db) == []


def test_dev_serves_and_ctrl_c_stops_portal_and_database(data_dir: Path) -> None:
    port = _free_port()
    proc = _serving(data_dir, port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            assert r.read() == b"ok"
        assert EmbeddedPostgres(data_dir).is_running()
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "embedded PostgreSQL stopped" in output
    assert "Traceback" not in output
    assert not EmbeddedPostgres(data_dir).is_running()
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_dev_stopped_or_its_terminal_closed_stops_portal_and_database(
    data_dir: Path, signum: signal.Signals
) -> None:
    """SIGHUP is what closing the terminal of `make run` sends: it ended `portal dev` at once,
    leaving the embedded PostgreSQL running (and Streamlit, when sent to `portal dev` alone)."""
    port = _free_port()
    proc = _serving(data_dir, port)
    try:
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "embedded PostgreSQL stopped" in output
    assert not EmbeddedPostgres(data_dir).is_running()
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_dev_stopped_while_it_starts_leaves_no_database_running(
    data_dir: Path, signum: signal.Signals
) -> None:
    """Stopped while it migrated the database (before Streamlit ran), `portal dev` ended at
    once and the embedded PostgreSQL it had started kept running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "dev", "--port", str(_free_port())],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[1].startswith("PostgreSQL listening on"), lines
        proc.send_signal(signum)  # the migrations of a new database take seconds
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in output
    assert "embedded PostgreSQL stopped" in output
    assert not EmbeddedPostgres(data_dir).is_running()


def test_a_command_stopped_at_work_stops_the_database_it_started(data_dir: Path) -> None:
    """`portal audit verify --data` on a large database, say, stopped with SIGTERM: it ended at
    once and the embedded PostgreSQL it had started kept running."""
    at_work = (
        "import sys, time\n"
        "from portal.cli import _database\n"
        "with _database(migrated=False):\n"
        "    print('at work', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", at_work],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "at work\n"
        assert EmbeddedPostgres(data_dir).is_running()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not EmbeddedPostgres(data_dir).is_running()


def _children(pid: int) -> list[int]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def test_the_portal_s_server_is_not_given_the_owner_role(data_dir: Path) -> None:
    """The Streamlit process `portal dev` starts connects as portal_app; it was also handed
    PORTAL_MIGRATION_DATABASE_URL, the owner's URL and password (the role that may drop the
    audit log's triggers), which only migrations need."""
    proc = _serving(data_dir, _free_port())
    try:
        (server,) = _children(proc.pid)
        environ = Path(f"/proc/{server}/environ").read_bytes().split(b"\0")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    owner_password = json.loads((data_dir / "pg-credentials.json").read_text())["owner_password"]
    names = {entry.split(b"=", 1)[0] for entry in environ}
    assert b"PORTAL_DATABASE_URL" in names
    assert b"PORTAL_MIGRATION_DATABASE_URL" not in names
    assert not any(owner_password.encode() in entry for entry in environ)


def test_dev_exits_non_zero_when_the_portal_cannot_serve(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _portal(data_dir, "dev", "--port", str(port))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Port {port} is not available" in result.stdout + result.stderr  # Streamlit's
    assert (
        "Error: The portal's server (Streamlit) stopped with exit status 1; its own message is "
        f"above. If port {port} is in use, choose another with --port." in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "embedded PostgreSQL stopped" in result.stdout
    assert not EmbeddedPostgres(data_dir).is_running()


def _as_from_a_terminal() -> None:
    """Ctrl-C's default action, as in a terminal: a test run started in the background of a
    non-interactive shell ignores SIGINT, its children inherit that, and Python then never raises
    KeyboardInterrupt (four tests here waited 60 s each for a Ctrl-C that could not arrive)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _serving(data_dir: Path, port: int) -> subprocess.Popen[str]:
    """`portal dev --port PORT`, once its portal answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal.cli", "dev", "--port", str(port)],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.communicate()[0]) from None
            time.sleep(0.5)


def test_a_second_dev_leaves_the_database_of_the_first_running(data_dir: Path) -> None:
    port = _free_port()
    first = _serving(data_dir, port)
    try:
        again = _portal(data_dir, "dev", "--no-serve")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "embedded PostgreSQL left running: another portal command uses it" in again.stdout
        same_port = _portal(data_dir, "dev", "--port", str(port))  # `make run` twice
        assert same_port.returncode == 1, same_port.stdout + same_port.stderr
        assert "left running" in same_port.stdout
        users = _portal(data_dir, "user", "list")
        assert users.returncode == 0, users.stderr
        assert EmbeddedPostgres(data_dir).is_running()  # the first portal still has its database
        first.send_signal(signal.SIGINT)
        output, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert "embedded PostgreSQL stopped" in output
    assert not EmbeddedPostgres(data_dir).is_running()


def test_the_last_portal_command_to_end_stops_the_database(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`portal dev` stopped while a `portal user …` command was at work on its database."""
    from portal.cli import _database

    monkeypatch.setenv("PORTAL_DATA_DIR", str(data_dir))
    first = _serving(data_dir, _free_port())
    try:
        with _database():
            first.send_signal(signal.SIGINT)
            output, _ = first.communicate(timeout=60)
            assert "embedded PostgreSQL left running: another portal command uses it" in output
            assert EmbeddedPostgres(data_dir).is_running()
    finally:
        if first.poll() is None:
            first.kill()
    assert not EmbeddedPostgres(data_dir).is_running()


def test_dev_leaves_the_database_of_a_running_command(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `portal user …` or `portal audit …` command started the cluster and is still at work."""
    from portal.cli import _database

    monkeypatch.setenv("PORTAL_DATA_DIR", str(data_dir))
    with _database(migrated=False):
        done = _portal(data_dir, "dev", "--no-serve")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "left running" in done.stdout
        assert EmbeddedPostgres(data_dir).is_running()
    assert not EmbeddedPostgres(data_dir).is_running()  # the command that started it stopped it


def _no_file_may_grow() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_a_first_admin_password_that_cannot_be_kept_creates_no_admin(
    fresh_db: DatabaseHandle,
) -> None:
    """A full disk when the generated password is written: no admin whose only password is
    lost (before, admin was created and the password shown nowhere)."""
    secret_file = get_settings().data_dir.resolve() / "admin-password"
    full = subprocess.run(
        [sys.executable, "-m", "portal.cli", "dev", "--no-serve"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        preexec_fn=_no_file_may_grow,
    )
    assert full.returncode == 1, full.stdout + full.stderr
    assert f"Error: Cannot write {secret_file}: File too large. The first admin was not" in (
        full.stderr
    )
    assert "Traceback" not in full.stderr
    assert user_admin_events(fresh_db) == []
    assert not secret_file.exists()
    assert list(secret_file.parent.iterdir()) == []  # no partial file either

    again = dev_here()
    assert again.exit_code == 0, again.output
    password = secret_file.read_text().strip()
    assert f"password {password}" in again.output
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert signin.authenticate("admin", password).username == "admin"
