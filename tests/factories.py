"""Plain factory functions for tests: random, unique values; no fixtures hidden inside."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from audit.capture import install_capture, qualified_table
from portal.actor import Actor
from portal.spec import DatasetSpec


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def make_captured_table(session: Session, *, dataset_id: int, name: str | None = None) -> str:
    """A data table shaped like a dataset's (``_row_id``, ``_version``, typed columns), with
    capture installed. Returns its name."""
    name = name or unique_name("ds")
    table = qualified_table(session, name)
    session.execute(
        text(
            f"CREATE TABLE {table} ("
            " _row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " _version integer NOT NULL DEFAULT 1,"
            " name text NOT NULL UNIQUE, qty integer, price numeric(12, 2), note text)"
        )
    )
    install_capture(session=session, table_name=name, dataset_id=dataset_id)
    return name


def copy_csv(first_row_id: int, rows: list[tuple[object, ...]]) -> bytes:
    """A COPY stream for ``audit.bulk.bulk_insert``: ``_row_id`` then the values, every value
    quoted, None as the unquoted empty field (NULL)."""

    def field(value: object) -> str:
        return "" if value is None else '"' + str(value).replace('"', '""') + '"'

    lines = (
        ",".join([str(first_row_id + offset), *map(field, row)]) for offset, row in enumerate(rows)
    )
    return "".join(line + "\n" for line in lines).encode()


def make_user(
    session: Session,
    *,
    role: str = "viewer",
    username: str | None = None,
    password: str | None = None,
    display_name: str | None = None,
    active: bool = True,
    must_change_password: bool = False,
) -> tuple[str, str]:
    """An account inserted directly (no audit event; a cheap bcrypt hash, which checks the same
    way). Returns (username, password)."""
    import bcrypt
    from sqlalchemy import func

    from portal.models import User

    username = username or unique_name("u").replace("_", "-")
    password = password or f"pw {secrets.token_urlsafe(12)}"
    session.add(
        User(
            username=username,
            display_name=display_name or username.title(),
            role=role,
            active=active,
            must_change_password=must_change_password,
            password_hash=bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode(),
            password_changed_at=func.now(),
        )
    )
    session.flush()
    return username, password


def upload_dataset(
    actor: Actor,
    data: bytes,
    *,
    spec: DatasetSpec | None = None,
    name: str | None = None,
    reason_required: bool = True,
) -> int:
    """A dataset created from CSV bytes through the real upload path (with ``spec``, or the
    inferred one); returns its id."""
    from portal import uploads

    parsed = uploads.read_file(data)
    if spec is None:
        spec, _ = uploads.propose_spec(parsed)
    result = uploads.check(parsed, spec)
    counts = uploads.import_file(
        actor=actor,
        filename="rows.csv",
        data=data,
        parsed=parsed,
        spec=spec,
        result=result,
        target=uploads.NewDataset(name or unique_name("Dataset"), "", reason_required),
        reason="test data",
    )
    return counts.dataset_id


def add_column(
    actor: Actor, dataset_id: int, label: str, column_type: Any = "text", **given: Any
) -> int:
    """``portal.column_changes.add_column`` in a session of its own (``expected_version`` 1 and
    a reason unless given); returns the changeset's id."""
    from portal import column_changes
    from portal.db import session_scope

    given.setdefault("expected_version", 1)
    given.setdefault("reason", "a new column")
    with session_scope() as s:
        return column_changes.add_column(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            label=label,
            column_type=column_type,
            **given,
        )


def remove_column(actor: Actor, dataset_id: int, name: str, **given: Any) -> int:
    """``portal.column_changes.remove_column`` in a session of its own (``expected_version`` 1
    and a reason unless given); returns the changeset's id."""
    from portal import column_changes
    from portal.db import session_scope

    given.setdefault("expected_version", 1)
    given.setdefault("reason", "not needed")
    with session_scope() as s:
        return column_changes.remove_column(
            session=s, actor=actor, dataset_id=dataset_id, name=name, **given
        )


def audit_events(engine: Engine, *kinds: str) -> list[dict[str, Any]]:
    """Kind, actor, target and detail of every audit event of one of ``kinds``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT kind, actor_username, target, detail FROM audit.event"
                " WHERE kind = ANY(:kinds) ORDER BY id"
            ),
            {"kinds": list(kinds)},
        )
        return [dict(r._mapping) for r in rows]


def user_admin_events(engine: Engine) -> list[tuple[str, str, dict[str, object]]]:
    """(actor, target, detail) of every ``user_admin`` event, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor_username, target, detail FROM audit.event"
                " WHERE kind = 'user_admin' ORDER BY id"
            )
        )
        return [(r[0], r[1], r[2]) for r in rows]


def table_name(engine: Engine, dataset_id: int) -> str:
    """The dataset's table name in schema ``data`` (bare, unquoted), as ``portal.datasets`` has
    it. Read on a connection of its own: the name never changes, so a caller about to write to
    the table in a transaction (of any role) reads it first."""
    with engine.connect() as conn:
        name = conn.scalar(
            text("SELECT table_name FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
        )
    if name is None:
        raise LookupError(f"no dataset {dataset_id} in portal.datasets")
    return str(name)


def data_table(engine: Engine, dataset_id: int) -> str:
    """The dataset's table as a qualified, quoted name for SQL: ``data."<name>"``."""
    return f'data."{table_name(engine, dataset_id)}"'


def dataset_rows(engine: Engine, dataset_id: int, columns: str) -> list[tuple[object, ...]]:
    """The dataset's rows as tuples of ``columns`` (SQL, e.g. ``"_row_id, name, qty"``), in
    ``_row_id`` order, read straight from its table."""
    query = f"SELECT {columns} FROM {data_table(engine, dataset_id)} ORDER BY _row_id"
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(query))]


@contextmanager
def statements_sent(engine: Engine, matching: Callable[[str], bool]) -> Iterator[list[str]]:
    """The SQL statements ``engine`` sends while the block runs, those ``matching`` says."""
    seen: list[str] = []

    def listen(conn: object, cursor: object, statement: str, *args: object) -> None:
        if matching(statement):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)


def all_at_once(workers: int, work: Callable[[int], None], *, timeout: float = 120) -> None:
    """Run ``work(n)`` for n in 0..workers-1 in as many threads, released together; re-raise
    the first error any of them met, and fail if one is still running after ``timeout``."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            work(n)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a worker is still running"
    if errors:
        raise errors[0]


def waiting_on_locks(superuser: Engine) -> int:
    """How many backends of the database wait on a lock now (read as ``superuser``, who sees
    every session's state): a test's second transaction, started in a thread, is known to
    wait on the first."""
    with superuser.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def edit_row(
    actor: Actor, dataset_id: int, row_id: int, after: dict[str, Any], reason: str = "an edit"
) -> int:
    """Commit ``after`` (column -> value) to one row, at its version now, through
    ``portal.writes.commit`` in a session of its own; returns the changeset's id."""
    from portal import writes
    from portal.db import session_scope
    from portal.diffs import ChangeSet, RowUpdate

    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id)
        update = RowUpdate(row_id, read.versions[row_id], dict.fromkeys(after), after)
        return writes.commit(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=ChangeSet(updates=(update,)),
            reason=reason,
        ).changeset_id
