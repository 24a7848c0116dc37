"""A throw-away PostgreSQL cluster (default durability settings, deleted afterwards) and the
benchmark table."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from portal import migrate
from portal.actor import Actor, cli_actor
from portal.db import reset_engine
from portal.embedded import ClusterInfo, EmbeddedPostgres
from portal.users import create_user

TEN_COLUMNS = (
    "name text NOT NULL, amount bigint, price numeric(14,2), day date, active boolean,"
    " category text, description text, score integer, code text, total bigint"
)


def create_table_sql(name: str) -> str:
    """DDL of a dataset-shaped benchmark table ``data.<name>`` with the ten typed columns."""
    return (
        f"CREATE TABLE data.{name} (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        f" _version integer NOT NULL DEFAULT 1, {TEN_COLUMNS})"
    )


COLUMN_NAMES = [
    "name",
    "amount",
    "price",
    "day",
    "active",
    "category",
    "description",
    "score",
    "code",
    "total",
]


@contextmanager
def cluster() -> Iterator[ClusterInfo]:
    base = Path(tempfile.mkdtemp(prefix="portal-bench-", dir="/tmp"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base)
    info = pg.start()
    try:
        migrate.upgrade(info.url("owner"))
        yield info
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)  # gigabytes after a bulk benchmark


def bench_editor(info: ClusterInfo) -> Actor:
    """Point the portal (``portal.db``) at the cluster's app role and create the editor the
    benchmark acts as."""
    os.environ["PORTAL_DATABASE_URL"] = info.url("app")
    reset_engine()
    engine = create_engine(info.url("app"))
    with Session(engine) as s, s.begin():
        create_user(
            session=s,
            actor=cli_actor(),
            username="bench",
            display_name="Bench",
            role="editor",
            password=secrets.token_urlsafe(16),
        )
    engine.dispose()
    return Actor("bench", "Bench", "editor")


def csv_rows(first_row_id: int, count: int) -> bytes:
    """``count`` rows of the ten typed columns, ``_row_id`` first, as a COPY CSV stream."""
    lines = [
        f'{first_row_id + i},"name {i}",{i},{i * 1.5:.2f},2024-01-{i % 28 + 1:02d},'
        f'{"t" if i % 2 else "f"},"cat{i % 7}","some text, {i}",{i % 1000},"x{i}",{i * 3}\n'
        for i in range(count)
    ]
    return "".join(lines).encode()
