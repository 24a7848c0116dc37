"""What the ``portal`` command does when it cannot do what it was asked: a non-zero exit status and
a message that says what is wrong and what to do, never a Python traceback, and nothing written."""

from __future__ import annotations

import json
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from click.testing import CliRunner, Result
from psycopg2 import sql

from portal import migrate
from portal.cli import main
from portal.db import reset_engine
from portal.embedded import ClusterInfo, EmbeddedPostgres
from tests.conftest import DatabaseHandle, _superuser_exec, create_database, drop_database
from tests.db.test_faults import login_refused
from tests.db.test_trail_views import event_rows

pytestmark = pytest.mark.db


def portal(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_refused(result: Result, message: str, *, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert message in result.stderr, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), repr(result.exception)


@pytest.mark.parametrize(
    "option", ["--expect-head", "--expect-event-head"], ids=["changesets", "events"]
)
@pytest.mark.parametrize(
    "kept",
    [
        "xyz",
        "",
        "ab" * 31,  # cut short when copied
        "g" * 64,
        "5 " + "ab" * 32,  # the whole line of `portal audit head`, seq and all
    ],
)
def test_a_malformed_head_hash_is_refused_not_taken_for_tampering(
    fresh_db: DatabaseHandle, option: str, kept: str
) -> None:
    result = portal("audit", "verify", option, kept)
    assert_refused(result, "is not a head hash", code=2)
    assert "64 hexadecimal digits" in result.stderr
    assert "broken" not in result.output
    assert "removed" not in result.output


def test_a_head_hash_may_differ_in_case_and_blanks(fresh_db: DatabaseHandle) -> None:
    head = portal("audit", "head")
    assert head.exit_code == 0, head.output
    changesets, events = (line.split()[-1] for line in head.output.splitlines())
    result = portal(
        "audit",
        "verify",
        "--expect-head",
        f" {changesets.upper()}\n",
        "--expect-event-head",
        events.upper(),
    )
    assert result.exit_code == 0, result.output


def test_an_export_to_a_missing_directory_is_refused(
    fresh_db: DatabaseHandle, tmp_path: Path
) -> None:
    out = tmp_path / "no such directory" / "trail.csv"
    result = portal("audit", "export", "-o", str(out))
    assert_refused(result, f"Cannot write {out}: No such file or directory")
    assert "no export was recorded" in result.stderr
    assert not out.parent.exists()
    assert event_rows(fresh_db, "export") == []


def _at_most_20_bytes_a_file() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20, 20))


def test_an_export_the_disk_refuses_leaves_no_file_and_no_export_event(
    fresh_db: DatabaseHandle, tmp_path: Path
) -> None:
    """A header alone, less than a buffer: its bytes reach the file only when it is flushed."""
    out = tmp_path / "trail.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "portal.cli", "audit", "export", "--what", "events", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_at_most_20_bytes_a_file,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"Error: Cannot write {out}: File too large." in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert event_rows(fresh_db, "export") == []


@pytest.fixture
def data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A development data directory, with no database URL: the embedded cluster's."""
    base = Path(tempfile.mkdtemp(prefix="portal-cli-", dir="/tmp"))
    base.chmod(0o755)  # the server account (tests run as root) must reach it
    monkeypatch.setenv("PORTAL_DATA_DIR", str(base))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "args", [("dev", "--no-serve"), ("migrate",), ("user", "list"), ("audit", "head")]
)
def test_a_damaged_embedded_cluster_is_explained_without_a_traceback(
    data_dir: Path, args: tuple[str, ...]
) -> None:
    (data_dir / "pg-credentials.json").write_text("{damaged")
    result = portal(*args)
    assert_refused(result, f"The credentials file {data_dir / 'pg-credentials.json'} is unreadable")
    assert "Restore it" in result.stderr


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_port_no_server_can_listen_on_is_refused_before_anything_starts(
    data_dir: Path, command: str, port: str
) -> None:
    """`portal dev --port 70000` started the database and migrated it, then Streamlit stopped
    with an OverflowError traceback and the portal said to choose another port "if port 70000
    is in use"; 0 served on a port of the system's choosing while saying 127.0.0.1:0."""
    result = portal(command, "--port", port)
    assert_refused(result, "Invalid value for '--port'", code=2)
    assert "is not in the range 1<=x<=65535" in result.stderr
    assert result.stdout == ""
    assert not (data_dir / "pg").exists()  # no database started


@pytest.mark.parametrize("delay", ["nan", "inf", "1e308", "31", "-1"])
def test_a_wait_no_clock_can_keep_is_refused(monkeypatch: pytest.MonkeyPatch, delay: str) -> None:
    """`portal serve --db-wait-delay nan` (or inf, 1e308) passed the option's check, then the
    first wait for a database not yet up stopped with a ValueError or OverflowError traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    down = f"postgresql+psycopg2://portal_app:pw@127.0.0.1:{port}/portal"
    monkeypatch.setenv("PORTAL_DATABASE_URL", down)
    result = portal("serve", "--db-wait-attempts", "2", "--db-wait-delay", delay)
    assert_refused(result, "Invalid value for '--db-wait-delay'", code=2)
    assert "database unavailable" not in result.stderr  # refused before any attempt


@pytest.mark.parametrize("key", ["changeme", "too short a key", "ab" * 24])
@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_cookie_key_no_page_would_take_is_refused_before_anything_starts(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, command: str, key: str
) -> None:
    """In development `make run` served with PORTAL_COOKIE_KEY=changeme, and every page then said
    the key could not be used."""
    monkeypatch.setenv("PORTAL_COOKIE_KEY", key)
    if command == "serve":  # it names a missing database first
        monkeypatch.setenv("PORTAL_DATABASE_URL", "postgresql+psycopg2://portal_app:pw@127.0.0.1/x")
    result = portal(command, "--port", "1")
    assert_refused(result, "Error: PORTAL_COOKIE_KEY ")
    assert "secrets.token_urlsafe(48)" in result.stderr
    assert not (data_dir / "pg").exists()  # no database started


@pytest.mark.parametrize("where", ["a file", "under a file"])
@pytest.mark.parametrize("args", [("dev", "--no-serve"), ("migrate",), ("user", "list")])
def test_a_data_directory_that_cannot_be_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], where: str
) -> None:
    """PORTAL_DATA_DIR naming a file stopped every command with a FileExistsError (or
    NotADirectoryError) traceback from creating it."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory\n")
    data_dir = a_file if where == "a file" else a_file / "data"
    monkeypatch.setenv("PORTAL_DATA_DIR", str(data_dir))
    result = portal(*args)
    assert_refused(result, f"PORTAL_DATA_DIR: {data_dir} cannot be the portal's data directory (")
    why = "(it is a file)" if where == "a file" else "(Not a directory)"
    assert why in result.stderr
    assert "Set PORTAL_DATA_DIR to a directory you may write to" in result.stderr
    assert a_file.read_text() == "not a directory\n"


@pytest.mark.parametrize("args", [("dev", "--no-serve"), ("user", "list")])
def test_a_start_that_fails_once_the_server_runs_leaves_no_server_running(
    data_dir: Path, args: tuple[str, ...]
) -> None:
    """The credentials file of another cluster (a restored copy, say): the server started, the
    login to set it up was refused, and the command ended with the server left running."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "portal.cli", *args],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    first = run("dev", "--no-serve")
    assert first.returncode == 0, first.stderr
    credentials = data_dir / "pg-credentials.json"
    stored = json.loads(credentials.read_text())
    credentials.write_text(json.dumps({**stored, "superuser_password": "another cluster's"}))
    try:
        result = run(*args)
        assert result.returncode == 1, result.stderr
        assert "Error: Could not log in as postgres to the embedded cluster" in result.stderr
        assert "Traceback" not in result.stderr
        assert not EmbeddedPostgres(data_dir).is_running()
    finally:
        EmbeddedPostgres(data_dir).stop()


def test_serve_with_a_data_directory_that_cannot_be_one_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In development `portal serve` keeps its generated cookie key in the data directory."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory\n")
    monkeypatch.setenv("PORTAL_DATA_DIR", str(a_file))
    monkeypatch.setenv("PORTAL_DATABASE_URL", "postgresql+psycopg2://portal_app:pw@127.0.0.1/x")
    result = portal("serve", "--db-wait-attempts", "1")
    assert_refused(result, f"PORTAL_DATA_DIR: {a_file} cannot be the portal's data directory")


@pytest.fixture
def unmigrated_db(pg_cluster: ClusterInfo, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database no migration has run on; the portal's URLs point at it."""
    name = f"t_{secrets.token_hex(6)}"
    create_database(pg_cluster, name)
    monkeypatch.setenv("PORTAL_DATABASE_URL", pg_cluster.url("app", name))
    monkeypatch.setenv("PORTAL_MIGRATION_DATABASE_URL", pg_cluster.url("owner", name))
    reset_engine()
    yield name
    reset_engine()
    drop_database(pg_cluster, name)


def test_migrate_to_an_unknown_revision_is_refused(unmigrated_db: str) -> None:
    result = portal("migrate", "--revision", "bogus")
    assert_refused(result, "Cannot migrate to revision 'bogus': Can't locate revision")


def test_migrate_as_a_role_that_may_not_change_the_schema_is_refused(
    pg_cluster: ClusterInfo, unmigrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_MIGRATION_DATABASE_URL", pg_cluster.url("app", unmigrated_db))
    result = portal("migrate")
    assert_refused(result, "The database role migrations connect as may not change the schema")
    assert "PORTAL_MIGRATION_DATABASE_URL" in result.stderr


@pytest.mark.parametrize("args", [("migrate",), ("dev", "--no-serve")])
def test_migrate_with_the_database_down_is_refused(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    down = f"postgresql+psycopg2://portal_owner:pw@127.0.0.1:{port}/portal"
    monkeypatch.setenv("PORTAL_DATABASE_URL", down)
    monkeypatch.setenv("PORTAL_MIGRATION_DATABASE_URL", down)
    assert_refused(portal(*args), "The database is unavailable right now")


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("127.0.0.1:99999", 'invalid port number: "99999"'),
        ("no-such-host.invalid:5432", 'could not translate host name "no-such-host.invalid"'),
        ("127.0.0.1:{port}", 'connection to server at "127.0.0.1", port {port} failed'),
    ],
    ids=["port", "host", "down"],
)
@pytest.mark.parametrize("args", [("migrate",), ("dev", "--no-serve"), ("user", "list")])
def test_a_database_out_of_reach_is_refused_with_the_connection_s_reason(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], where: str, said: str
) -> None:
    """It said only what a page says ("it may be restarting … tell an admin"), the same for a
    mistyped port or host as for a server that is down; whoever runs the command must fix it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql+psycopg2://portal_owner:s3cret@{where.format(port=port)}/portal"
    monkeypatch.setenv("PORTAL_DATABASE_URL", url)
    monkeypatch.setenv("PORTAL_MIGRATION_DATABASE_URL", url)
    result = portal(*args)
    assert_refused(result, "The database is unavailable right now")
    assert f"The connection said: {said.format(port=port)}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "s3cret" not in result.output


NOT_MIGRATED = [
    ("user", "list"),
    ("user", "add", "kim", "--password-stdin"),
    ("user", "role", "kim", "viewer"),
    ("audit", "head"),
    ("audit", "verify"),
    ("audit", "export"),
]


@pytest.mark.parametrize("args", NOT_MIGRATED, ids=" ".join)
def test_a_database_not_yet_migrated_is_named_as_such(
    unmigrated_db: str, args: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(main, list(args), input="kim password 1234\n")
    assert_refused(result, "The database has not been migrated")
    assert "Run `portal migrate` first" in result.stderr
    assert result.stdout == ""


def test_a_database_behind_this_code_is_named_as_such(
    pg_cluster: ClusterInfo, unmigrated_db: str
) -> None:
    migrate.upgrade(pg_cluster.url("owner", unmigrated_db), "0010")
    result = portal("audit", "verify")
    assert_refused(
        result, f"is at revision 0010, but this portal's code expects {migrate.head_revision()}"
    )
    assert portal("migrate").exit_code == 0
    assert portal("audit", "verify").exit_code == 0


@pytest.mark.parametrize(
    "args", [("user", "list"), ("audit", "verify"), ("audit", "head"), ("migrate",)], ids=" ".join
)
def test_a_refused_login_is_named_with_postgresql_s_reason(
    fresh_db: DatabaseHandle, args: tuple[str, ...]
) -> None:
    with login_refused(fresh_db, "wrong password") as says:
        _superuser_exec(
            fresh_db.info, "postgres", "ALTER ROLE portal_owner PASSWORD 'not the owner''s'"
        )
        try:
            result = portal(*args)
        finally:
            _superuser_exec(
                fresh_db.info,
                "postgres",
                sql.SQL("ALTER ROLE portal_owner PASSWORD {}").format(
                    sql.Literal(fresh_db.info.owner_password)
                ),
            )
    assert_refused(result, "cannot sign in to its database")
    assert "restarting" not in result.stderr
    assert says.replace("portal_app", "portal_owner" if args == ("migrate",) else "portal_app") in (
        result.stderr
    )
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fresh_db.info.app_password not in result.output
    assert fresh_db.info.owner_password not in result.output


def test_migrations_started_at_once_run_one_after_the_other(unmigrated_db: str) -> None:
    """Two `make run`s (or `portal migrate` beside one) on a new database: both created the
    schema, and the second stopped with a UniqueViolation traceback."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "portal.cli", "migrate"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=180)
        outcomes.append((run.returncode, stdout, stderr))
    for status, _, stderr in outcomes:
        assert status == 0, stderr
        assert "Traceback" not in stderr
    head = migrate.head_revision()
    assert sorted(stdout for _, stdout, _ in outcomes) == [
        f"database already at revision {head}; nothing to do\n",
        f"database migrated from revision none to {head}\n",
    ]


def test_migrate_says_the_revision_the_database_is_at(unmigrated_db: str) -> None:
    """`portal migrate --revision 0010` on a database at the newest said "database at revision
    0010" and left it at the newest: an upgrade never goes back."""
    head = migrate.head_revision()
    first = portal("migrate")
    assert first.exit_code == 0, first.output
    assert first.stdout == f"database migrated from revision none to {head}\n"
    again = portal("migrate")
    assert again.exit_code == 0, again.output
    assert again.stdout == f"database already at revision {head}; nothing to do\n"
    back = portal("migrate", "--revision", "0010")
    assert back.exit_code == 0, back.output
    assert back.stdout == (
        f"database already at revision {head}, past 0010; nothing was changed "
        "(`portal migrate` only upgrades)\n"
    )
    assert portal("user", "list").exit_code == 0  # still at the newest


@pytest.mark.parametrize(
    "args", [("migrate",), ("dev", "--no-serve"), ("user", "list"), ("audit", "verify")]
)
def test_a_database_a_newer_portal_migrated_is_named_as_such(
    pg_cluster: ClusterInfo, unmigrated_db: str, args: tuple[str, ...]
) -> None:
    """As after `make run` on a newer checkout, then on an older one: `portal dev` stopped with
    alembic's CommandError traceback, `portal migrate` blamed the revision 'head' it was asked
    for, and the other commands said to run `portal migrate`, which could never work."""
    migrate.upgrade(pg_cluster.url("owner", unmigrated_db))
    _superuser_exec(
        pg_cluster, unmigrated_db, "UPDATE alembic_version SET version_num = '0099_newer'"
    )
    result = portal(*args)
    assert_refused(
        result,
        "The database's schema is at revision 0099_newer, which this portal's code does not "
        f"know (its newest is {migrate.head_revision()}): a newer version of the portal "
        "migrated it.",
    )
    assert "`portal migrate`" not in result.stderr
    assert "head" not in result.stderr.replace("its newest", "")
    conn = psycopg2.connect(**pg_cluster.connect_kwargs("superuser", unmigrated_db))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            assert cur.fetchall() == [("0099_newer",)]
            cur.execute("SELECT count(*) FROM portal.users")
            assert cur.fetchone() == (0,)  # `portal dev` created no first admin
    finally:
        conn.close()
