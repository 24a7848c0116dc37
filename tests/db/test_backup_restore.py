"""The README's backup and restore, against real PostgreSQL: ``pg_dump -Fc`` of a portal with data
and audit, ``pg_restore --exit-on-error`` into an empty database made the way the compose ``db``
service makes it, and the restored audit chains verify up to the heads kept beside the dump.

(In compose ``portal_owner`` is the cluster's superuser; here the test cluster's superuser plays
that part.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool, text
from sqlalchemy.orm import Session

from audit.chain import read_head, verify
from audit.event_chain import read_event_head, verify_events
from audit.events import record_event
from portal.actor import Actor
from portal.embedded import find_pg_bindir
from tests.conftest import DatabaseHandle, _superuser_exec, create_database, drop_database
from tests.factories import data_table, make_user, unique_name, upload_dataset

pytestmark = pytest.mark.db

ROWS = b"Name,Qty\nAnn,3\nBob,\nCy,7\n"


def _superuser_client(handle: DatabaseHandle, tool: str, *args: str) -> list[str]:
    user, _ = handle.info.credentials("superuser")
    return [
        str(find_pg_bindir() / tool),
        "-h",
        handle.info.host,
        "-p",
        str(handle.info.port),
        "-U",
        user,
        *args,
    ]


def test_a_dump_restores_into_an_empty_database_and_its_chain_verifies(
    fresh_db: DatabaseHandle, tmp_path: Path
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", display_name="Eddie")
    dataset_id = upload_dataset(Actor(name, "Eddie", "editor"), ROWS, name="Stock")
    with Session(fresh_db.app) as s, s.begin():
        record_event(session=s, kind="sign_in", actor_username=name)
    with Session(fresh_db.app) as s:
        head = read_head(session=s)
        event_head = read_event_head(session=s)
    assert head.seq >= 1
    assert event_head.seq >= 1

    env = dict(os.environ, PGPASSWORD=fresh_db.info.credentials("superuser")[1])
    dump = tmp_path / "portal.dump"
    with dump.open("wb") as out:
        subprocess.run(
            _superuser_client(fresh_db, "pg_dump", "-d", fresh_db.name, "-Fc"),
            env=env,
            stdout=out,
            check=True,
            timeout=120,
        )

    restored = f"r_{unique_name()}".lower()[:40]
    create_database(fresh_db.info, restored)  # owned by portal_owner, CONNECT for portal_app
    _superuser_exec(fresh_db.info, restored, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    app = create_engine(fresh_db.info.url("app", restored), poolclass=pool.NullPool)
    try:
        with dump.open("rb") as dumped:
            result = subprocess.run(
                _superuser_client(fresh_db, "pg_restore", "-d", restored, "--exit-on-error"),
                env=env,
                stdin=dumped,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
        assert result.returncode == 0, result.stderr

        with Session(app) as s:
            checked = verify(session=s, expect_head=head.hash)
            assert checked.ok, checked.summary()
            assert read_head(session=s) == head
            events = verify_events(session=s, expect_head=event_head.hash)
            assert events.ok, events.summary()
            assert events.head == read_event_head(session=s) == event_head
            table = data_table(app, dataset_id)
            assert s.scalar(text(f"SELECT count(*) FROM {table}")) == 3
            # Restoring loaded the rows before the capture triggers existed: no new changesets.
            assert s.scalar(text("SELECT max(seq) FROM audit.changeset")) == head.seq
    finally:
        app.dispose()
        drop_database(fresh_db.info, restored)
