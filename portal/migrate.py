"""Schema migrations: Alembic driven from Python, connecting as the owner role."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from portal.config import get_settings
from portal.db import translate
from portal.errors import ConfigError, DatabasePrivilege

REPO_ROOT = Path(__file__).resolve().parents[1]
MIGRATION_LOCK = 0x706F7274616C  # "portal": the advisory lock a migration holds till it commits


def alembic_config(url: str | None = None) -> Config:
    """The Alembic config for ``migrations/`` (found beside the package, else in the cwd)."""
    for root in (REPO_ROOT, Path.cwd()):
        if (root / "alembic.ini").is_file() and (root / "migrations").is_dir():
            cfg = Config(str(root / "alembic.ini"))
            cfg.set_main_option("script_location", str(root / "migrations"))
            if url:
                cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
            return cfg
    raise ConfigError("migrations/ and alembic.ini not found: run from the portal's checkout")


def _with_connection(url: str | None, fn: str, *args: object) -> tuple[str | None, str | None]:
    """Run Alembic ``command.<fn>`` in one transaction; the database's revision before and
    after it (None: never migrated).

    Raises:
        ConfigError: the database is at a revision this code does not know (a newer portal
            migrated it); nothing was changed.
        DatabaseUnavailable: the database could not be reached; nothing was changed.
        DatabasePrivilege: the role connected as may not change the schema (not the owner).
        DatabaseRefused: PostgreSQL refused the work for another reason of its own.
    """
    engine = create_engine(url or get_settings().migration_url(), poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            # One migration at a time (two `make run`s, or `portal migrate` beside one): the
            # second waits, then finds the schema migrated, instead of creating it again.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            before = current_revision(conn)
            problem = unknown_revision_problem(before)
            if problem is not None:
                raise ConfigError(problem)
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            getattr(command, fn)(cfg, *args)
            after = current_revision(conn)
    except DBAPIError as exc:
        translated = translate(exc)
        if isinstance(translated, DatabasePrivilege):
            said = str(exc.orig).strip().splitlines()[0]
            translated = DatabasePrivilege(
                f"The database role migrations connect as may not change the schema (PostgreSQL "
                f"said: {said}); nothing was changed. Migrations must run as the role that owns "
                "the database (portal_owner): set PORTAL_MIGRATION_DATABASE_URL to its URL.",
                translated.sqlstate,
            )
        if translated is None:
            raise
        raise translated from exc
    finally:
        engine.dispose()
    return before, after


def upgrade(url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade the database to ``revision`` (default: the newest); its revision before and
    after. A database already at or past ``revision`` is left as it is: an upgrade never goes
    back."""
    return _with_connection(url, "upgrade", revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Downgrade the database to ``revision`` (default: nothing)."""
    _with_connection(url, "downgrade", revision)


def check(url: str | None = None) -> None:
    """Raise ``alembic.util.CommandError`` if the models and the migrated schema differ."""
    _with_connection(url, "check")


def head_revision() -> str:
    """The newest revision in ``migrations/versions``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return head or "base"


def unknown_revision_problem(revision: str | None) -> str | None:
    """What is wrong with a database at ``revision``, when it is none of ``migrations/versions``
    (a newer portal migrated it: this code can neither upgrade it nor work with its schema)."""
    if revision is None:
        return None
    script = ScriptDirectory.from_config(alembic_config())
    if revision in {s.revision for s in script.walk_revisions()}:
        return None
    return (
        f"The database's schema is at revision {revision}, which this portal's code does not "
        f"know (its newest is {head_revision()}): a newer version of the portal migrated it. "
        "Nothing was changed; use the portal version that migrated it (or a newer one)."
    )


def current_revision(connection: Connection) -> str | None:
    """The revision the connected database is at (None when never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()
