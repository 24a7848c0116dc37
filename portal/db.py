"""The database engine (built once, lazily), ``session_scope()``, the only place that commits, and
``wait_for_database()``, which ``portal serve`` runs before it starts Streamlit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, make_url, pool, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from portal.config import get_settings
from portal.errors import DatabaseUnavailable

_LOG = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The app's engine (role ``portal_app``), with ``pool_pre_ping`` so dead connections heal."""
    return create_engine(
        get_settings().app_url(),
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": 5, "application_name": "data-portal"},
    )


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


def reset_engine() -> None:
    """Dispose the engine and forget settings (tests and the CLI switch databases with this)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    _session_factory.cache_clear()
    get_settings.cache_clear()


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose work commits when the block ends, or rolls back if it raises.

    Raises:
        DatabaseUnavailable: PostgreSQL could not be reached.
    """
    session = _session_factory()()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        if exc.connection_invalidated or "connect" in str(exc.orig).lower():
            raise DatabaseUnavailable(
                "The database is unavailable right now; nothing was saved. Try again in a moment."
            ) from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def wait_for_database(
    url: str,
    *,
    attempts: int = 8,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
    log: Callable[[str], None] = _LOG.warning,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Connect to ``url`` until it answers, waiting ``first_delay``, then twice as long each time
    (at most ``max_delay``) between attempts; log one line per failed attempt.

    Returns the number of attempts it took.

    Raises:
        DatabaseUnavailable: none of ``attempts`` connected; the message names host:port and why.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    target = make_url(url)
    where = f"{target.host or 'localhost'}:{target.port or 5432}"
    engine = create_engine(url, poolclass=pool.NullPool, connect_args={"connect_timeout": 5})
    delay, waited = first_delay, 0.0
    try:
        for attempt in range(1, attempts + 1):
            reason = _connect_once(engine)
            if reason is None:
                return attempt
            if attempt < attempts:
                log(
                    f"database unavailable at {where}, retrying in {delay:g}s "
                    f"(attempt {attempt}/{attempts}): {reason}"
                )
                sleep(delay)
                waited += delay
                delay = min(delay * 2, max_delay)
    finally:
        engine.dispose()
    raise DatabaseUnavailable(
        f"database unavailable at {where}, gave up after {attempts} attempts over {waited:g}s "
        f"({reason}): check that PostgreSQL is running and that PORTAL_DATABASE_URL names it"
    )


def _connect_once(engine: Engine) -> str | None:
    """None if ``engine`` connects and answers; else the first line of the driver's error."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        lines = str(exc.orig or exc).strip().splitlines()
        return lines[0].strip() if lines else type(exc.orig).__name__
    return None
