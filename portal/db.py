"""The database engine (built once, lazily) and ``session_scope()``, the only place that commits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from portal.config import get_settings
from portal.errors import DatabaseUnavailable


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
