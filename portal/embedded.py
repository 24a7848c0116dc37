"""Embedded PostgreSQL cluster for development (``portal dev``) and the test-suite.

An :class:`EmbeddedPostgres` owns everything below its ``base_dir``:

``base_dir/pg/``
    The cluster (``initdb`` data directory).  It may live elsewhere when running as root and the
    server account cannot reach ``base_dir`` -- see "Running as root" below.  Inside it, besides
    PostgreSQL's own files, this module owns ``portal.conf`` (rewritten on every start: listen on
    127.0.0.1 only, the chosen port, no unix sockets; included from ``postgresql.conf``) and
    ``postgres.log`` (the server log; its tail is quoted when a start fails).
``base_dir/pg-credentials.json`` (mode 0600)
    Generated passwords of the superuser ``postgres`` and the roles ``portal_owner`` (owns the
    database and everything in it) and ``portal_app`` (may only CONNECT; table privileges are
    granted by migrations).  Created once and reused on every later start.
``base_dir/pg-state.json``
    The last port used (reused when still free) and where the cluster lives.
``base_dir/pg.lock``
    ``flock`` lock serialising start/stop between processes.
``base_dir/pg-users.lock``
    Not this module's: each ``portal`` command using the cluster holds a shared ``flock`` on it,
    so that only the last one to end stops the server (``portal.cli``).

The server listens on 127.0.0.1 only, with ``scram-sha-256`` password authentication for every
connection.  ``start()`` is idempotent: it reuses an existing cluster, its credentials and, when
the server is already running (started by another process), that server.  A ``postmaster.pid``
left behind by a crashed or SIGKILLed server is detected (its pid is dead, a zombie, or not a
postgres process of this cluster) and removed before starting.

Running as root
    PostgreSQL refuses to run as root.  When the current process is root, ``initdb``, ``pg_ctl``
    and ``postgres`` are run as the OS user ``postgres`` (else ``nobody``) with that user's own
    groups, and the cluster directory is owned by it.  That user needs search (x) permission on
    every parent directory.  If it lacks it for ``base_dir`` (e.g. a checkout under ``/root`` or
    a pytest 0700 tmp dir), a fresh cluster is transparently placed in
    ``/var/tmp/portal-pg-<hash of base_dir>/pg`` instead; that location is recorded in
    ``base_dir/pg-state.json`` (credentials stay in ``base_dir``) and ``ClusterInfo.data_dir``
    reports it.  An existing cluster is never moved: if it is unreachable an
    :class:`EmbeddedPostgresError` says which permission to fix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import psycopg2  # type: ignore[import-untyped,unused-ignore]
from psycopg2 import sql  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "APP_ROLE",
    "HOST",
    "OWNER_ROLE",
    "SUPERUSER",
    "ClusterInfo",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "Role",
    "find_pg_bindir",
]

Role = Literal["owner", "app", "superuser"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"
OWNER_ROLE = "portal_owner"
APP_ROLE = "portal_app"

CLUSTER_DIRNAME = "pg"
CREDENTIALS_FILE = "pg-credentials.json"
STATE_FILE = "pg-state.json"
LOCK_FILE = "pg.lock"
LOG_FILE = "postgres.log"
CONF_FILE = "portal.conf"
DEFAULT_PG_ROOTS: tuple[Path, ...] = (Path("/usr/lib/postgresql"),)
DEFAULT_FALLBACK_ROOT = Path("/var/tmp")  # noqa: S108 - survives reboots; see _make_fallback_parent

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_SERVER_ACCOUNTS = ("postgres", "nobody")
_INCLUDE_LINE = f"include_if_exists = '{CONF_FILE}'  # added by portal.embedded"
_PG_CTL_TIMEOUT_S = 60
_ORPHAN_WAIT_S = 10.0
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40
_INSTALL_HINT = (
    "Install the PostgreSQL server: on Debian/Ubuntu `sudo apt-get install postgresql` "
    "(libpq-dev or postgresql-client alone are not enough); on macOS "
    "`brew install postgresql@15` and put its bin directory on PATH."
)


class EmbeddedPostgresError(Exception):
    """The embedded PostgreSQL cluster could not be found, created, started or stopped.

    The message says what went wrong and what to do about it.
    """


# --------------------------------------------------------------------------- binaries


def _has_server_binaries(bindir: Path) -> bool:
    return all(
        (bindir / name).is_file() and os.access(bindir / name, os.X_OK)
        for name in _REQUIRED_BINARIES
    )


def _cluster_version(data_dir: Path) -> str | None:
    """The major version of PostgreSQL that made the cluster in ``data_dir`` (``PG_VERSION``),
    or None before there is one."""
    try:
        return (data_dir / "PG_VERSION").read_text().strip() or None
    except OSError:
        return None


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``<root>/<version>/bin``: ``9.6`` < ``10`` < ``15``."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_pg_bindir(
    pg_config: str = "pg_config",
    roots: Sequence[Path] = DEFAULT_PG_ROOTS,
    version: str | None = None,
) -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    ``<root>/<version>/bin`` first when ``version`` is given (an existing cluster's
    ``PG_VERSION``: a server of another major version cannot run it, and a newer PostgreSQL
    installed beside the first would otherwise be chosen); then ``pg_config --bindir`` if that
    directory has all three; otherwise the newest ``<root>/<version>/bin`` under ``roots``
    (Debian layout: ``/usr/lib/postgresql/15/bin``). ``pg_config`` may be a command name
    (looked up on PATH) or a path.

    Raises EmbeddedPostgresError naming what to install when nothing is found.
    """
    if version is not None:
        for root in roots:
            if _has_server_binaries(root / version / "bin"):
                return root / version / "bin"
    looked_at: list[str] = []
    exe = shutil.which(pg_config)
    if exe is None:
        looked_at.append(f"`{pg_config} --bindir`: {pg_config} is not on PATH")
    else:
        try:
            proc = subprocess.run(
                [exe, "--bindir"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            looked_at.append(f"`{exe} --bindir` failed: {exc}")
        else:
            out = proc.stdout.strip()
            if proc.returncode == 0 and out and _has_server_binaries(Path(out)):
                return Path(out)
            if proc.returncode != 0:
                looked_at.append(f"`{exe} --bindir` exited with status {proc.returncode}")
            else:
                looked_at.append(f"`{exe} --bindir` printed {out!r}, which lacks them")

    candidates: list[Path] = []
    for root in roots:
        found = [p for p in root.glob("*/bin") if _has_server_binaries(p)] if root.is_dir() else []
        if not found:
            looked_at.append(f"{root}/<version>/bin: none found")
        candidates.extend(found)
    if candidates:
        return max(candidates, key=_version_key)

    details = "\n".join(f"  - {item}" for item in looked_at)
    raise EmbeddedPostgresError(
        "PostgreSQL server programs (initdb, pg_ctl, postgres) were not found; the embedded "
        f"development/test database needs them.\nLooked at:\n{details}\n{_INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- public data


@dataclass(frozen=True)
class ClusterInfo:
    """How to reach a running embedded cluster.  Passwords are left out of ``repr()``."""

    data_dir: Path
    host: str
    port: int
    database: str
    superuser: str
    superuser_password: str = field(repr=False)
    owner_password: str = field(repr=False)
    app_password: str = field(repr=False)

    def credentials(self, role: Role) -> tuple[str, str]:
        """``(user name, password)`` of ``role``."""
        if role == "owner":
            return OWNER_ROLE, self.owner_password
        if role == "app":
            return APP_ROLE, self.app_password
        if role == "superuser":
            return self.superuser, self.superuser_password
        raise ValueError(f"unknown role {role!r}; expected 'owner', 'app' or 'superuser'")

    def url(self, role: Role, database: str | None = None) -> str:
        """SQLAlchemy URL, e.g. ``postgresql+psycopg2://portal_owner:<pw>@127.0.0.1:5432/portal``."""
        user, password = self.credentials(role)
        dbname = self.database if database is None else database
        return (
            f"postgresql+psycopg2://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    def connect_kwargs(self, role: Role, database: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``."""
        user, password = self.credentials(role)
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database if database is None else database,
            "user": user,
            "password": password,
            "connect_timeout": 10,
        }


# --------------------------------------------------------------------------- OS helpers


@dataclass(frozen=True)
class _ServerAccount:
    """The unprivileged OS account the server runs as when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _server_account() -> _ServerAccount | None:
    """None when not root (everything runs as the current user)."""
    if os.geteuid() != 0:
        return None
    for name in _SERVER_ACCOUNTS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            continue
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return _ServerAccount(name, entry.pw_uid, entry.pw_gid, groups)
    raise EmbeddedPostgresError(
        "Running as root, but PostgreSQL refuses to run as root and neither OS user "
        f"{' nor '.join(repr(n) for n in _SERVER_ACCOUNTS)} exists to run it as. Create one "
        "(`apt-get install postgresql` creates 'postgres') or run as a normal user."
    )


def _server_env() -> dict[str, str]:
    """Our environment minus PG* variables (PGPORT, PGDATA, ... would override our settings)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(
    argv: Sequence[str | Path], account: _ServerAccount | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as ``account`` when given."""
    try:
        return subprocess.run(
            [str(a) for a in argv],
            capture_output=True,
            text=True,
            errors="replace",  # a path of another encoding, quoted back in a message
            env=_server_env(),
            cwd="/",
            timeout=timeout,
            check=False,
            user=None if account is None else account.uid,
            group=None if account is None else account.gid,
            extra_groups=None if account is None else list(account.groups),
        )
    except subprocess.TimeoutExpired as exc:
        raise EmbeddedPostgresError(
            f"`{' '.join(str(a) for a in argv)}` did not finish within {timeout:.0f}s."
        ) from exc
    except OSError as exc:
        raise EmbeddedPostgresError(f"could not run {argv[0]}: {exc}") from exc


def _can_traverse(account: _ServerAccount, directory: Path) -> bool:
    """Whether ``account`` can search ``directory`` (needs x on it and on all its parents)."""
    proc = _run(["test", "-x", directory], account, timeout=30)
    return proc.returncode == 0


def _chown_tree(path: Path, account: _ServerAccount) -> None:
    os.lchown(path, account.uid, account.gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), account.uid, account.gid)


def _write_file(path: Path, text: str, mode: int, account: _ServerAccount | None = None) -> None:
    """Atomically replace ``path`` with ``text`` (``mode`` applied before any byte is written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        if account is not None:
            os.fchown(fd, account.uid, account.gid)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            fd = -1
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:``port`` can be bound the way postgres binds it (SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _proc_available() -> bool:
    return Path("/proc/self/cmdline").exists()


def _is_cluster_postmaster(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live (non-zombie) postgres process serving ``data_dir``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    if not _proc_available():
        return True  # cannot look closer; trust the pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # exited meanwhile
    program = os.path.basename(cmdline.split(b"\0", 1)[0])
    if not (program.startswith(b"postgres") or program.startswith(b"postmaster")):
        return False  # zombie (empty cmdline) or a recycled pid
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")  # the postmaster chdirs into its data directory
    except PermissionError:
        return True  # another user's postgres we cannot inspect: assume it is this cluster's
    except OSError:
        return False
    return cwd == os.path.realpath(data_dir)


def _cluster_processes(data_dir: Path) -> list[int]:
    """Live processes whose working directory is ``data_dir`` (postgres children do chdir)."""
    if not _proc_available():
        return []
    target = os.path.realpath(data_dir)
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "cwd") == target:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _log_tail(log: Path, offset: int) -> str:
    """The last lines written to ``log`` since ``offset``."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError as exc:
        return f"(could not read {log}: {exc})"
    lines = data.decode("utf-8", "replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(lines) if lines else "(nothing was logged)"


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class _Credentials:
    superuser_password: str
    owner_password: str
    app_password: str


class EmbeddedPostgres:
    """A PostgreSQL cluster under ``base_dir`` (see the module docstring for the layout).

    ``with EmbeddedPostgres(path) as pg:`` starts it (``pg.info()`` then describes it) and stops
    it on exit.  Creating the object does nothing; ``start()`` does the work.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        database: str = "portal",
        fallback_root: Path = DEFAULT_FALLBACK_ROOT,
    ) -> None:
        if not database or len(database.encode()) > 63 or "\0" in database:
            raise ValueError(f"invalid database name {database!r}")
        self.base_dir = Path(base_dir).absolute()
        self.database = database
        self.fallback_root = Path(fallback_root)
        self._info: ClusterInfo | None = None

    # ------------------------------------------------------------------ public API

    def start(self) -> ClusterInfo:
        """Create (first time) and start the cluster, then ensure roles and database exist.

        Idempotent: reuses an existing cluster, its credentials and an already running server.
        """
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            account = _server_account()
            data_dir = self._prepare_data_dir(account)
            bindir = find_pg_bindir(version=_cluster_version(data_dir))
            creds = self._load_or_create_credentials(data_dir)
            if not (data_dir / "PG_VERSION").is_file():
                self._initdb(bindir, data_dir, account, creds)
            port = self._wait_until_ready(data_dir)
            if port is None:
                port = self._start_server(bindir, data_dir, account)
            info = ClusterInfo(
                data_dir=data_dir,
                host=HOST,
                port=port,
                database=self.database,
                superuser=SUPERUSER,
                superuser_password=creds.superuser_password,
                owner_password=creds.owner_password,
                app_password=creds.app_password,
            )
            self._bootstrap(info)
            self._info = info
            return info

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """``pg_ctl stop -m fast`` (or ``immediate``: every backend quits at once, as in a
        crash, and the next start recovers); does nothing when the server is not running."""
        if not self.base_dir.is_dir():
            return
        with self._locked():
            self._info = None
            data_dir = self._data_dir()
            if self._postmaster_pid(data_dir) is None:
                return
            account = _server_account()
            pg_ctl = find_pg_bindir(version=_cluster_version(data_dir)) / "pg_ctl"
            argv: list[str | Path] = [
                pg_ctl,
                "stop",
                f"--mode={mode}",
                "--wait",
                "--silent",
                f"--timeout={_PG_CTL_TIMEOUT_S}",
                f"--pgdata={data_dir}",
            ]
            proc = _run(argv, account, timeout=_PG_CTL_TIMEOUT_S + 30)
            if proc.returncode != 0 and self._postmaster_pid(data_dir) is not None:
                raise EmbeddedPostgresError(
                    f"Could not stop the embedded PostgreSQL server of {data_dir}.\n"
                    f"pg_ctl said: {(proc.stderr or proc.stdout).strip()}\n"
                    f"Log tail:\n{_log_tail(data_dir / LOG_FILE, 0)}\n"
                    "Stop it as the user that started it, or kill its postmaster process."
                )

    def is_running(self) -> bool:
        """Whether a postmaster of this cluster is alive."""
        return self._postmaster_pid(self._data_dir()) is not None

    def info(self) -> ClusterInfo:
        """Connection details; only after ``start()``."""
        if self._info is None:
            raise EmbeddedPostgresError(
                "The embedded PostgreSQL cluster is not started by this object; call start() first."
            )
        return self._info

    @property
    def data_dir(self) -> Path:
        """Where the cluster lives (or will live)."""
        return self._data_dir()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ files in base_dir

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.base_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.base_dir / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self, **changes: Any) -> None:
        state = self._read_state()
        state.update(changes)
        _write_file(self.base_dir / STATE_FILE, json.dumps(state, indent=2) + "\n", 0o644)

    def _load_or_create_credentials(self, data_dir: Path) -> _Credentials:
        path = self.base_dir / CREDENTIALS_FILE
        if not path.exists():
            if (data_dir / "PG_VERSION").is_file():
                raise EmbeddedPostgresError(
                    f"The embedded cluster {data_dir} exists but its credentials file {path} is "
                    "missing, so nobody can log in. Restore the file, or delete the cluster "
                    f"directory {data_dir} (this deletes its data) to create a fresh one."
                )
            creds = _Credentials(*(secrets.token_urlsafe(24) for _ in range(3)))
            payload = {"superuser": SUPERUSER, **dataclasses.asdict(creds)}
            _write_file(path, json.dumps(payload, indent=2) + "\n", 0o600)
            return creds
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            creds = _Credentials(
                superuser_password=data["superuser_password"],
                owner_password=data["owner_password"],
                app_password=data["app_password"],
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddedPostgresError(
                f"The credentials file {path} is unreadable or damaged ({exc}). Restore it, or "
                f"delete it together with the cluster {data_dir} (this deletes its data)."
            ) from exc
        if not all(isinstance(v, str) and v for v in dataclasses.asdict(creds).values()):
            raise EmbeddedPostgresError(f"The credentials file {path} has empty passwords.")
        return creds

    # ------------------------------------------------------------------ data directory

    def _data_dir(self) -> Path:
        default = self.base_dir / CLUSTER_DIRNAME
        if (default / "PG_VERSION").is_file():
            return default
        recorded = self._read_state().get("data_dir")
        if isinstance(recorded, str) and recorded:
            return Path(recorded)
        return default

    def _fallback_data_dir(self) -> Path:
        """``<fallback_root>/portal-pg-<hash of base_dir>/pg`` (only computed, not created)."""
        digest = hashlib.sha256(str(self.base_dir.resolve()).encode()).hexdigest()[:16]
        return self.fallback_root / f"portal-pg-{digest}" / CLUSTER_DIRNAME

    def _make_fallback_parent(self, data_dir: Path) -> None:
        """Create the root-owned 0755 parent of a fallback cluster dir, refusing impostors."""
        parent = data_dir.parent
        with contextlib.suppress(FileExistsError):
            os.mkdir(parent, 0o755)
        info = os.lstat(parent)
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or stat.S_IMODE(info.st_mode) & 0o022
        ):
            raise EmbeddedPostgresError(
                f"{parent} exists but is not a directory owned by uid {os.geteuid()} and "
                "writable only by it; refusing to put the database there. Remove it and retry."
            )
        os.chmod(parent, 0o755)  # noqa: S103 - the server account must traverse it

    def _prepare_data_dir(self, account: _ServerAccount | None) -> Path:
        """Pick the cluster directory and make sure the server account can use it."""
        default = self.base_dir / CLUSTER_DIRNAME
        data_dir = self._data_dir()
        if account is None:
            return data_dir
        if data_dir != default and data_dir == self._fallback_data_dir():
            self._make_fallback_parent(data_dir)  # it may have been cleaned out of /var/tmp
        exists = (data_dir / "PG_VERSION").is_file()
        if not _can_traverse(account, data_dir.parent):
            if exists or data_dir != default:
                raise EmbeddedPostgresError(
                    f"The embedded cluster {data_dir} is not reachable by OS user "
                    f"{account.name!r}, which runs PostgreSQL because we are root: "
                    f"{data_dir.parent} or one of its parents lacks search (x) permission for "
                    "it. Run `chmod o+x` on those directories, or run as the non-root user "
                    "owning the cluster."
                )
            data_dir = self._fallback_data_dir()
            self._make_fallback_parent(data_dir)
            if not _can_traverse(account, data_dir.parent):
                raise EmbeddedPostgresError(
                    f"Neither {self.base_dir} nor {data_dir.parent} is reachable by OS user "
                    f"{account.name!r}, which runs PostgreSQL because we are root. Use a data "
                    "directory whose parents are all world-searchable (chmod o+x), e.g. set "
                    "PORTAL_DATA_DIR=/var/tmp/portal, or run as a normal user."
                )
            exists = (data_dir / "PG_VERSION").is_file()
            self._write_state(data_dir=str(data_dir))
        if (
            exists
            and self._postmaster_pid(data_dir) is None
            and data_dir.stat().st_uid != account.uid
        ):
            _chown_tree(data_dir, account)
        return data_dir

    def _initdb(
        self,
        bindir: Path,
        data_dir: Path,
        account: _ServerAccount | None,
        creds: _Credentials,
    ) -> None:
        data_dir.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            os.chown(data_dir, account.uid, account.gid)
        os.chmod(data_dir, 0o700)
        pwfile = data_dir.parent / f".pg-pwfile-{secrets.token_hex(8)}"
        _write_file(pwfile, creds.superuser_password + "\n", 0o600, account)
        locale = "C.UTF-8" if sys.platform.startswith("linux") else "C"
        try:
            proc = _run(
                [
                    bindir / "initdb",
                    f"--pgdata={data_dir}",
                    f"--username={SUPERUSER}",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    f"--locale={locale}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                ],
                account,
                timeout=300,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed to create the embedded cluster in {data_dir} "
                f"(exit status {proc.returncode}):\n{(proc.stderr + proc.stdout).strip()}\n"
                "If the directory holds leftovers of an earlier failed attempt, delete it."
            )

    # ------------------------------------------------------------------ server process

    def _postmaster_pid(self, data_dir: Path) -> int | None:
        """Pid of this cluster's live postmaster, per ``postmaster.pid``."""
        lines = self._pid_file_lines(data_dir)
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        return pid if _is_cluster_postmaster(pid, data_dir) else None

    @staticmethod
    def _pid_file_lines(data_dir: Path) -> list[str]:
        try:
            return (data_dir / "postmaster.pid").read_text(errors="replace").splitlines()
        except OSError:
            return []

    def _wait_until_ready(self, data_dir: Path) -> int | None:
        """Port of an already running server once it accepts connections; None if none runs.

        Removes a stale ``postmaster.pid`` and waits for orphaned children of a killed
        postmaster to exit (they would keep its shared memory in use).
        """
        deadline = time.monotonic() + _PG_CTL_TIMEOUT_S
        while True:
            lines = self._pid_file_lines(data_dir)
            if not lines:
                return None
            if self._postmaster_pid(data_dir) is None:
                orphans_deadline = time.monotonic() + _ORPHAN_WAIT_S
                while _cluster_processes(data_dir) and time.monotonic() < orphans_deadline:
                    time.sleep(0.1)
                (data_dir / "postmaster.pid").unlink(missing_ok=True)
                return None
            status = lines[7].strip() if len(lines) > 7 else ""
            if status == "ready" and lines[3].strip().isdigit():
                return int(lines[3])
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"A PostgreSQL server for {data_dir} is running but has not become ready "
                    f"(status {status!r}) within {_PG_CTL_TIMEOUT_S}s. Check "
                    f"{data_dir / LOG_FILE}, or stop it and retry."
                )
            time.sleep(0.1)

    def _write_conf(self, data_dir: Path, port: int, account: _ServerAccount | None) -> None:
        conf = data_dir / "postgresql.conf"
        if _INCLUDE_LINE not in conf.read_text(encoding="utf-8"):
            with conf.open("a", encoding="utf-8") as handle:
                handle.write(f"\n{_INCLUDE_LINE}\n")
        _write_file(
            data_dir / CONF_FILE,
            "# Managed by portal.embedded; rewritten on every start.\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {port}\n"
            "unix_socket_directories = ''\n",
            0o600,
            account,
        )

    def _start_server(self, bindir: Path, data_dir: Path, account: _ServerAccount | None) -> int:
        log = data_dir / LOG_FILE
        remembered = self._read_state().get("port")
        for attempt in range(_START_ATTEMPTS):
            if attempt == 0 and isinstance(remembered, int) and _port_is_free(remembered):
                port = remembered
            else:
                port = _free_port()
            self._write_conf(data_dir, port, account)
            offset = _log_size(log)
            proc = _run(
                [
                    bindir / "pg_ctl",
                    "start",
                    "--wait",
                    "--silent",
                    f"--timeout={_PG_CTL_TIMEOUT_S}",
                    f"--pgdata={data_dir}",
                    f"--log={log}",
                ],
                account,
                timeout=_PG_CTL_TIMEOUT_S + 30,
            )
            if proc.returncode == 0:
                self._write_state(port=port, data_dir=str(data_dir))
                return port
            tail = _log_tail(log, offset)
            if "could not bind" in tail:
                continue  # somebody grabbed the port between our probe and the bind
            raise EmbeddedPostgresError(
                f"The embedded PostgreSQL server failed to start (cluster {data_dir}, "
                f"port {port}).\npg_ctl said: {(proc.stderr or proc.stdout).strip()}\n"
                f"Last lines of {log}:\n{tail}\n"
                "Fix the cause above and retry. If the cluster is damaged and its data is "
                f"disposable, delete {data_dir} to get a fresh one."
            )
        raise EmbeddedPostgresError(
            f"The embedded PostgreSQL server could not bind a free port on {HOST} after "
            f"{_START_ATTEMPTS} attempts; see {log}."
        )

    # ------------------------------------------------------------------ roles & database

    def _connect(self, info: ClusterInfo, database: str) -> Any:
        try:
            conn = psycopg2.connect(**info.connect_kwargs("superuser", database))
        except psycopg2.OperationalError as exc:
            raise EmbeddedPostgresError(
                f"Could not log in as {info.superuser} to the embedded cluster "
                f"{info.data_dir} on {info.host}:{info.port}: {str(exc).strip()}\n"
                f"If {self.base_dir / CREDENTIALS_FILE} does not belong to this cluster, "
                "restore the right file, or delete the cluster directory (this deletes its "
                "data) to create a fresh one."
            ) from exc
        conn.autocommit = True
        return conn

    def _bootstrap(self, info: ClusterInfo) -> None:
        """Ensure (idempotently) roles, database and privileges."""
        db = sql.Identifier(info.database)
        owner = sql.Identifier(OWNER_ROLE)
        app = sql.Identifier(APP_ROLE)
        conn = self._connect(info, "postgres")
        try:
            with conn.cursor() as cur:
                _ensure_login_role(cur, OWNER_ROLE, info.owner_password)
                _ensure_login_role(cur, APP_ROLE, info.app_password)
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (info.database,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL(
                            "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0"
                        ).format(db, owner)
                    )
                else:
                    cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
                cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, app))
                # Migrations run as the owner and must be able to alter the tables the app
                # creates in schema data (e.g. re-attach their audit capture, migration 0003).
                cur.execute(sql.SQL("GRANT {} TO {}").format(app, owner))
        finally:
            conn.close()
        conn = self._connect(info, info.database)
        try:
            with conn.cursor() as cur:
                cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        finally:
            conn.close()


def _ensure_login_role(cur: Any, name: str, password: str) -> None:
    """Create or reset role ``name``: LOGIN with ``password`` and no other attributes."""
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    verb = "ALTER" if cur.fetchone() is not None else "CREATE"
    cur.execute(
        sql.SQL(
            "{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
            "NOBYPASSRLS PASSWORD %s"
        ).format(sql.SQL(verb), sql.Identifier(name)),
        (password,),
    )
