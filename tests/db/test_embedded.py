"""portal.embedded against real PostgreSQL server processes (no mocks).

Every test gets its own cluster in a fresh ``/tmp`` directory (mode 0755, so the ``postgres`` OS
user can reach it when the suite runs as root) and always stops it again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg2  # type: ignore[import-untyped,unused-ignore]
import pytest
from psycopg2 import errors  # type: ignore[import-untyped,unused-ignore]

from portal.embedded import (
    APP_ROLE,
    CREDENTIALS_FILE,
    OWNER_ROLE,
    STATE_FILE,
    ClusterInfo,
    EmbeddedPostgres,
    EmbeddedPostgresError,
    Role,
    find_pg_bindir,
)

pytestmark = pytest.mark.db

IS_ROOT = os.geteuid() == 0


# --------------------------------------------------------------------------- helpers


def _make_base(mode: int = 0o755) -> Path:
    base = Path(tempfile.mkdtemp(prefix="portal-embedded-", dir="/tmp"))
    base.chmod(mode)
    return base


def _cleanup(*bases: Path, fallback_root: Path | None = None) -> None:
    for base in bases:
        kwargs: dict[str, Any] = {} if fallback_root is None else {"fallback_root": fallback_root}
        try:
            EmbeddedPostgres(base, **kwargs).stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
    if fallback_root is not None:
        shutil.rmtree(fallback_root, ignore_errors=True)


@pytest.fixture
def base_dir() -> Iterator[Path]:
    base = _make_base()
    try:
        yield base
    finally:
        _cleanup(base)


def _connect(info: ClusterInfo, role: Role, database: str | None = None) -> Any:
    conn = psycopg2.connect(**info.connect_kwargs(role, database))
    conn.autocommit = True
    return conn


def _query(info: ClusterInfo, role: Role, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    conn = _connect(info, role)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def _pid_file(info: ClusterInfo) -> Path:
    return info.data_dir / "postmaster.pid"


def _cluster_pids(data_dir: Path) -> list[int]:
    """Processes running in ``data_dir`` (the postmaster and all its children chdir there)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(data_dir):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _gone(pid: int) -> bool:
    """Exited (a zombie counts: nobody may reap it in a container)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True
    return fields[0] in ("Z", "X")


def _wait_gone(pids: Iterable[int], timeout: float = 15.0) -> None:
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if not _gone(pid)}
        time.sleep(0.05)
    assert not pending, f"processes still alive: {sorted(pending)}"


def _dead_pid() -> int:
    """The pid of a child process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert _gone(child.pid)
    return child.pid


def _write_pid_file(info: ClusterInfo, pid: int) -> None:
    """A realistic postmaster.pid (PostgreSQL 10+ layout), owned like the cluster."""
    path = _pid_file(info)
    path.write_text(
        f"{pid}\n{info.data_dir}\n{int(time.time())}\n{info.port}\n\n{info.host}\n"
        "  1234567    32768\nready   \n"
    )
    owner = info.data_dir.stat()
    os.chown(path, owner.st_uid, owner.st_gid)


def _exercise(info: ClusterInfo) -> None:
    """The database answers the app role."""
    assert _query(info, "app", "SELECT current_user, current_database()") == [
        (APP_ROLE, info.database)
    ]


# --------------------------------------------------------------------------- tests


def test_start_creates_cluster_roles_and_database(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    assert not pg.is_running()
    with pytest.raises(EmbeddedPostgresError, match="start"):
        pg.info()

    info = pg.start()

    assert info.data_dir == base_dir / "pg"
    assert (info.data_dir / "PG_VERSION").is_file()
    assert (info.host, info.database, info.superuser) == ("127.0.0.1", "portal", "postgres")
    assert pg.is_running()
    assert pg.info() == info
    assert info.url("owner") == (
        f"postgresql+psycopg2://{OWNER_ROLE}:{info.owner_password}@127.0.0.1:{info.port}/portal"
    )
    assert info.url("app", "other").endswith(f"@127.0.0.1:{info.port}/other")
    assert info.app_password not in repr(info)

    credentials = base_dir / CREDENTIALS_FILE
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    stored = json.loads(credentials.read_text())
    assert stored["superuser_password"] == info.superuser_password
    assert stored["owner_password"] == info.owner_password
    assert stored["app_password"] == info.app_password
    assert len({info.superuser_password, info.owner_password, info.app_password}) == 3

    # The app role connects, but may not create anything in schema public.
    _exercise(info)
    conn = _connect(info, "app")
    try:
        with conn.cursor() as cur, pytest.raises(errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE public.intruder (id int)")
    finally:
        conn.close()

    # Passwords are checked (scram-sha-256 over TCP).
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(**{**info.connect_kwargs("app"), "password": "wrong"})

    # Ownership, privileges and role attributes, seen by the superuser.
    assert _query(
        info,
        "superuser",
        "SELECT pg_get_userbyid(datdba), has_database_privilege(%s, datname, 'CONNECT'), "
        "has_database_privilege(%s, datname, 'CREATE'), "
        "has_database_privilege(%s, datname, 'TEMP') "
        "FROM pg_database WHERE datname = %s",
        (APP_ROLE, APP_ROLE, APP_ROLE, info.database),
    ) == [(OWNER_ROLE, True, False, False)]
    assert _query(
        info,
        "superuser",
        "SELECT count(*) FROM pg_database d, aclexplode(d.datacl) a "
        "WHERE d.datname = %s AND a.grantee = 0",
        (info.database,),
    ) == [(0,)], "PUBLIC must have no privileges on the database"
    assert _query(
        info,
        "superuser",
        "SELECT rolname, rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
        "rolbypassrls FROM pg_roles WHERE rolname IN (%s, %s) ORDER BY rolname",
        (APP_ROLE, OWNER_ROLE),
    ) == [
        (APP_ROLE, True, False, False, False, False, False),
        (OWNER_ROLE, True, False, False, False, False, False),
    ]
    # The one membership: the owner (who runs migrations) in the app role, so a migration can
    # alter the dataset tables the app creates (0003 re-attaches their capture). The app role
    # is a member of nothing: it gains no privilege from any other role.
    assert _query(
        info,
        "superuser",
        "SELECT r.rolname, g.rolname FROM pg_auth_members m"
        " JOIN pg_roles r ON r.oid = m.member JOIN pg_roles g ON g.oid = m.roleid"
        " WHERE r.rolname IN (%s, %s)",
        (APP_ROLE, OWNER_ROLE),
    ) == [(OWNER_ROLE, APP_ROLE)], "only the owner may be a member, of the app role only"
    assert _query(
        info,
        "superuser",
        "SELECT current_setting('listen_addresses'), current_setting('unix_socket_directories')",
    ) == [("127.0.0.1", "")]


def test_start_is_idempotent_and_data_survives_restart(base_dir: Path) -> None:
    first = EmbeddedPostgres(base_dir).start()
    conn = _connect(first, "owner")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE survivor (id int PRIMARY KEY)")
            cur.execute("INSERT INTO survivor VALUES (42)")
    finally:
        conn.close()

    # A new object while the server runs: same server, same credentials.
    assert EmbeddedPostgres(base_dir).start() == first
    postmaster = int(_pid_file(first).read_text().split()[0])
    assert EmbeddedPostgres(base_dir).start() == first
    assert int(_pid_file(first).read_text().split()[0]) == postmaster, "must not restart"

    pg = EmbeddedPostgres(base_dir)
    pg.stop()
    assert not pg.is_running()
    assert not _pid_file(first).exists()
    pg.stop()  # no-op when not running

    restarted = pg.start()
    assert restarted == first  # same port (still free), same passwords, same cluster
    assert _query(restarted, "owner", "SELECT id FROM survivor") == [(42,)]
    assert _query(
        restarted, "owner", "SELECT tableowner FROM pg_tables WHERE tablename = %s", ("survivor",)
    ) == [(OWNER_ROLE,)]

    # The remembered port is taken by somebody else: another one is picked and remembered.
    pg.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        moved = pg.start()
    assert moved.port != first.port
    assert moved.owner_password == first.owner_password
    assert json.loads((base_dir / STATE_FILE).read_text())["port"] == moved.port
    assert _query(moved, "owner", "SELECT id FROM survivor") == [(42,)]


def test_recovers_from_killed_postmaster_and_stale_pid_file(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    info = pg.start()
    _exercise(info)

    # SIGKILLed postmaster: its postmaster.pid stays behind.
    pid = int(_pid_file(info).read_text().split()[0])
    processes = _cluster_pids(info.data_dir)
    assert pid in processes
    os.kill(pid, signal.SIGKILL)
    _wait_gone(processes)
    assert _pid_file(info).exists()
    assert not pg.is_running()

    again = EmbeddedPostgres(base_dir).start()
    assert again == info
    _exercise(again)

    # Stale pid file naming a pid that does not exist.
    pg.stop()
    _write_pid_file(info, _dead_pid())
    assert not pg.is_running()
    assert pg.start() == info
    _exercise(info)

    # Stale pid file naming a live process that is not this cluster's postmaster.
    pg.stop()
    _write_pid_file(info, os.getpid())
    assert not pg.is_running()
    assert pg.start() == info
    _exercise(info)


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another OS user")
def test_root_relocates_cluster_when_base_dir_is_unreachable() -> None:
    hidden = _make_base(0o700)  # like pytest's tmp dirs or a checkout under /root
    fallback_root = _make_base(0o755)
    try:
        info = EmbeddedPostgres(hidden, fallback_root=fallback_root).start()
        assert info.data_dir.parent.parent == fallback_root
        assert info.data_dir.parent.name.startswith("portal-pg-")
        assert json.loads((hidden / STATE_FILE).read_text())["data_dir"] == str(info.data_dir)
        assert (hidden / CREDENTIALS_FILE).is_file()
        assert not (hidden / "pg").exists()
        _exercise(info)
        again = EmbeddedPostgres(hidden, fallback_root=fallback_root)
        assert again.is_running()
        assert again.start() == info
    finally:
        _cleanup(hidden, fallback_root=fallback_root)


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another OS user")
def test_root_explains_unreachable_existing_cluster(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir)
    pg.start()
    pg.stop()
    base_dir.chmod(0o700)
    try:
        with pytest.raises(EmbeddedPostgresError, match=r"not reachable by OS user.*chmod o\+x"):
            pg.start()
    finally:
        base_dir.chmod(0o755)


def _fake_bindir(path: Path) -> Path:
    path.mkdir(parents=True)
    for name in ("initdb", "pg_ctl", "postgres"):
        (path / name).write_text("#!/bin/sh\nexit 0\n")
        (path / name).chmod(0o755)
    return path


def _fake_pg_config(path: Path, bindir: Path) -> Path:
    path.write_text(f"#!/bin/sh\necho '{bindir}'\n")
    path.chmod(0o755)
    return path


def test_find_pg_bindir_explains_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedPostgresError) as excinfo:
        find_pg_bindir(
            pg_config=str(tmp_path / "no-such-pg_config"), roots=(tmp_path / "no-postgresql",)
        )
    message = str(excinfo.value)
    assert "initdb" in message
    assert "apt-get install postgresql" in message
    assert "no-such-pg_config" in message

    # pg_config from libpq-dev alone: it prints a bindir without the server programs.
    client_only = tmp_path / "client-only"
    client_only.mkdir()
    pg_config = _fake_pg_config(tmp_path / "pg_config", client_only)
    with pytest.raises(EmbeddedPostgresError, match="apt-get install postgresql"):
        find_pg_bindir(pg_config=str(pg_config), roots=())


def test_find_pg_bindir_prefers_pg_config_then_newest_version(tmp_path: Path) -> None:
    root = tmp_path / "postgresql"
    for version in ("9.6", "15", "10"):
        _fake_bindir(root / version / "bin")
    (root / "16" / "bin").mkdir(parents=True)  # client-only install: ignored
    missing = str(tmp_path / "no-such-pg_config")
    assert find_pg_bindir(pg_config=missing, roots=(root,)) == root / "15" / "bin"

    preferred = _fake_bindir(tmp_path / "custom" / "bin")
    pg_config = _fake_pg_config(tmp_path / "pg_config", preferred)
    assert find_pg_bindir(pg_config=str(pg_config), roots=(root,)) == preferred

    assert (find_pg_bindir() / "initdb").is_file()  # the real installation


def test_an_existing_cluster_gets_the_server_of_its_own_version(tmp_path: Path) -> None:
    """A newer PostgreSQL installed beside the one that made the cluster (apt upgrade adds
    postgresql-16 next to 15) was chosen, and cannot run it."""
    root = tmp_path / "postgresql"
    for version in ("15", "16"):
        _fake_bindir(root / version / "bin")
    newest = _fake_pg_config(tmp_path / "pg_config", root / "16" / "bin")
    assert find_pg_bindir(pg_config=str(newest), roots=(root,)) == root / "16" / "bin"
    assert find_pg_bindir(pg_config=str(newest), roots=(root,), version="15") == root / "15" / "bin"
    # A version none is installed for: as before (the start then says what is wrong).
    assert find_pg_bindir(pg_config=str(newest), roots=(root,), version="14") == root / "16" / "bin"
