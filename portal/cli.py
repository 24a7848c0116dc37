"""The ``portal`` command: development server, migrations, user administration, audit checks.

portal dev                      embedded PostgreSQL + migrations + first admin + Streamlit
portal serve                    wait for the database, then Streamlit (production: PORTAL_*)
portal migrate                  alembic upgrade head, as the owner role
portal user add|passwd|role|disable|enable|unlock|list
portal audit verify [--expect-head H] [--expect-event-head H] [--data] | head | export …
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

import click
import psycopg2  # type: ignore[import-untyped,unused-ignore]

from portal import migrate
from portal.actor import cli_actor
from portal.config import cookie_key_problem, get_settings, make_private
from portal.db import reset_engine, session_scope, wait_for_database
from portal.embedded import EmbeddedPostgresError
from portal.errors import (
    ConfigError,
    DatabaseLoginRefused,
    DatabaseUnavailable,
    PortalError,
    ValidationError,
)
from portal.models import CHANGESET_KINDS, EVENT_KINDS, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

REPO_ROOT = Path(__file__).resolve().parents[1]
F = TypeVar("F", bound=Callable[..., Any])


def _reports_errors(fn: F) -> F:
    """Turn PortalError (and the embedded cluster's EmbeddedPostgresError) into its message and
    exit status 1 (no traceback). A refused database login adds PostgreSQL's reason: whoever runs
    the command is whoever must fix it."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatabaseLoginRefused as exc:
            raise click.ClickException(f"{exc} PostgreSQL said: {exc.reason}") from exc
        except DatabaseUnavailable as exc:
            said = _connection_said(exc)
            message = f"{exc} The connection said: {said}" if said else str(exc)
            raise click.ClickException(message) from exc
        except (PortalError, EmbeddedPostgresError) as exc:
            raise click.ClickException(str(exc)) from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def _connection_said(exc: DatabaseUnavailable) -> str | None:
    """The first line of what the driver (libpq) said when ``exc`` was raised: a page says only
    "unavailable, try again", but whoever runs a command must know whether the server is down,
    the host unknown or the port mistyped."""
    cause = getattr(exc.__cause__, "orig", exc.__cause__)
    lines = str(cause).strip().splitlines() if isinstance(cause, psycopg2.Error) else []
    return lines[0].strip() if lines else None


def _forget_libpq_settings() -> None:
    """Drop the PG* variables (PGSSLMODE, PGTARGETSESSIONATTRS, PGOPTIONS…) from this process's
    environment before it uses the embedded cluster. They are the developer's settings for other
    databases; libpq applied them to every connection, so PGSSLMODE=require, say, made the
    embedded cluster, which has no TLS, refuse every login, and its message advised deleting
    the cluster. The cluster's URLs say all there is to say about reaching it."""
    for key in [key for key in os.environ if key.startswith("PG")]:
        del os.environ[key]


def _use_urls(app_url: str, owner_url: str) -> None:
    os.environ["PORTAL_DATABASE_URL"] = app_url
    os.environ["PORTAL_MIGRATION_DATABASE_URL"] = owner_url
    reset_engine()


@contextmanager
def _database(*, migrated: bool = True) -> Iterator[None]:
    """Point the process at its database: PORTAL_DATABASE_URL, else (dev) the embedded cluster;
    unless ``migrated`` is False, refuse one whose schema is not at this code's revision.

    The embedded cluster is started if it is not running, and stopped when the command ends
    unless another ``portal`` command (a ``portal dev`` serving, say) still uses it.

    Raises:
        ConfigError: the database is not migrated to this code's revision.
    """
    settings = get_settings()
    if settings.database_url is not None or settings.env == "prod":
        if migrated:
            _require_schema()
        yield
        return
    from portal.embedded import EmbeddedPostgres

    cluster = EmbeddedPostgres(_data_dir())
    _forget_libpq_settings()
    with _interrupted_by_stop_signals(), _cluster_use(cluster.base_dir) as last_user:
        try:  # a start that fails once the server runs (a login refused, Ctrl-C) stops it too
            info = cluster.start()
            _use_urls(info.url("app"), info.url("owner"))
            if migrated:
                _require_schema()
            yield
        finally:
            reset_engine()
            if last_user():
                cluster.stop()


def _data_dir() -> Path:
    """PORTAL_DATA_DIR, absolute and created.

    Raises:
        ConfigError: it cannot be a directory (it is a file, or under one) or be created.
    """
    path = get_settings().data_dir.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "it is a file" if path.is_file() else (exc.strerror or str(exc))
        raise ConfigError(
            f"PORTAL_DATA_DIR: {path} cannot be the portal's data directory ({why}). Set "
            "PORTAL_DATA_DIR to a directory you may write to, or unset it to use .data in the "
            "current directory."
        ) from exc
    return path


@contextmanager
def _cluster_use(base_dir: Path) -> Iterator[Callable[[], bool]]:
    """Count this process among the users of the embedded cluster under ``base_dir`` for the
    block (a shared lock on ``base_dir/pg-users.lock``). Yields a function saying whether this
    process is its last user now, so that it may stop the cluster without pulling it from under
    another ``portal dev`` or ``portal`` command."""
    base_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(base_dir / "pg-users.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)

        def last_user() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True  # held until the block ends: a new user waits for the stop

        yield last_user
    finally:
        os.close(fd)


def _require_schema() -> None:
    """Refuse a database whose schema migrations have not brought to this code's revision (its
    tables would be missing or different: the command would fail half-way)."""
    from portal.status import database_status

    status = database_status()
    if status.schema_revision is None:
        raise ConfigError(
            "The database has not been migrated: it has none of the portal's tables yet. Run "
            "`portal migrate` first (`portal dev` migrates the embedded database itself)."
        )
    problem = migrate.unknown_revision_problem(status.schema_revision)
    if problem is not None:
        raise ConfigError(problem)
    if not status.up_to_date:
        raise ConfigError(
            f"The database's schema is at revision {status.schema_revision}, but this portal's "
            f"code expects {status.head_revision}: run `portal migrate` with this code (or use "
            "the portal version that matches the database)."
        )


@click.group()
def main() -> None:
    """Data Portal: an audited data-editing portal on PostgreSQL."""


def streamlit_command(*, address: str, port: int, max_upload_mb: int) -> list[str]:
    """The ``streamlit run`` command line with the portal's server settings (through
    ``portal.streamlit_server``: app.py's navigation from the first session on)."""
    return [
        sys.executable,
        "-m",
        "portal.streamlit_server",
        "run",
        str(REPO_ROOT / "app.py"),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.maxUploadSize",
        str(max_upload_mb),
        "--server.enableXsrfProtection",
        "true",
        "--client.showErrorDetails",
        "none",
        "--client.toolbarMode",
        "minimal",
        # The grids' own "Download as CSV" would be unaudited and not formula-safe.
        "--client.disableDataExport",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]


def _a_number(value: float, option: str) -> float:
    """``value``, unless it is NaN (which passes every range check, then stopped the wait with
    a ValueError traceback)."""
    if math.isnan(value):
        raise click.BadParameter("nan is not a number of seconds.", param_hint=f"'{option}'")
    return value


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--db-wait-attempts",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connection attempts before giving up (the waits between them double, at most 30 s).",
)
@click.option(
    "--db-wait-delay",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, max=30),
    callback=lambda _ctx, _param, value: _a_number(value, "--db-wait-delay"),
    help="Seconds to wait after the first failed attempt (at most 30).",
)
@_reports_errors
def serve(address: str, port: int, db_wait_attempts: int, db_wait_delay: float) -> None:
    """Wait for the database, then run the Streamlit server (settings from PORTAL_* variables).

    The database may be briefly unavailable (starting, restarting): each failed attempt is
    logged and retried; if it never answers the command exits 1 without starting Streamlit.
    """
    settings = get_settings()
    url = settings.app_url()  # ConfigError now, clearly, rather than on the first page view
    _usable_cookie_key()
    attempts = wait_for_database(
        url,
        attempts=db_wait_attempts,
        first_delay=db_wait_delay,
        log=lambda line: click.echo(line, err=True),
    )
    if attempts > 1:
        click.echo(f"database available after {attempts} attempts", err=True)
    cmd = streamlit_command(address=address, port=port, max_upload_mb=settings.max_upload_mb)
    os.chdir(REPO_ROOT)
    os.execv(cmd[0], cmd)  # noqa: S606 - replaces this process with Streamlit


@main.command(name="migrate")
@click.option("--revision", default="head", show_default=True)
@_reports_errors
def migrate_cmd(revision: str) -> None:
    """Upgrade the database schema (as the owner role)."""
    from alembic.util import CommandError

    with _database(migrated=False):
        try:
            before, after = migrate.upgrade(revision=revision)
        except CommandError as exc:
            raise click.ClickException(
                f"Cannot migrate to revision {revision!r}: {exc}. Give one of the revisions in "
                "migrations/versions, or head (the newest, the default)."
            ) from exc
    if before != after:
        click.echo(f"database migrated from revision {before or 'none'} to {after}")
    elif revision in ("head", after):
        click.echo(f"database already at revision {after}; nothing to do")
    else:  # alembic's upgrade to an earlier revision does nothing
        click.echo(
            f"database already at revision {after}, past {revision}; nothing was changed "
            "(`portal migrate` only upgrades)"
        )


def _usable_cookie_key() -> str:
    """The key that will sign sign-in cookies, checked before the portal starts: a placeholder
    such as PORTAL_COOKIE_KEY=changeme is refused in every mode (``portal.auth.cookie_key``),
    and the portal served anyway, every page then saying so.

    Raises:
        ConfigError: it is a placeholder, too short or a repeat; the message names the variable.
    """
    settings = get_settings()
    if settings.cookie_key is None or not settings.cookie_key.get_secret_value():
        _data_dir()  # where development keeps a generated key: said plainly if it cannot be
    key = settings.cookie_secret()
    problem = cookie_key_problem(key)
    if problem is not None:
        raise ConfigError(problem)
    return key


def _first_admin_password() -> tuple[str, bool]:
    configured = get_settings().admin_password
    if configured is not None and configured.get_secret_value():
        return configured.get_secret_value(), False
    return secrets.token_urlsafe(18), True


def _write_private(path: Path, content: str) -> None:
    """Replace ``path`` with ``content``, mode 0600 from its first byte, whole or not at all.

    Raises:
        OSError: it could not be written (``path`` is then as it was).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(path)
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def _prepare_first_admin(secret_file: Path) -> None:
    """Create the first admin in an empty database; keep ``secret_file`` (a generated password)
    only while it is still admin's password.

    That takes a bcrypt check on every start while the file exists — until the first start after
    admin chose their own. must_change_password cannot stand in for it: an admin may have reset
    the password since (flag set, file stale), and an admin created before ``portal dev`` set
    the flag has it clear while the file may still hold the only copy of their password.
    """
    from portal.users import FIRST_ADMIN, ensure_first_admin, has_password

    password, generated = _first_admin_password()
    with session_scope() as session:
        try:
            created = ensure_first_admin(
                session=session,
                actor=cli_actor(),
                password=password,
                must_change_password=generated,  # it is on a terminal and in a file
            )
        except ValidationError as exc:
            if generated:  # pragma: no cover - a generated password meets every rule
                raise
            # The operator typed no password here: the rule's message alone named none.
            raise ConfigError(
                f"PORTAL_ADMIN_PASSWORD: {exc} Set it to another password (or unset it to have "
                "one generated) and run portal dev again; no admin was created."
            ) from exc
        if created and generated:  # kept before admin is committed: never an admin without it
            try:
                _write_private(secret_file, password + "\n")
            except OSError as exc:
                raise ConfigError(
                    f"Cannot write {secret_file}: {exc.strerror or exc}. The first admin was "
                    f"not created; make room in (or make writable) {secret_file.parent}, or "
                    "set PORTAL_ADMIN_PASSWORD, and run portal dev again."
                ) from exc
    if created and generated:
        click.echo(
            f"\n  first admin created: user '{FIRST_ADMIN}', password {password}\n"
            f"  (shown once; also kept in {secret_file}, mode 0600;\n"
            "  the first sign-in asks admin to choose their own before anything else,\n"
            "  and the next start then removes the file)\n"
        )
        return
    if created:
        click.echo(
            f"first admin created: user '{FIRST_ADMIN}', password from PORTAL_ADMIN_PASSWORD"
        )
    if not secret_file.exists():
        return
    with session_scope() as session:
        current = has_password(
            session=session, username=FIRST_ADMIN, password=secret_file.read_text().strip()
        )
    if current:
        if make_private(secret_file):
            click.echo(f"{secret_file} was readable by others: it is now mode 0600")
        click.echo(f"sign in as '{FIRST_ADMIN}' with the password in {secret_file}")
    else:
        secret_file.unlink()
        click.echo(f"removed {secret_file}: it no longer holds {FIRST_ADMIN}'s password")


@main.command()
@click.option("--port", default=8501, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-serve", is_flag=True, help="Prepare the database and admin, then exit.")
@_reports_errors
def dev(port: int, no_serve: bool) -> None:
    """Embedded PostgreSQL, migrations, first admin, and the portal on 127.0.0.1."""
    from portal.embedded import EmbeddedPostgres

    settings = get_settings()
    data_dir = _data_dir()
    if not no_serve:
        _usable_cookie_key()
    with ExitStack() as stack:
        stack.enter_context(_interrupted_by_stop_signals())
        cluster, last_user = None, None
        if settings.database_url is None:
            cluster = EmbeddedPostgres(data_dir)
            _forget_libpq_settings()
            last_user = stack.enter_context(_cluster_use(cluster.base_dir))
        try:
            if cluster is not None:  # in the try: a start that fails once the server runs stops it
                click.echo(f"starting embedded PostgreSQL under {data_dir / 'pg'} ...")
                info = cluster.start()
                click.echo(f"PostgreSQL listening on 127.0.0.1:{info.port}")
                _use_urls(info.url("app"), info.url("owner"))
            migrate.upgrade()
            click.echo(f"database migrated to {migrate.head_revision()}")
            _prepare_first_admin(data_dir / "admin-password")
            if no_serve:
                return
            # The server connects as the app role: the owner's URL, which migrations alone
            # need, would hand a page's process the role that may drop the audit triggers.
            env = {k: v for k, v in os.environ.items() if k != "PORTAL_MIGRATION_DATABASE_URL"}
            env["PORTAL_COOKIE_KEY"] = settings.cookie_secret()
            cmd = streamlit_command(
                address="127.0.0.1", port=port, max_upload_mb=settings.max_upload_mb
            )
            click.echo(f"portal on http://127.0.0.1:{port}  (Ctrl-C stops it and the database)")
            status = _run_until_interrupted(cmd, env)
            if status:
                raise click.ClickException(
                    f"The portal's server (Streamlit) stopped with exit status {status}; its own "
                    f"message is above. If port {port} is in use, choose another with --port."
                )
        finally:
            if cluster is not None and last_user is not None:
                reset_engine()
                if last_user():
                    if cluster.is_running():
                        cluster.stop()
                        click.echo("embedded PostgreSQL stopped")
                else:
                    click.echo("embedded PostgreSQL left running: another portal command uses it")


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Besides Ctrl-C, what stops ``portal dev`` and its database: SIGHUP is what closing its
terminal sends (by default it ended the command at once, leaving the database running)."""


@contextmanager
def _interrupted_by_stop_signals() -> Iterator[None]:
    """In the block, SIGTERM and SIGHUP interrupt as Ctrl-C does, so that the database started
    is stopped (by default they ended the process at once: one sent while ``portal dev`` was
    starting the database or migrating it left the database running)."""

    def _interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (a command run in a thread, in tests)
        return
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_until_interrupted(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` until it ends or is stopped (Ctrl-C, SIGTERM, or SIGHUP: its terminal was
    closed); its exit status, 0 when it was stopped."""
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT)
    stopped = False

    def _forward(signum: int, _frame: object) -> None:
        nonlocal stopped
        stopped = True
        proc.send_signal(signum)

    previous = {signum: signal.signal(signum, _forward) for signum in STOP_SIGNALS}
    try:
        status = proc.wait()
    except KeyboardInterrupt:
        stopped = True
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if stopped else status


# -- users ------------------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Manage user accounts (the same rules as the Users page)."""


def _read_password(password_stdin: bool) -> str:
    """Raises: ValidationError: what was read does not decode in the locale's encoding (bytes
    it keeps as lone surrogates, as the C locale does, ``users.check_password`` refuses), or
    the prompt's input, not a terminal, ended before a password was typed twice."""
    try:
        if password_stdin:
            # A file saved on Windows ends the line with CR LF, and a pipe keeps the CR: it is
            # no part of the password (no sign-in form could type it).
            value = sys.stdin.readline().rstrip("\r\n")
        else:
            value = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    except click.Abort as abort:  # Ctrl-C at the prompt, or its input ended
        if sys.stdin.isatty():
            raise
        raise ValidationError(
            "No password was given: standard input is not a terminal to type it at, and it "
            "ended. Give the password on one line of standard input with --password-stdin, or "
            "run the command at a terminal; nothing was changed."
        ) from abort
    except UnicodeError as exc:
        raise ValidationError(
            "The password read is not UTF-8 text (a file saved as Latin-1 or Windows-1252, "
            "say); nothing was changed. Save it as UTF-8, or type it, and try again."
        ) from exc
    return value


@user.command("add")
@click.argument("username")
@click.option(
    "--role", type=click.Choice(["viewer", "editor", "admin"]), default="editor", show_default=True
)
@click.option("--display-name", default="", help="Defaults to the username.")
@click.option("--email", default=None)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--must-change-password",
    is_flag=True,
    help="Make them choose their own password when they first sign in.",
)
@_reports_errors
def user_add(
    username: str,
    role: str,
    display_name: str,
    email: str | None,
    password_stdin: bool,
    must_change_password: bool,
) -> None:
    """Create a user."""
    from portal.users import check_display_name, check_email, check_username_free, create_user

    with _database():
        # What no password could mend is said before one is typed (twice, at a prompt).
        with session_scope() as session:
            name = check_username_free(session=session, username=username)
        check_display_name(display_name, username=name)
        check_email(email)
        password = _read_password(password_stdin)
        with session_scope() as session:
            created = create_user(
                session=session,
                actor=cli_actor(),
                username=username,
                display_name=display_name or username,
                role=role,
                password=password,
                email=email,
                must_change_password=must_change_password,
            )
            click.echo(f"user {created.username!r} created with role {created.role}")


@user.command("passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--must-change-password",
    is_flag=True,
    help="Make them choose their own password when they next sign in.",
)
@_reports_errors
def user_passwd(username: str, password_stdin: bool, must_change_password: bool) -> None:
    """Set a user's password (their sessions end at once; a lock-out is lifted)."""
    from portal.users import get_user, reset_password

    with _database():
        with session_scope() as session:  # no such user: said before a password is typed
            get_user(session=session, username=username)
        password = _read_password(password_stdin)
        with session_scope() as session:
            name = reset_password(
                session=session,
                actor=cli_actor(),
                username=username,
                password=password,
                must_change_password=must_change_password,
            ).username
    click.echo(f"password of {name!r} changed")


@user.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(["viewer", "editor", "admin"]))
@_reports_errors
def user_role(username: str, role: str) -> None:
    """Set a user's role."""
    from portal.users import set_role

    with _database():
        before = _account_before(username)
        with session_scope() as session:
            set_role(session=session, actor=cli_actor(), username=username, role=role)
    if before.role == role:
        click.echo(f"{before.username!r} is {role} already; nothing was changed")
    else:
        click.echo(f"{before.username!r} is now {role}")


def _account_before(username: str) -> User:
    """The account as it is before a command changes it, read in a transaction of its own, so
    that the command can say when there was nothing to change (and no event was recorded). The
    change reads it again under its lock: one made by someone else in between can only make
    this line out of date, never the change.

    Raises:
        NotFound: no such user.
    """
    from portal.users import get_user

    with session_scope() as session:
        return get_user(session=session, username=username)


def _set_active(username: str, active: bool) -> None:
    from portal.users import set_active

    state = "enabled" if active else "disabled"
    with _database():
        before = _account_before(username)
        with session_scope() as session:
            set_active(session=session, actor=cli_actor(), username=username, active=active)
    if before.active == active:
        click.echo(f"{before.username!r} is {state} already; nothing was changed")
    else:
        click.echo(f"{before.username!r} {state}")


@user.command("disable")
@click.argument("username")
@_reports_errors
def user_disable(username: str) -> None:
    """Disable a user (they lose access at their next click)."""
    _set_active(username, False)


@user.command("enable")
@click.argument("username")
@_reports_errors
def user_enable(username: str) -> None:
    """Enable a disabled user."""
    _set_active(username, True)


@user.command("unlock")
@click.argument("username")
@_reports_errors
def user_unlock(username: str) -> None:
    """Clear a user's lock-out and failed sign-ins."""
    from portal.users import unlock

    with _database(), session_scope() as session:
        unlocked = unlock(session=session, actor=cli_actor(), username=username)
    click.echo(unlocked.said(repr(unlocked.username)))


@user.command("list")
@_reports_errors
def user_list() -> None:
    """List users (locked until: only locks still in force)."""
    from portal.users import summarise_users

    with _database(), session_scope() as session:
        users = summarise_users(session=session, actor=cli_actor())
    if not users:
        click.echo(
            "There are no users yet; add the first admin with `portal user add NAME --role admin`."
        )
        return
    click.echo(
        f"{'username':<20} {'role':<7} {'active':<6} {'failed':<6} {'locked until':<25} name"
    )
    for u in users:
        locked = u.locked_until.isoformat(timespec="seconds") if u.locked_until else "-"
        click.echo(
            f"{u.username:<20} {u.role:<7} {'yes' if u.active else 'no':<6} "
            f"{u.failed_attempts:<6} {locked:<25} {u.display_name}"
        )


# -- dataset ----------------------------------------------------------------------------------


@main.group()
def dataset() -> None:
    """Look after datasets' bookkeeping."""


@dataset.command("recount")
@click.argument("dataset_ids", metavar="[DATASET_ID]...", nargs=-1, type=click.IntRange(1))
@_reports_errors
def dataset_recount(dataset_ids: tuple[int, ...]) -> None:
    """Count the rows of each dataset (all of them when none is named) and correct the row
    count the Datasets page shows where it drifted (a write made with triggers off). Each
    dataset in a transaction of its own; its commits wait a moment."""
    from portal.datasets import dataset_names, recount_rows

    with _database():
        with session_scope() as session:
            known = [i for i, _ in dataset_names(session=session)]
        unknown = [i for i in dataset_ids if i not in known]
        if unknown:
            listed = ", ".join(map(str, unknown))
            raise click.BadParameter(
                f"no dataset has id {listed}; `portal dataset recount` with no id recounts "
                "them all.",
                param_hint="'DATASET_ID'",
            )
        if not known:
            click.echo("There are no datasets yet; nothing was counted.")
        for dataset_id in dict.fromkeys(dataset_ids or sorted(known)):
            with session_scope() as session:
                click.echo(recount_rows(session=session, dataset_id=dataset_id).summary())


# -- audit ------------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """Check the audit log's hash chains (and, with verify --data, the datasets against it)."""


_HEAD_HASH = re.compile(r"[0-9a-f]{64}")


def _head_hash(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A head hash kept from ``portal audit head``: 64 hexadecimal digits (case and surrounding
    blanks do not matter). Anything else is refused here rather than reported as a broken chain."""
    if value is None:
        return None
    digest = value.strip().lower()
    if not _HEAD_HASH.fullmatch(digest):
        raise click.BadParameter(
            f"{value!r} is not a head hash: give the 64 hexadecimal digits that end a line of "
            "`portal audit head` (the first line for --expect-head, the events line for "
            "--expect-event-head)."
        )
    return digest


@audit.command("verify")
@click.option(
    "--expect-head",
    default=None,
    metavar="HASH",
    callback=_head_hash,
    help="A head hash kept outside the database: also detects a removed tail.",
)
@click.option(
    "--expect-event-head",
    default=None,
    metavar="HASH",
    callback=_head_hash,
    help="An events head hash kept outside the database (the events line of `portal audit "
    "head`): also detects the newest events removed.",
)
@click.option(
    "--data",
    is_flag=True,
    help="Also rebuild every dataset from the log and compare it with its table, cell by cell: "
    "detects changes that reached a table uncaptured. Slow on large datasets.",
)
@_reports_errors
def audit_verify(expect_head: str | None, expect_event_head: str | None, data: bool) -> None:
    """Recompute the changesets' hash chain, then the events'; exit 1 naming the first
    changeset or event that fails. With --data, exit 1 too if a dataset's table differs from
    the state its audit log rebuilds."""
    from audit.chain import verify
    from audit.event_chain import verify_events
    from audit.reconcile import check_datasets

    drifts = []
    with _database():
        with session_scope() as session:
            _refuse_swapped_heads(session, expect_head, expect_event_head)
        with session_scope() as session:
            result = verify(session=session, expect_head=expect_head)
        click.echo(result.summary(), err=not result.ok)
        with session_scope() as session:
            events = verify_events(session=session, expect_head=expect_event_head)
        click.echo(events.summary(), err=not events.ok)
        if data:
            with session_scope() as session:
                drifts = check_datasets(
                    session=session,
                    progress=lambda d: click.echo(f"checking dataset {d.id} “{d.name}”…", err=True),
                )
    for drift in drifts:
        click.echo(drift.summary(), err=not drift.ok)
    if not result.ok or not events.ok or not all(drift.ok for drift in drifts):
        sys.exit(1)


def _refuse_swapped_heads(
    session: Session, expect_head: str | None, expect_event_head: str | None
) -> None:
    """Refuse a head of one chain given for the other's: `portal audit head` prints both in
    the same form, and such a hash is never in the other chain, which verify would report as
    its newest entries removed (a false alarm of tampering)."""
    from audit.chain import is_changeset_hash
    from audit.event_chain import is_event_hash

    if expect_head is not None and is_event_hash(session=session, digest=expect_head):
        raise click.BadParameter(
            f"{expect_head} is an event's hash (the events line of `portal audit head`): give "
            "it as --expect-event-head, and the first line's hash as --expect-head.",
            param_hint="'--expect-head'",
        )
    if expect_event_head is not None and is_changeset_hash(
        session=session, digest=expect_event_head
    ):
        raise click.BadParameter(
            f"{expect_event_head} is a changeset's hash (the first line of `portal audit "
            "head`): give it as --expect-head, and the events line's hash as "
            "--expect-event-head.",
            param_hint="'--expect-event-head'",
        )


@audit.command("head")
@_reports_errors
def audit_head() -> None:
    """Print the newest changeset's seq and hash, then, on a line of its own beginning with
    ``events``, the newest event's (keep both somewhere safe)."""
    from portal.trail_views import chain_heads

    with _database(), session_scope() as session:
        head, event_head = chain_heads(session=session, actor=cli_actor())
    click.echo(f"{head.seq} {head.hash}")
    click.echo(f"events {event_head.seq} {event_head.hash}")


@audit.command("export")
@click.option(
    "--what",
    type=click.Choice(["changesets", "events"]),
    default="changesets",
    show_default=True,
    help="The changesets (data changes) or the events (sign-ins, exports, user admin…).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--rows", is_flag=True, help="Include each captured row change (changesets only).")
@click.option("--dataset", "dataset_id", type=int, default=None, help="Only this dataset's (id).")
@click.option("--actor", default=None, help="Only this user's (username).")
@click.option(
    "--kind",
    default=None,
    help=f"Only this kind: of changesets ({', '.join(CHANGESET_KINDS)}) or of events "
    f"({', '.join(EVENT_KINDS)}).",
)
@click.option(
    "--text",
    "free_text",
    default="",
    help="Only those with this text, in any case, in their reason or a value before or after "
    "(changesets), or in their target or details (events), as the page's Text.",
)
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]), default=None, help="From this day (UTC) on."
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Up to and including this day (UTC).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default="-",
    show_default=True,
    help="The file to write ('-': standard output).",
)
@_reports_errors
def audit_export(
    what: str,
    fmt: str,
    rows: bool,
    dataset_id: int | None,
    actor: str | None,
    kind: str | None,
    free_text: str,
    since: datetime | None,
    until: datetime | None,
    output: str,
) -> None:
    """Export the audit trail, newest first, as the Audit page does but with no size limit
    (written as it is read); recorded as an export event, also when it stops part-way to
    standard output (`| head` closing it, a text search past its time limit). A file is written
    whole or not at all."""
    from audit.search import TrailFilter, day_after, day_start
    from portal.trail_views import kinds, record_cut_short_export, write_trail

    allowed = kinds(what)  # type: ignore[arg-type]
    if kind is not None and kind not in allowed:  # the page offers only these
        raise click.BadParameter(
            f"{kind!r} is not a kind of {what}: choose one of {', '.join(allowed)}.",
            param_hint="'--kind'",
        )
    if not output:  # an unset shell variable, say
        raise click.BadParameter(
            "it is empty: give a file to write, or '-' for standard output.",
            param_hint="'--output' / '-o'",
        )
    if actor is not None and not actor.strip():  # an unset shell variable, say: not everyone
        raise click.BadParameter(
            "it is blank: give a username (`portal user list` shows them), or leave --actor out "
            "to export everyone's.",
            param_hint="'--actor'",
        )
    trail_filter = TrailFilter(
        dataset_id=dataset_id,
        actor=actor,
        kind=kind,
        since=day_start(since.date()) if since else None,
        # Nothing follows the last day a date can name: up to and including it is no end.
        until=day_after(until.date()) if until and until.date() < date.max else None,
        text=free_text.strip(),
    )

    def export_to(out: TextIO) -> int:
        nonlocal trail_filter
        watched = _Watched(out) if out is sys.stdout else None  # a file is removed on failure
        with _database():
            if actor is not None:
                with session_scope() as session:
                    trail_filter = replace(trail_filter, actor=_actor_in_log(session, actor))
            if dataset_id is not None:
                with session_scope() as session:
                    _say_if_no_dataset(session, dataset_id)
            try:
                with session_scope() as session:
                    count, _ = write_trail(
                        session=session,
                        actor=cli_actor(),
                        trail_filter=trail_filter,
                        out=out if watched is None else cast("TextIO", watched),
                        trail_list=what,  # type: ignore[arg-type]
                        fmt=fmt,  # type: ignore[arg-type]
                        include_rows=rows,
                    )
                    out.flush()  # a write that fails now, not after the export event is committed
            except (OSError, PortalError) as exc:
                if watched is None or not watched.written:
                    raise  # nothing left the portal: a partial file is removed
                # Standard output closed part-way (`| head`), or the database stopped the export
                # (a text search past its time limit, a lost connection) after some of it went
                # out: what went out has left the portal.
                problem = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
                with session_scope() as session:
                    record_cut_short_export(
                        session=session,
                        actor=cli_actor(),
                        trail_filter=trail_filter,
                        out_problem=problem,
                        trail_list=what,  # type: ignore[arg-type]
                        fmt=fmt,  # type: ignore[arg-type]
                        include_rows=rows,
                    )
                raise
        return count

    if output == "-":
        count = export_to(sys.stdout)
    else:
        target = Path(output)
        partial = target.with_name(f".{target.name}.partial")
        try:
            try:
                with partial.open(
                    "w", encoding="utf-8-sig" if fmt == "csv" else "utf-8", newline=""
                ) as fh:
                    count = export_to(fh)
            except OSError as exc:
                raise click.ClickException(
                    f"Cannot write {output}: {exc.strerror or exc}. Nothing was written and no "
                    "export was recorded; choose a file in a directory you can write to."
                ) from exc
            try:  # the export is committed by now: only putting its file in place can fail
                partial.replace(target)
            except OSError as exc:
                raise click.ClickException(
                    f"Cannot put the export in place as {output}: {exc.strerror or exc}. The "
                    "export was recorded, but its file was removed; choose a file you may "
                    "replace (or a new name) and export again."
                ) from exc
        finally:
            with suppress(OSError):
                partial.unlink(missing_ok=True)
    click.echo(f"{count:,} {what} exported" + ("" if output == "-" else f" to {output}"), err=True)


class _Watched:
    """Standard output for an export, noting whether anything was written to it."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.written = out, False

    def write(self, text: str) -> int:
        self.written = self.written or bool(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def _say_if_no_dataset(session: Session, dataset_id: int) -> None:
    """Say on standard error that no dataset has ``dataset_id``, naming the ids there are (no
    page shows them): an export of nothing, not of a dataset that had no changes."""
    from portal.datasets import dataset_names

    names = dict(dataset_names(session=session))
    if dataset_id in names:
        return
    shown = sorted(names.items())
    listed = ", ".join(f"{i} “{name}”" for i, name in shown[:20])
    more = f" and {len(shown) - 20:,} more" if len(shown) > 20 else ""
    click.echo(
        f"No dataset has id {dataset_id}: "
        + (f"the datasets are {listed}{more}." if shown else "there are no datasets yet."),
        err=True,
    )


def _actor_in_log(session: Session, name: str) -> str:
    """The username in the audit log that ``name`` means: itself, or the one it matches in
    any case (usernames are kept lower-case; ``--actor Ann`` is ann's). One not in the log at
    all is said on standard error: an export of nothing, not of everything.

    Raises:
        click.BadParameter: ``name`` is none of the log's usernames but matches several in
            other cases (a database role ``ANN`` besides the portal's ``ann``).
    """
    from audit.search import actors

    known = actors(session=session)
    if name in known:
        return name
    same = [k for k in known if k.casefold() == name.strip().casefold()]
    if len(same) == 1:
        return same[0]
    if same:  # a database role's out-of-band changes, say, in another case than a username
        raise click.BadParameter(
            f"“{name}” matches several usernames in the audit log, in other cases: "
            + ", ".join(f"“{k}”" for k in same)
            + ". Give one as it is written there.",
            param_hint="'--actor'",
        )
    click.echo(
        f"No changesets or events by “{name}” are in the audit log: check the username "
        "(`portal user list` shows them).",
        err=True,
    )
    return name


if __name__ == "__main__":
    main()
