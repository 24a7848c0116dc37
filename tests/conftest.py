"""Shared fixtures: one real PostgreSQL cluster per test run, a migrated template database, and a
fresh database cloned from it for every test that asks.

The cluster is the portal's own embedded PostgreSQL (``portal.embedded``), started in a temporary
directory; pytest-postgresql does not fit here because it runs ``initdb`` as the current user and
the test-suite runs as root, which initdb refuses.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import psycopg2
import pytest
from psycopg2 import sql
from sqlalchemy import Engine, create_engine

from portal import migrate, users
from portal.db import reset_engine
from portal.embedded import ClusterInfo, EmbeddedPostgres

# No per-example time limit (Hypothesis's default is 200 ms): on a busy machine a property test
# failed as "DeadlineExceeded" with nothing wrong in the code. Speed is measured in benchmarks/.
hypothesis.settings.register_profile("portal", deadline=None)
hypothesis.settings.load_profile("portal")

TEMPLATE = "portal_template"
PRODUCTION_BCRYPT_ROUNDS = users.BCRYPT_ROUNDS  # before _cheap_password_hashes lowers it


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ClusterInfo]:
    base = Path(tempfile.mkdtemp(prefix="portal-test-pg-", dir="/tmp"))
    base.chmod(0o755)
    cluster = EmbeddedPostgres(base)
    info = cluster.start()
    _superuser_exec(
        info,
        "postgres",
        "ALTER SYSTEM SET fsync = off",
        "ALTER SYSTEM SET synchronous_commit = off",
        "ALTER SYSTEM SET full_page_writes = off",
        "SELECT pg_reload_conf()",
    )
    try:
        yield info
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)  # a run left 70 MB in /tmp each time


def _superuser_exec(info: ClusterInfo, database: str, *statements: str | sql.Composable) -> None:
    conn = psycopg2.connect(**info.connect_kwargs("superuser", database))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def create_database(info: ClusterInfo, name: str, template: str = "template1") -> None:
    """A database owned by portal_owner that only portal_owner and portal_app may connect to."""
    ident = sql.Identifier(name)
    _superuser_exec(
        info,
        "postgres",
        sql.SQL("CREATE DATABASE {} OWNER portal_owner TEMPLATE {}").format(
            ident, sql.Identifier(template)
        ),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO portal_app").format(ident),
    )


def drop_database(info: ClusterInfo, name: str) -> None:
    _superuser_exec(
        info,
        "postgres",
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
    )


@pytest.fixture(scope="session")
def migrated_template(pg_cluster: ClusterInfo) -> str:
    create_database(pg_cluster, TEMPLATE)
    _superuser_exec(pg_cluster, TEMPLATE, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    migrate.upgrade(pg_cluster.url("owner", TEMPLATE))
    return TEMPLATE


@dataclass
class DatabaseHandle:
    """A fresh, migrated database and engines for each of its three roles."""

    info: ClusterInfo
    name: str
    app: Engine
    owner: Engine
    superuser: Engine

    def url(self, role: str) -> str:
        return self.info.url(role, self.name)  # type: ignore[arg-type]


@pytest.fixture
def fresh_db(
    pg_cluster: ClusterInfo, migrated_template: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DatabaseHandle]:
    """A new database cloned from the migrated template; ``portal.db`` points at it."""
    name = f"t_{secrets.token_hex(6)}"
    create_database(pg_cluster, name, template=migrated_template)
    monkeypatch.setenv("PORTAL_DATABASE_URL", pg_cluster.url("app", name))
    monkeypatch.setenv("PORTAL_MIGRATION_DATABASE_URL", pg_cluster.url("owner", name))
    monkeypatch.setenv("PORTAL_ENV", "dev")
    reset_engine()
    # Pooled, as the app's own engine is: a connection per Session cost 11 ms, more than most of
    # the queries a test sends through it (the audit search test opened 1,800 of them).
    engines = {
        role: create_engine(pg_cluster.url(role, name), pool_pre_ping=True)  # type: ignore[arg-type]
        for role in ("app", "owner", "superuser")
    }
    try:
        yield DatabaseHandle(pg_cluster, name, **engines)
    finally:
        reset_engine()
        for engine in engines.values():
            engine.dispose()
        drop_database(pg_cluster, name)


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    """Passwords the portal hashes in this process cost bcrypt's least (2**4 rounds), not the
    production 2**12 (``users.BCRYPT_ROUNDS``): the app and db tests hashed and checked about
    800 passwords, 35 s of a run. Servers and commands the tests start as processes keep the
    production cost, which tests/unit/test_passwords.py checks; the timing test of
    tests/db/test_signin.py puts it back for itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "BCRYPT_ROUNDS", 4)
        yield


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's PORTAL_* variables or .data directory."""
    for key in list(os.environ):
        if key.startswith("PORTAL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path / "data"))
    reset_engine()
    yield
    reset_engine()
