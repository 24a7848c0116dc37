"""Indexes on dataset columns, built when a large dataset is first sorted or filtered by them.

    wanted()       the columns of a read that a btree would serve, on a table large enough
    ensure()       start building the missing ones in the background; the ones still building
    wait()         block until the builds this process started have finished (tests, CLI)

Decisions a reader needs:

- Why on demand: a btree on ``(column, _row_id)`` turns a sort or an equals / range / empty
  filter of a 10,000,000-row table from seconds into milliseconds (``benchmarks/edit_window``),
  but building one costs 18-57 s on such a table. Building one per column inside an upload
  would make every upload several times slower, for columns nobody may ever sort by. So tables
  start with their primary key only, and a column gets its index the first time someone sorts
  or filters by it on a table of at least ``PORTAL_INDEX_FROM_ROWS`` rows (default 100,000;
  below that a scan is fast).
- How: ``CREATE INDEX CONCURRENTLY`` on a connection of its own in autocommit, in a background
  thread, so neither the page nor anyone's commit waits for it; the read that asked for it runs
  without it, and the page says the index is being built. A build interrupted (the app killed)
  leaves an INVALID index, which the next build drops first. A build that fails (a value too
  long for a btree) drops its INVALID index at once and is not tried again for
  ``FAILED_RETRY_S``: reads run without it meanwhile, as on a small table. Two app replicas
  asking at once take turns on an advisory lock keyed by the index name, so only one builds and
  none drops the other's build in progress.
- The index is ``(column, _row_id)``: ties in a sort are broken by ``_row_id`` (``read_window``
  orders by both), so the index serves both directions and the equality filters in row order.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from portal.config import get_settings
from portal.spec import DATA_SCHEMA, DatasetSpec, index_name

if TYPE_CHECKING:  # portal.browse reads through this module
    from portal.browse import RowFilter, Sort

log = logging.getLogger(__name__)

INDEXED_FILTERS = frozenset({"equals", "range", "empty"})
"""Filter kinds a btree serves (``contains`` is ILIKE '%…%': a scan whatever the index)."""

READY_RECHECK_S = 300.0
"""How long an index seen valid is taken as still there without asking the catalog again (an
index is only ever dropped by hand; a read without it is slower, never wrong)."""

FAILED_RETRY_S = 3600.0
"""How long after a failed build no read starts another (a value too long for a btree fails it,
and a retry scans the whole table again, to fail the same way)."""

_building: dict[str, threading.Thread] = {}
_lock = threading.Lock()
# Per engine (one per database), the indexes seen valid and when: most reads skip the catalog.
_ready: weakref.WeakKeyDictionary[Engine, dict[str, float]] = weakref.WeakKeyDictionary()
# Per engine, the indexes whose build failed and when: not retried before FAILED_RETRY_S.
_failed: weakref.WeakKeyDictionary[Engine, dict[str, float]] = weakref.WeakKeyDictionary()


def wanted(
    spec: DatasetSpec,
    row_count: int,
    sort: Sort | None = None,
    filters: Sequence[RowFilter] = (),
) -> list[str]:
    """The physical columns a read sorted by ``sort`` and filtered by ``filters`` would want an
    index on, in spec order; none below the size threshold."""
    if row_count < get_settings().index_from_rows:
        return []
    columns = {f.column for f in filters if f.op in INDEXED_FILTERS}
    if sort is not None:
        columns.add(sort.column)  # _row_id has its primary key
    return [n for n in spec.names if n in columns]  # an unknown column: the read refuses it


def ensure(session: Session, table_name: str, columns: Iterable[str]) -> list[str]:
    """Start building the valid index of each column that lacks one; the columns whose index
    is not ready yet (being built, by this process or another).

    The check is one catalog query in the reader's own session (a connection of its own would
    cost a checkout, its ping and a rollback: as much as the read it serves), and none for an
    index seen valid in the last ``READY_RECHECK_S``; builds run on connections of their own
    from the session's engine."""
    columns = list(columns)
    if not columns:
        return []
    engine = session.get_bind().engine
    names = {column: index_name(table_name, column) for column in columns}
    now = time.monotonic()
    with _lock:
        seen = _ready.setdefault(engine, {})
        unsure = [
            n for n in names.values() if now - seen.get(n, -READY_RECHECK_S) >= READY_RECHECK_S
        ]
    valid = set(names.values()) - set(unsure)
    if unsure:
        valid |= set(
            session.scalars(
                text(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                    " WHERE c.relnamespace = CAST(:schema AS regnamespace)"
                    " AND c.relname = ANY(:names) AND i.indisvalid"
                ),
                {"schema": DATA_SCHEMA, "names": unsure},
            )
        )
        with _lock:
            seen.update(dict.fromkeys(valid & set(unsure), now))
    with _lock:
        failed = _failed.setdefault(engine, {})
        given_up = {
            n for n in names.values() if now - failed.get(n, -FAILED_RETRY_S) < FAILED_RETRY_S
        }
    pending = []
    for column, name in names.items():
        if name in valid or name in given_up:  # a read runs without it, as on a small table
            continue
        pending.append(column)
        with _lock:
            if name in _building and _building[name].is_alive():
                continue
            thread = threading.Thread(
                target=_build,
                args=(engine, table_name, column, name),
                name=f"index {name}",
                daemon=True,
            )
            _building[name] = thread
            thread.start()
    return pending


def wait(timeout: float | None = None) -> None:
    """Wait for the builds this process started (tests and the CLI; pages never wait)."""
    with _lock:
        threads = list(_building.values())
    for thread in threads:
        thread.join(timeout)


def _build(engine: Engine, table_name: str, column: str, name: str) -> None:
    preparer = engine.dialect.identifier_preparer
    table = f"{preparer.quote_schema(DATA_SCHEMA)}.{preparer.quote(table_name)}"
    index = f"{preparer.quote_schema(DATA_SCHEMA)}.{preparer.quote(name)}"
    key = zlib.crc32(name.encode())  # the advisory lock's key: one builder per index name
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if not conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}):
                return  # another process is building it
            try:
                if _valid(conn, name) is False:  # left INVALID by an interrupted build
                    conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                try:
                    conn.execute(
                        text(
                            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {preparer.quote(name)}"
                            f" ON {table} ({preparer.quote(column)}, _row_id)"
                        )
                    )
                except Exception:
                    # Not retried for a while (a value too long for a btree fails it, and a
                    # retry scans the whole table to fail again); the INVALID index it leaves,
                    # which every write would still maintain, is dropped while this holds the
                    # lock, so no other builder's index is taken for it.
                    with _lock:
                        _failed.setdefault(engine, {})[name] = time.monotonic()
                    if _valid(conn, name) is False:
                        conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {index}"))
                    raise
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    except Exception:  # a background build must never take the app down
        log.exception("building index %s on %s failed", name, table)


def _valid(conn: Connection, name: str) -> bool | None:
    """Whether the index ``name`` is valid; None if there is none."""
    valid: bool | None = conn.scalar(
        text(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.relnamespace = CAST(:schema AS regnamespace) AND c.relname = :name"
        ),
        {"schema": DATA_SCHEMA, "name": name},
    )
    return valid
