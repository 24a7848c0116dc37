"""Migrations build the whole schema on a fresh database, match the models, and undo cleanly;
the app role can only append to the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, inspect, pool, text
from sqlalchemy.exc import DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.orm import Session

from portal import migrate
from portal.embedded import ClusterInfo
from tests.conftest import DatabaseHandle, create_database, drop_database
from tests.factories import make_user

pytestmark = pytest.mark.db

AUDIT_TABLES = (
    "changeset",
    "row_change",
    "event",
    "upload",
    "chain_head",
    "bulk_load",
    "bulk_content",
    "event_chain_head",
)
# a plain (non-identity) column of each, so UPDATE reaches the privilege check
SOME_COLUMN = {
    "changeset": "kind",
    "row_change": "op",
    "event": "kind",
    "upload": "filename",
    "chain_head": "seq",
    "bulk_load": "row_count",
    "bulk_content": "compression",
    "event_chain_head": "seq",
}


@pytest.fixture
def empty_db(pg_cluster: ClusterInfo):
    name = "migrations_roundtrip"
    drop_database(pg_cluster, name)
    create_database(pg_cluster, name)
    yield pg_cluster.url("owner", name)
    drop_database(pg_cluster, name)


def _schemas(url: str) -> set[str]:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        names = set(conn.scalars(text("SELECT nspname FROM pg_namespace")))
    engine.dispose()
    return names & {"portal", "data", "audit"}


def test_upgrade_to_head_then_downgrade_to_base(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    assert _schemas(empty_db) == {"portal", "data", "audit"}
    engine = create_engine(empty_db, poolclass=pool.NullPool)
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        tables = {(s, t) for s in ("portal", "audit") for t in inspect(conn).get_table_names(s)}
    assert tables == {("portal", "users"), ("portal", "datasets")} | {
        ("audit", t) for t in AUDIT_TABLES
    }
    migrate.check(empty_db)  # raises if the models and the migrated schema differ

    migrate.downgrade(empty_db)
    assert _schemas(empty_db) == set()
    with engine.connect() as conn:
        assert migrate.current_revision(conn) is None
        functions = conn.scalar(
            text(
                "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'audit'"
            )
        )
    assert functions == 0
    migrate.upgrade(empty_db)  # and up again after a full round trip
    assert _schemas(empty_db) == {"portal", "data", "audit"}
    engine.dispose()


@pytest.mark.parametrize("table", AUDIT_TABLES)
@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit.{t} SET {c} = {c}", "DELETE FROM audit.{t}", "TRUNCATE audit.{t}"],
)
def test_app_role_cannot_rewrite_audit(
    fresh_db: DatabaseHandle, table: str, statement: str
) -> None:
    with fresh_db.app.connect() as conn, pytest.raises(ProgrammingError) as err:
        conn.execute(text(statement.format(t=table, c=SOME_COLUMN[table])))
    assert err.value.orig.pgcode == "42501"  # insufficient_privilege
    assert "permission denied" in str(err.value.orig)


def test_app_role_can_append_to_and_read_audit(fresh_db: DatabaseHandle) -> None:
    with fresh_db.app.begin() as conn:
        conn.execute(text("INSERT INTO audit.event (kind, actor_username) VALUES ('sign_in', 'a')"))
        changeset = conn.scalar(
            text(
                "INSERT INTO audit.changeset (kind, actor_username, actor_display_name)"
                " VALUES ('edit', 'a', 'A') RETURNING id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO audit.upload (changeset_id, actor_username, filename, size_bytes,"
                " sha256, mime_type, content) VALUES (:cs, 'a', 'f.csv', 1, 'x', 'text/csv',"
                " '\\x00')"
            ),
            {"cs": changeset},
        )
    with fresh_db.app.connect() as conn:
        for table in set(AUDIT_TABLES) - {"row_change", "bulk_load", "bulk_content"}:
            assert conn.scalar(text(f"SELECT count(*) FROM audit.{table}")) >= 1
        for table in ("row_change", "bulk_load", "bulk_content"):
            conn.execute(text(f"SELECT count(*) FROM audit.{table}"))
        # bulk contents are written by the app (audit.bulk), after the capture trigger wrote
        # their bulk load
        assert conn.scalar(text("SELECT has_table_privilege('audit.bulk_content', 'INSERT')"))


@pytest.mark.parametrize("table", ["row_change", "bulk_load"])
def test_only_capture_writes_row_changes_and_bulk_loads(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """They are filed under this transaction's changeset by the capture functions alone; by
    hand the app role could name any changeset (migration 0013)."""
    with fresh_db.app.connect() as conn, pytest.raises(ProgrammingError) as err:
        conn.execute(text(f"INSERT INTO audit.{table} DEFAULT VALUES"))
    assert err.value.orig.pgcode == "42501"  # insufficient_privilege


def test_app_role_privileges_on_data_and_portal(fresh_db: DatabaseHandle) -> None:
    with fresh_db.app.begin() as conn:
        conn.execute(text("CREATE TABLE data.t (_row_id bigint PRIMARY KEY)"))
        conn.execute(text("INSERT INTO data.t VALUES (1)"))
        conn.execute(text("UPDATE data.t SET _row_id = 2"))
        conn.execute(text("DELETE FROM data.t"))
        conn.execute(text("SELECT count(*) FROM portal.users"))
    with fresh_db.app.connect() as conn, pytest.raises(ProgrammingError):
        conn.execute(text("CREATE TABLE audit.evil (x int)"))
    with fresh_db.app.connect() as conn, pytest.raises(ProgrammingError):
        conn.execute(text("CREATE TABLE portal.evil (x int)"))


def test_0003_moves_captured_tables_to_generated_capture_and_0002_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """Tables captured under 0002 get their generated capture on upgrade and 0002's triggers
    back on downgrade; changesets sealed under either encoding keep verifying."""
    from sqlalchemy.orm import Session

    from audit.chain import verify
    from audit.changesets import open_changeset

    migrate.upgrade(empty_db, "0002")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    owner = create_engine(empty_db, poolclass=pool.NullPool)
    with app.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO portal.users (username, display_name, password_hash, role)"
                " VALUES ('ann', 'Ann', 'x', 'editor')"
            )
        )
        dataset = conn.scalar(
            text(
                "INSERT INTO portal.datasets (name, table_name, owner, spec)"
                " VALUES ('Old', 'ds_old', 'ann', '{}') RETURNING id"
            )
        )
        conn.execute(
            text(
                "CREATE TABLE data.ds_old (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY"
                " KEY, _version integer NOT NULL DEFAULT 1, name text, qty integer)"
            )
        )
        for name, timing, referencing in (
            ("audit_capture_insert", "INSERT", "NEW TABLE AS new_rows"),
            ("audit_capture_update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("audit_capture_delete", "DELETE", "OLD TABLE AS old_rows"),
        ):
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} AFTER {timing} ON data.ds_old REFERENCING"
                    f" {referencing} FOR EACH STATEMENT EXECUTE FUNCTION"
                    f" audit.capture('{dataset}')"
                )
            )

    def commit(statement: str) -> None:
        with Session(app) as s, s.begin():
            open_changeset(
                session=s,
                kind="edit",
                actor_username="ann",
                actor_display_name="Ann",
                dataset_id=dataset,
            )
            s.execute(text(statement))

    def capture_function() -> str:
        with owner.connect() as conn:
            return conn.scalar(
                text(
                    "SELECT DISTINCT tgfoid::regproc::text FROM pg_trigger"
                    " WHERE tgrelid = 'data.ds_old'::regclass AND tgname = 'audit_capture_update'"
                )
            )

    def chain_ok() -> bool:
        with Session(app) as s:
            result = verify(session=s)
        assert result.ok, result.summary()
        return result.ok

    commit("INSERT INTO data.ds_old (name, qty) VALUES ('a', 1), ('b', 2)")  # portal-audit/1
    migrate.upgrade(empty_db, "0003")
    assert capture_function().startswith("audit.capture_ds_old_")
    commit("UPDATE data.ds_old SET qty = qty + 10, _version = _version + 1")  # portal-audit/2
    assert chain_ok()
    with app.connect() as conn:
        last = conn.execute(
            text(
                "SELECT dataset_id, op, before, after FROM audit.row_change"
                " ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert tuple(last) == (dataset, "update", {"qty": 2}, {"qty": 12})

    migrate.downgrade(empty_db, "0002")
    assert capture_function() == "audit.capture"
    commit("DELETE FROM data.ds_old WHERE name = 'a'")  # portal-audit/1 again
    assert chain_ok()
    with owner.connect() as conn:
        generated = conn.scalar(
            text(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'audit'::regnamespace"
                " AND proname LIKE 'capture\\_%'"
            )
        )
        deleted = conn.scalar(text("SELECT deleted FROM audit.changeset ORDER BY seq DESC LIMIT 1"))
    assert (generated, deleted) == (0, 1)
    app.dispose()
    owner.dispose()


def test_0005_makes_dataset_unique_constraints_deferrable_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """A table created before 0005 gets a deferrable UNIQUE constraint of the same name, which
    lets one statement swap two values; the downgrade puts the non-deferrable one back."""
    migrate.upgrade(empty_db, "0004")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    owner = create_engine(empty_db, poolclass=pool.NullPool)
    with app.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE data.ds_u (_row_id bigint PRIMARY KEY, code text,"
                " CONSTRAINT uq_ds_u_code UNIQUE (code))"
            )
        )
        conn.execute(text("INSERT INTO data.ds_u VALUES (1, 'a'), (2, 'b')"))

    def deferrable() -> list[tuple[str, bool]]:
        with owner.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT conname, condeferrable FROM pg_constraint"
                        " WHERE conrelid = 'data.ds_u'::regclass AND contype = 'u'"
                    )
                )
            ]

    swap = text("UPDATE data.ds_u SET code = CASE code WHEN 'a' THEN 'b' ELSE 'a' END")
    assert deferrable() == [("uq_ds_u_code", False)]
    with pytest.raises(IntegrityError), app.begin() as conn:
        conn.execute(swap)
    migrate.upgrade(empty_db, "0005")
    assert deferrable() == [("uq_ds_u_code", True)]
    with app.begin() as conn:
        conn.execute(swap)
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(text("UPDATE data.ds_u SET code = 'a'"))
    migrate.downgrade(empty_db, "0004")
    assert deferrable() == [("uq_ds_u_code", False)]
    app.dispose()
    owner.dispose()


def _capture_before_0007(app: Engine, table: str, dataset_id: int) -> None:
    """``install_capture`` as it was before migration 0007, whose ``_row_id`` guard an older
    schema lacks: the generated function and its three triggers."""
    with app.begin() as conn:
        function = conn.scalar(
            text("SELECT audit.generate_capture(CAST(:t AS regclass))"), {"t": f"data.{table}"}
        )
        for op, referencing in (
            ("insert", "NEW TABLE AS new_rows"),
            ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("delete", "OLD TABLE AS old_rows"),
        ):
            conn.execute(
                text(
                    f"CREATE OR REPLACE TRIGGER audit_capture_{op} AFTER {op.upper()}"
                    f" ON data.{table} REFERENCING {referencing}"
                    f" FOR EACH STATEMENT EXECUTE FUNCTION {function}('{dataset_id}')"
                )
            )


def test_0006_plans_the_changed_columns_pass_per_statement_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """A table captured before 0006 gets its capture function regenerated with the pass run by
    EXECUTE; capture works the same either way; the downgrade puts the static query back."""
    migrate.upgrade(empty_db, "0005")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    owner = create_engine(empty_db, poolclass=pool.NullPool)
    with app.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE data.ds_p (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " _version integer NOT NULL DEFAULT 1, qty integer)"
            )
        )
        conn.execute(text("INSERT INTO data.ds_p (qty) VALUES (1), (2)"))
    _capture_before_0007(app, "ds_p", 3)

    def source() -> str:
        with owner.connect() as conn:
            return str(
                conn.scalar(
                    text(
                        "SELECT p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                        " WHERE t.tgrelid = 'data.ds_p'::regclass"
                        " AND t.tgname = 'audit_capture_update'"
                    )
                )
            )

    def captured_update(qty: int) -> list[tuple[object, ...]]:
        with app.begin() as conn:
            conn.execute(text("UPDATE data.ds_p SET qty = :q WHERE _row_id = 1"), {"q": qty})
            return [
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT row_id, before, after FROM audit.row_change"
                        " WHERE op = 'update' ORDER BY id DESC LIMIT 1"
                    )
                )
            ]

    static = "FROM old_rows o JOIN new_rows n USING (_row_id);"
    assert static in source()
    assert captured_update(5) == [(1, {"qty": 1}, {"qty": 5})]
    migrate.upgrade(empty_db, "0006")
    assert static not in source()
    assert "EXECUTE 'SELECT ARRAY[bool_or(o.qty IS DISTINCT FROM n.qty)]" in source()
    assert captured_update(6) == [(1, {"qty": 5}, {"qty": 6})]
    _capture_before_0007(app, "ds_p", 3)  # a table created from now on gets the same
    assert static not in source()
    migrate.downgrade(empty_db, "0005")
    assert static in source()
    assert captured_update(7) == [(1, {"qty": 6}, {"qty": 7})]
    app.dispose()
    owner.dispose()


def test_0007_guards_row_ids_and_the_out_of_band_setting_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """A table captured before 0007 gets the refusal of a changed ``_row_id``; the out-of-band
    setting is checked from 0007 on; the downgrade takes both back."""
    migrate.upgrade(empty_db, "0006")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    with app.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE data.ds_g (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " _version integer NOT NULL DEFAULT 1, qty integer)"
            )
        )
    _capture_before_0007(app, "ds_g", 3)
    with app.begin() as conn:
        conn.execute(text("INSERT INTO data.ds_g (qty) VALUES (1)"))

    def refusal(*statements: str) -> str:
        """What PostgreSQL says to the statements (rolled back), "" if it runs them."""
        with app.connect() as conn:
            try:
                for statement in statements:
                    conn.execute(text(statement))
            except DBAPIError as exc:
                return str(exc.orig)
            finally:
                conn.rollback()
        return ""

    renumber = ("UPDATE data.ds_g SET _row_id = DEFAULT",)
    # changeset 1 is the sealed out-of-band changeset of the INSERT above
    forged = ("SET LOCAL audit.out_of_band_changeset_id = '1'", "UPDATE data.ds_g SET qty = 2")
    assert refusal(*renumber) == ""
    assert refusal(*forged) == ""
    migrate.upgrade(empty_db, "0007")
    assert "_row_id of a row of audited table data.ds_g cannot be changed" in refusal(*renumber)
    assert "= 1 is not the out-of-band changeset of this transaction" in refusal(*forged)
    migrate.downgrade(empty_db, "0006")
    assert refusal(*renumber) == ""
    assert refusal(*forged) == ""
    app.dispose()


def test_0009_seals_under_portal_audit_3_and_earlier_changesets_keep_verifying(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """Changesets sealed under v2 before 0009, under v3 after it, and under v2 again after the
    downgrade all verify; nothing sealed is rewritten."""
    from sqlalchemy.orm import Session

    from audit.chain import verify
    from audit.changesets import open_changeset

    migrate.upgrade(empty_db, "0007")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    with app.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE data.ds_v (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " _version integer NOT NULL DEFAULT 1, qty integer)"
            )
        )
    _capture_before_0007(app, "ds_v", 4)

    def commit(qty: int) -> str:
        """A changeset writing one row; the tag its header is sealed under."""
        with Session(app) as s, s.begin():
            cs = open_changeset(
                session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=4
            )
            s.execute(text("INSERT INTO data.ds_v (qty) VALUES (:q)"), {"q": qty})
        with app.connect() as conn:
            header = conn.scalar(
                text("SELECT audit.changeset_header(c) FROM audit.changeset c WHERE id = :id"),
                {"id": cs},
            )
        return str(header).split('"')[1]

    def verified() -> bool:
        with Session(app) as s:
            return verify(session=s).ok

    assert commit(1) == "portal-audit/2"
    migrate.upgrade(empty_db, "0009")
    assert commit(2) == "portal-audit/3"
    assert verified()
    migrate.downgrade(empty_db, "0007")
    assert commit(3) == "portal-audit/2"
    assert verified()
    app.dispose()


def test_0008_chains_existing_events_and_back(pg_cluster: ClusterInfo, empty_db: str) -> None:
    """Events recorded before 0008 are chained in id order on upgrade, new ones after them by
    the trigger; the downgrade takes the chain away and keeps the events."""
    from sqlalchemy.orm import Session

    from audit.event_chain import verify_events

    migrate.upgrade(empty_db, "0007")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    owner = create_engine(empty_db, poolclass=pool.NullPool)
    with app.begin() as conn:
        for who in ("ann", "bob", "cy"):
            conn.execute(
                text(
                    "INSERT INTO audit.event (kind, actor_username, detail)"
                    " VALUES ('sign_in', :who, jsonb_build_object('who', CAST(:who AS text)))"
                ),
                {"who": who},
            )

    def chain() -> list[tuple[object, ...]]:
        with owner.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    text("SELECT actor_username, seq FROM audit.event ORDER BY id")
                )
            ]

    def verified():
        with Session(app) as s:
            return verify_events(session=s)

    migrate.upgrade(empty_db, "0008")
    assert chain() == [("ann", 1), ("bob", 2), ("cy", 3)]
    result = verified()
    assert (result.ok, result.count, result.head.seq) == (True, 3, 3), result.summary()
    with app.begin() as conn:
        conn.execute(
            text("INSERT INTO audit.event (kind, actor_username) VALUES ('sign_out', 'ann')")
        )
    assert chain()[-1] == ("ann", 4)
    assert verified().ok
    with owner.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE audit.event SET actor_username = 'x'"))  # guard back on

    migrate.downgrade(empty_db, "0007")
    with owner.connect() as conn:
        columns = set(
            conn.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = 'audit' AND table_name = 'event'"
                )
            )
        )
        leftovers = conn.scalar(
            text(
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'audit'::regnamespace"
                " AND proname IN ('chain_event', 'event_hash', 'guard_event_chain_head_update')"
            )
        )
        head = conn.scalar(text("SELECT to_regclass('audit.event_chain_head')"))
        kept = conn.scalar(text("SELECT count(*) FROM audit.event"))
    assert not columns & {"seq", "prev_hash", "hash"}
    assert (leftovers, head, kept) == (0, None, 4)
    with app.begin() as conn:  # and events are recorded as before 0008
        conn.execute(text("INSERT INTO audit.event (kind, actor_username) VALUES ('sign_in', 'x')"))
    migrate.upgrade(empty_db, "0008")  # up again: the five events chained afresh
    assert [seq for _, seq in chain()] == [1, 2, 3, 4, 5]
    assert verified().ok
    app.dispose()
    owner.dispose()


def test_0010_bumps_versions_and_opens_an_out_of_band_changeset_per_dataset_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    migrate.upgrade(empty_db, "0009")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    for name, dataset_id in (("ds_x", 5), ("ds_y", 6)):
        with app.begin() as conn:
            conn.execute(
                text(
                    f"CREATE TABLE data.{name} (_row_id bigint GENERATED ALWAYS AS IDENTITY"
                    " PRIMARY KEY, _version integer NOT NULL DEFAULT 1, qty integer)"
                )
            )
        _capture_before_0007(app, name, dataset_id)

    def psql_transaction() -> tuple[int, int]:
        """A write to both tables in one transaction: (ds_x's row version after an UPDATE that
        leaves it, how many out-of-band changesets it opened)."""
        with app.begin() as conn:
            before = conn.scalar(text("SELECT count(*) FROM audit.changeset"))
            conn.execute(text("INSERT INTO data.ds_x (qty) VALUES (1)"))
            conn.execute(text("INSERT INTO data.ds_y (qty) VALUES (1)"))
            conn.execute(text("UPDATE data.ds_x SET qty = qty + 1"))
            version = conn.scalar(text("SELECT max(_version) FROM data.ds_x"))
            opened = conn.scalar(text("SELECT count(*) FROM audit.changeset")) - before
            conn.execute(text("DELETE FROM data.ds_x"))
        return version, opened

    assert psql_transaction() == (1, 1)
    migrate.upgrade(empty_db, "0010")
    _capture_before_0007(app, "ds_x", 5)  # the trigger stays on a regenerated capture
    assert psql_transaction() == (2, 2)
    migrate.downgrade(empty_db, "0009")
    assert psql_transaction() == (1, 1)
    app.dispose()


def test_0011_takes_an_events_and_an_uploads_time_from_the_server_clock_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """Before 0011 an INSERT chose the event's and the kept upload's time; from 0011 the
    database's clock does; the downgrade gives the choice back. Events of every stage keep
    verifying."""
    from sqlalchemy.orm import Session

    from audit.event_chain import verify_events

    migrate.upgrade(empty_db, "0010")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)

    def backdated() -> str:
        """The year of an event inserted with occurred_at = 2000-01-01, and the chain verified."""
        with app.begin() as conn:
            stored = conn.scalar(
                text(
                    "INSERT INTO audit.event (occurred_at, kind, actor_username)"
                    " VALUES ('2000-01-01', 'sign_in', 'ann')"
                    " RETURNING CASE WHEN occurred_at > now() - interval '1 minute'"
                    " THEN 'now' ELSE to_char(occurred_at, 'YYYY') END"
                )
            )
            upload = conn.scalar(
                text(
                    "INSERT INTO audit.upload (actor_username, filename, size_bytes, sha256,"
                    " mime_type, content, received_at) VALUES ('ann', 'a.csv', 0, '',"
                    " 'text/csv', '', '2000-01-01')"
                    " RETURNING CASE WHEN received_at > now() - interval '1 minute'"
                    " THEN 'now' ELSE to_char(received_at, 'YYYY') END"
                )
            )
        assert upload == stored
        with Session(app) as s:
            result = verify_events(session=s)
        assert result.ok, result.summary()
        return stored

    assert backdated() == "2000"
    migrate.upgrade(empty_db, "0011")
    assert backdated() == "now"
    migrate.downgrade(empty_db, "0010")
    assert backdated() == "2000"
    app.dispose()


def test_0012_refuses_to_capture_a_column_name_with_a_dollar_sign_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    """From 0012 on, capture generation refuses a table with a ``$`` in a column name (it could
    end the generated function's ``$body$`` quoting); dataset tables are captured as before;
    the downgrade takes the refusal out."""
    migrate.upgrade(empty_db, "0011")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    with app.begin() as conn:
        for name, column in (("ds_plain", "qty"), ("ds_dollar", '"qty$"')):
            conn.execute(
                text(
                    f"CREATE TABLE data.{name} (_row_id bigint GENERATED ALWAYS AS IDENTITY"
                    f" PRIMARY KEY, _version integer NOT NULL DEFAULT 1, {column} integer)"
                )
            )

    def refusal(table: str) -> str:
        """What PostgreSQL says to generating the table's capture (rolled back), "" if it
        generates it."""
        with app.connect() as conn:
            try:
                conn.execute(text(f"SELECT audit.generate_capture('data.{table}'::regclass)"))
            except DBAPIError as exc:
                return str(exc.orig)
            finally:
                conn.rollback()
        return ""

    assert (refusal("ds_plain"), refusal("ds_dollar")) == ("", "")
    migrate.upgrade(empty_db, "0012")
    assert refusal("ds_plain") == ""
    assert "data.ds_dollar has a column whose name contains a dollar sign" in refusal("ds_dollar")
    migrate.downgrade(empty_db, "0011")
    assert (refusal("ds_plain"), refusal("ds_dollar")) == ("", "")
    app.dispose()


def test_0013_takes_the_insert_of_row_changes_and_bulk_loads_from_the_app_role_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    migrate.upgrade(empty_db, "0012")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)

    def may_insert() -> list[bool]:
        with app.connect() as conn:
            return [
                conn.scalar(text(f"SELECT has_table_privilege('audit.{t}', 'INSERT')"))
                for t in ("row_change", "bulk_load", "bulk_content", "changeset")
            ]

    assert may_insert() == [True, True, True, True]
    migrate.upgrade(empty_db, "0013")
    assert may_insert() == [False, False, True, True]
    migrate.downgrade(empty_db, "0012")
    assert may_insert() == [True, True, True, True]
    app.dispose()


def test_0014_files_a_write_only_under_a_changeset_of_its_dataset_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    migrate.upgrade(empty_db, "0013")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    with app.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE data.ds_m (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " _version integer NOT NULL DEFAULT 1, qty integer)"
            )
        )
    _capture_before_0007(app, "ds_m", 5)

    def refusal(opened_for: int) -> str:
        """What PostgreSQL says to a write to ds_m (dataset 5) under a changeset of dataset
        ``opened_for`` (rolled back), "" if it takes it."""
        with app.connect() as conn:
            try:
                conn.execute(
                    text(
                        "WITH i AS (INSERT INTO audit.changeset (kind, dataset_id,"
                        " actor_username, actor_display_name) VALUES ('edit', :ds, 'ann', 'Ann')"
                        " RETURNING id) SELECT set_config('portal.changeset_id', id::text, true)"
                        " FROM i"
                    ),
                    {"ds": opened_for},
                )
                conn.execute(text("INSERT INTO data.ds_m (qty) VALUES (1)"))
            except DBAPIError as exc:
                return str(exc.orig)
            finally:
                conn.rollback()
        return ""

    assert (refusal(5), refusal(6)) == ("", "")
    migrate.upgrade(empty_db, "0014")
    assert refusal(5) == ""
    assert "is not of dataset 5, whose table this writes" in refusal(6)
    migrate.downgrade(empty_db, "0013")
    assert (refusal(5), refusal(6)) == ("", "")
    app.dispose()


def test_0015_keeps_an_upload_only_with_its_own_open_changeset_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    migrate.upgrade(empty_db, "0014")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)

    def refusal(own: bool) -> str:
        """What PostgreSQL says to an upload kept under this transaction's changeset (``own``)
        or under none (rolled back), "" if it takes it."""
        with app.connect() as conn:
            try:
                changeset = conn.scalar(
                    text(
                        "INSERT INTO audit.changeset (kind, actor_username, actor_display_name)"
                        " VALUES ('edit', 'ann', 'Ann') RETURNING id"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO audit.upload (changeset_id, actor_username, filename,"
                        " size_bytes, sha256, mime_type, content) VALUES (:cs, 'ann', 'f.csv',"
                        " 1, 'x', 'text/csv', '\\x00')"
                    ),
                    {"cs": changeset if own else None},
                )
            except DBAPIError as exc:
                return str(exc.orig)
            finally:
                conn.rollback()
        return ""

    assert (refusal(own=True), refusal(own=False)) == ("", "")
    migrate.upgrade(empty_db, "0015")
    assert refusal(own=True) == ""
    assert "kept only with an open changeset of its own transaction" in refusal(own=False)
    migrate.downgrade(empty_db, "0014")
    assert (refusal(own=True), refusal(own=False)) == ("", "")
    app.dispose()


def test_0016_counts_out_of_band_inserts_and_deletes_in_the_row_count_and_back(
    pg_cluster: ClusterInfo, empty_db: str
) -> None:
    migrate.upgrade(empty_db, "0015")
    app = create_engine(pg_cluster.url("app", "migrations_roundtrip"), poolclass=pool.NullPool)
    with Session(app) as s, s.begin():
        owner, _ = make_user(s, role="editor")
    with app.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE data.ds_m (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " _version integer NOT NULL DEFAULT 1, qty integer)"
            )
        )
        dataset = conn.scalar(
            text(
                "INSERT INTO portal.datasets (name, table_name, owner, spec, row_count)"
                " VALUES ('M', 'ds_m', :o, '{}', 0) RETURNING id"
            ),
            {"o": owner},
        )
    _capture_before_0007(app, "ds_m", dataset)

    def count_after_adding(rows: int) -> int:
        """The dataset's row count after ``rows`` rows are inserted outside the portal."""
        with app.begin() as conn:
            conn.execute(
                text("INSERT INTO data.ds_m (qty) SELECT 1 FROM generate_series(1, :n)"),
                {"n": rows},
            )
        with app.connect() as conn:
            return int(conn.scalar(text("SELECT row_count FROM portal.datasets")))

    assert count_after_adding(2) == 0
    migrate.upgrade(empty_db, "0016")
    assert count_after_adding(3) == 3  # the two before 0016 stay uncounted
    migrate.downgrade(empty_db, "0015")
    assert count_after_adding(1) == 3
    app.dispose()
