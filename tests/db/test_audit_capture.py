"""Every write to a data table is captured: through a changeset, or as out_of_band; rollbacks
leave nothing; the audit tables refuse rewrites from every role."""

from __future__ import annotations

import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, InternalError, ProgrammingError
from sqlalchemy.orm import Session

from audit.capture import install_capture
from audit.chain import verify
from audit.changesets import close_changeset, open_changeset
from audit.events import record_event
from tests.conftest import DatabaseHandle
from tests.factories import make_captured_table

pytestmark = pytest.mark.db

DATASET = 7


@pytest.fixture
def table(fresh_db: DatabaseHandle) -> str:
    with Session(fresh_db.app) as session, session.begin():
        return make_captured_table(session, dataset_id=DATASET)


def _changesets(db: DatabaseHandle) -> list[dict]:
    with db.app.connect() as conn:
        return [
            dict(r._mapping)
            for r in conn.execute(
                text(
                    "SELECT id, seq, kind, dataset_id, actor_username, actor_display_name, reason,"
                    " inserted, updated, deleted, hash, prev_hash FROM audit.changeset ORDER BY id"
                )
            )
        ]


def _row_changes(db: DatabaseHandle, changeset_id: int | None = None) -> list[tuple]:
    with db.app.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT changeset_id, dataset_id, row_id, op, before, after"
                    " FROM audit.row_change WHERE :cs IS NULL OR changeset_id = :cs ORDER BY id"
                ),
                {"cs": changeset_id},
            )
        ]


def test_changeset_captures_inserts_updates_deletes_in_order(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        cs1 = open_changeset(
            session=s,
            kind="upload",
            actor_username="ann",
            actor_display_name="Ann A.",
            dataset_id=DATASET,
            reason="load",
        )
        s.execute(
            text(
                f"INSERT INTO data.{table} (name, qty, price) VALUES"
                " ('apple', 1, 0.50), ('pear', 2, 1.25), ('plum', 3, NULL)"
            )
        )
        counts = close_changeset(session=s, changeset_id=cs1)
    assert (counts.inserted, counts.updated, counts.deleted) == (3, 0, 0)

    with Session(fresh_db.app) as s, s.begin():
        cs2 = open_changeset(
            session=s,
            kind="edit",
            actor_username="bob",
            actor_display_name="Bob B.",
            dataset_id=DATASET,
            reason="fix",
        )
        s.execute(
            text(
                f"UPDATE data.{table} SET qty = qty * 10, _version = _version + 1"
                " WHERE name IN ('pear', 'apple')"
            )
        )
        s.execute(text(f"UPDATE data.{table} SET qty = qty WHERE name = 'plum'"))  # no change
        s.execute(text(f"DELETE FROM data.{table} WHERE name = 'plum'"))

    assert _row_changes(fresh_db, cs1) == [
        (cs1, DATASET, 1, "insert", None, {"name": "apple", "qty": 1, "price": 0.5, "note": None}),
        (cs1, DATASET, 2, "insert", None, {"name": "pear", "qty": 2, "price": 1.25, "note": None}),
        (cs1, DATASET, 3, "insert", None, {"name": "plum", "qty": 3, "price": None, "note": None}),
    ]
    assert _row_changes(fresh_db, cs2) == [
        (
            cs2,
            DATASET,
            1,
            "update",
            {"qty": 1},  # only the changed cells
            {"qty": 10},
        ),
        (
            cs2,
            DATASET,
            2,
            "update",
            {"qty": 2},
            {"qty": 20},
        ),
        (cs2, DATASET, 3, "delete", {"name": "plum", "qty": 3, "price": None, "note": None}, None),
    ]
    first, second = _changesets(fresh_db)
    assert first | {"hash": None, "prev_hash": None} == {
        "id": cs1,
        "seq": 1,
        "kind": "upload",
        "dataset_id": DATASET,
        "actor_username": "ann",
        "actor_display_name": "Ann A.",
        "reason": "load",
        "inserted": 3,
        "updated": 0,
        "deleted": 0,
        "hash": None,
        "prev_hash": None,
    }
    assert (second["seq"], second["inserted"], second["updated"], second["deleted"]) == (2, 0, 2, 1)
    assert first["prev_hash"] == "0" * 64
    assert second["prev_hash"] == first["hash"]
    assert len(second["hash"]) == 64


def test_numeric_text_is_kept_exactly(fresh_db: DatabaseHandle, table: str) -> None:
    with Session(fresh_db.app) as s, s.begin():
        open_changeset(
            session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        s.execute(
            text(
                f"INSERT INTO data.{table} (name, price, note) VALUES"
                " ('x', 10.10, '<script>alert(1)</script> ☃ \"q\" \\ \t')"
            )
        )
    with fresh_db.app.connect() as conn:
        after = conn.scalar(text("SELECT after::text FROM audit.row_change"))
    assert '"price": 10.10' in after
    assert "<script>alert(1)</script> ☃" in after


def test_write_without_changeset_is_out_of_band_one_per_transaction(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with fresh_db.app.begin() as conn:  # as if from psql, with the app's credentials
        conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1)"))
        conn.execute(text(f"UPDATE data.{table} SET qty = 2"))
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"DELETE FROM data.{table}"))
    changesets = _changesets(fresh_db)
    assert [(c["kind"], c["actor_username"], c["dataset_id"], c["seq"]) for c in changesets] == [
        ("out_of_band", "portal_app", DATASET, 1),
        ("out_of_band", "postgres", DATASET, 2),
    ]
    assert [(c["inserted"], c["updated"], c["deleted"]) for c in changesets] == [
        (1, 1, 0),
        (0, 0, 1),
    ]
    assert [op for _, _, _, op, _, _ in _row_changes(fresh_db)] == ["insert", "update", "delete"]


def test_rollback_leaves_no_audit_rows(fresh_db: DatabaseHandle, table: str) -> None:
    with Session(fresh_db.app) as s:
        s.begin()
        open_changeset(
            session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        s.execute(text(f"INSERT INTO data.{table} (name) VALUES ('gone')"))
        s.rollback()
    with fresh_db.superuser.connect() as conn:  # an out-of-band write rolled back, too
        conn.execute(text(f"INSERT INTO data.{table} (name) VALUES ('gone too')"))
        conn.rollback()
    assert _changesets(fresh_db) == []
    assert _row_changes(fresh_db) == []


def test_failing_statement_mid_changeset_leaves_nothing(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, pytest.raises(IntegrityError), s.begin():
        open_changeset(
            session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        s.execute(text(f"INSERT INTO data.{table} (name) VALUES ('dup')"))
        s.execute(text(f"INSERT INTO data.{table} (name) VALUES ('dup')"))  # unique violation
    assert _changesets(fresh_db) == []
    assert _row_changes(fresh_db) == []
    with fresh_db.app.connect() as conn:
        assert conn.execute(text("SELECT seq, hash FROM audit.chain_head")).one() == (0, "0" * 64)


def test_truncate_of_a_data_table_is_refused(fresh_db: DatabaseHandle, table: str) -> None:
    with fresh_db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO data.{table} (name) VALUES ('kept')"))
    for engine in (fresh_db.app, fresh_db.superuser):  # the table's owner, and a superuser
        with engine.connect() as conn, pytest.raises(DBAPIError, match="TRUNCATE of audited"):
            conn.execute(text(f"TRUNCATE data.{table}"))
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text(f"SELECT count(*) FROM data.{table}")) == 1


def test_changeset_id_of_another_transaction_is_refused(
    fresh_db: DatabaseHandle, table: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        sealed = open_changeset(
            session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
    with fresh_db.app.connect() as conn, pytest.raises(DBAPIError, match="not an open changeset"):
        conn.execute(text(f"SET portal.changeset_id = '{sealed}'"))
        conn.execute(text(f"INSERT INTO data.{table} (name) VALUES ('smuggled')"))
    assert _row_changes(fresh_db) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE data.{t} SET _row_id = DEFAULT, qty = 999 WHERE name = 'a'",
        "UPDATE data.{t} SET _row_id = DEFAULT",
        "INSERT INTO data.{t} (name) VALUES ('a')"
        " ON CONFLICT (name) DO UPDATE SET _row_id = DEFAULT, qty = 999",
        "MERGE INTO data.{t} t USING (VALUES ('b')) v(name) ON t.name = v.name"
        " WHEN MATCHED THEN UPDATE SET _row_id = DEFAULT",
    ],
)
def test_an_update_of_row_id_is_refused(
    fresh_db: DatabaseHandle, table: str, statement: str
) -> None:
    """Capture pairs an UPDATE's old and new rows by ``_row_id``: a row given a new id would
    change unrecorded, so no role may set it (PostgreSQL refuses any value but DEFAULT to a
    ``GENERATED ALWAYS`` column; the capture's trigger refuses DEFAULT)."""
    with fresh_db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1), ('b', 2)"))
    for engine in (fresh_db.app, fresh_db.superuser):
        with engine.connect() as conn, pytest.raises(DBAPIError, match="_row_id of a row"):
            conn.execute(text(statement.format(t=table)))
    with fresh_db.app.connect() as conn:
        rows = conn.execute(text(f"SELECT _row_id, name, qty FROM data.{table} ORDER BY 1"))
        assert [tuple(r) for r in rows] == [(1, "a", 1), (2, "b", 2)]
    assert [op for _, _, _, op, _, _ in _row_changes(fresh_db)] == ["insert", "insert"]


def _open_edit_elsewhere(db: DatabaseHandle) -> tuple[Session, int]:
    """A session whose transaction has an open edit changeset (the caller commits it)."""
    other = Session(db.app)
    other.begin()
    changeset = open_changeset(
        session=other,
        kind="edit",
        actor_username="bob",
        actor_display_name="Bob",
        dataset_id=DATASET,
        reason="fix a typo",
    )
    other.execute(text("SELECT 1"))
    return other, changeset


@pytest.mark.parametrize("target", ["open edit of another transaction", "sealed", "not a number"])
def test_the_out_of_band_setting_cannot_file_a_write_under_another_changeset(
    fresh_db: DatabaseHandle, table: str, target: str
) -> None:
    """``audit.out_of_band_changeset_<dataset>`` remembers a transaction's out-of-band changeset
    of a dataset, and anyone can set it: it is trusted only for the one this transaction
    opened."""
    with fresh_db.app.begin() as conn:  # a sealed out-of-band changeset
        conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1)"))
    [sealed] = [c["id"] for c in _changesets(fresh_db)]
    other, open_edit = _open_edit_elsewhere(fresh_db)
    value = {"open edit of another transaction": open_edit, "sealed": sealed}.get(target, "x1")
    try:
        with fresh_db.app.connect() as conn, pytest.raises(DBAPIError, match="not the out-of-band"):
            conn.execute(
                text(f"SELECT set_config('audit.out_of_band_changeset_{DATASET}', :v, true)"),
                {"v": str(value)},
            )
            conn.execute(text(f"UPDATE data.{table} SET qty = 31337"))
        other.execute(text(f"UPDATE data.{table} SET note = 'typo fixed'"))
        other.commit()
    finally:
        other.close()
    with fresh_db.app.connect() as conn:
        assert conn.execute(text(f"SELECT qty, note FROM data.{table}")).one() == (1, "typo fixed")
    assert [(cs, op, after) for cs, _, _, op, _, after in _row_changes(fresh_db)] == [
        (sealed, "insert", {"name": "a", "qty": 1, "price": None, "note": None}),
        (open_edit, "update", {"note": "typo fixed"}),
    ]


FORGED_ROWS = {
    "row_change": "INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, before)"
    f" VALUES (:cs, {DATASET}, 99, 'delete', '{{\"name\": \"never there\"}}')",
    "bulk_load": "INSERT INTO audit.bulk_load (changeset_id, dataset_id, first_row_id,"
    f" last_row_id, row_count, columns) VALUES (:cs, {DATASET}, 99, 99, 1, '[]')",
}


@pytest.mark.parametrize("table_name", list(FORGED_ROWS))
@pytest.mark.parametrize("target", ["open edit of another transaction", "sealed", "next"])
def test_the_app_role_cannot_file_row_changes_under_a_changeset_by_hand(
    fresh_db: DatabaseHandle, table: str, table_name: str, target: str
) -> None:
    """Only capture writes row changes and bulk loads. The app role could insert them itself,
    naming any changeset: another person's, still open in another transaction, or the id the
    next changeset would get, took them in and was sealed with them, and the chain verified
    intact over a deletion that never happened."""
    with fresh_db.app.begin() as conn:  # a sealed out-of-band changeset
        conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1)"))
    [sealed] = [c["id"] for c in _changesets(fresh_db)]
    other, open_edit = _open_edit_elsewhere(fresh_db)
    cs = {"open edit of another transaction": open_edit, "sealed": sealed}.get(
        target, open_edit + 1
    )
    try:
        with fresh_db.app.connect() as conn, pytest.raises(DBAPIError) as err:
            conn.execute(text(FORGED_ROWS[table_name]), {"cs": cs})
        other.execute(text(f"UPDATE data.{table} SET note = 'typo fixed'"))
        other.commit()
    finally:
        other.close()
    assert err.value.orig.pgcode == "42501"  # insufficient_privilege
    with Session(fresh_db.app) as s, s.begin():  # the next changeset
        open_changeset(
            session=s, kind="edit", actor_username="cy", actor_display_name="Cy", dataset_id=DATASET
        )
        s.execute(text(f"UPDATE data.{table} SET qty = 2"))
    assert [(cs, op) for cs, _, _, op, _, _ in _row_changes(fresh_db)] == [
        (sealed, "insert"),
        (open_edit, "update"),
        (open_edit + 1, "update"),
    ]
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.bulk_load")) == 0
    with Session(fresh_db.app) as s:
        assert verify(session=s).ok


def test_an_out_of_band_transaction_writing_two_datasets_opens_one_changeset_for_each(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """So each dataset's History lists the changeset that changed it, and a revert of it
    touches only its own dataset."""
    with Session(fresh_db.app) as s, s.begin():
        other = make_captured_table(s, dataset_id=DATASET + 1)
    with fresh_db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO data.{table} (name) VALUES ('a')"))
        conn.execute(text(f"INSERT INTO data.{other} (name) VALUES ('b')"))
        conn.execute(text(f"UPDATE data.{table} SET qty = 2"))
    changesets = {c["id"]: c for c in _changesets(fresh_db)}
    assert [(c["kind"], c["dataset_id"]) for c in changesets.values()] == [
        ("out_of_band", DATASET),
        ("out_of_band", DATASET + 1),
    ]
    assert [
        (changesets[cs]["dataset_id"], ds, op) for cs, ds, _, op, _, _ in _row_changes(fresh_db)
    ] == [
        (DATASET, DATASET, "insert"),
        (DATASET + 1, DATASET + 1, "insert"),
        (DATASET, DATASET, "update"),
    ]


@pytest.mark.parametrize("opened_for", [DATASET + 1, None])
def test_a_changeset_takes_only_the_writes_of_its_own_dataset(
    fresh_db: DatabaseHandle, table: str, opened_for: int | None
) -> None:
    """A dataset's History and the Audit page's dataset filter list the changesets of that
    dataset: a write to its table filed under a changeset of another dataset, or of none, was
    sealed and listed under neither, the chain intact."""
    with Session(fresh_db.app) as s, s.begin():
        s.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1)"))
    with (
        Session(fresh_db.app) as s,
        pytest.raises(DBAPIError, match="not of dataset 7"),
        s.begin(),
    ):
        open_changeset(
            session=s,
            kind="edit",
            actor_username="ann",
            actor_display_name="Ann",
            dataset_id=opened_for,
        )
        s.execute(text(f"UPDATE data.{table} SET qty = 2"))
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text(f"SELECT qty FROM data.{table}")) == 1
    assert [op for _, _, _, op, _, _ in _row_changes(fresh_db)] == ["insert"]


def test_an_update_that_leaves_the_version_bumps_it(fresh_db: DatabaseHandle, table: str) -> None:
    """Optimistic concurrency compares ``_version``: a write from psql moves it too."""
    with fresh_db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1), ('b', 2)"))
        conn.execute(text(f"UPDATE data.{table} SET qty = qty + 1 WHERE name = 'a'"))
        conn.execute(
            text(f"UPDATE data.{table} SET qty = 9, _version = _version + 5 WHERE name = 'b'")
        )
        rows = conn.execute(text(f"SELECT name, qty, _version FROM data.{table} ORDER BY name"))
        assert [tuple(r) for r in rows] == [("a", 2, 2), ("b", 9, 6)]


def test_out_of_band_writes_of_one_transaction_share_its_own_changeset(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """While another transaction has a changeset open, an out-of-band transaction's writes all
    go to the out-of-band changeset it opened itself, with its database user as the actor."""
    other, open_edit = _open_edit_elsewhere(fresh_db)
    try:
        with fresh_db.app.begin() as conn:
            conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1)"))
            conn.execute(text(f"UPDATE data.{table} SET qty = 2"))
        other.commit()
    finally:
        other.close()
    changesets = {c["id"]: c for c in _changesets(fresh_db)}
    [(mine, op1), (again, op2)] = [(cs, op) for cs, _, _, op, _, _ in _row_changes(fresh_db)]
    assert (mine, op1, op2) == (again, "insert", "update")
    assert mine != open_edit
    assert (changesets[mine]["kind"], changesets[mine]["actor_username"]) == (
        "out_of_band",
        "portal_app",
    )
    assert changesets[open_edit]["updated"] == 0


@pytest.mark.parametrize("role", ["owner", "superuser"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.changeset SET reason = 'rewritten'",
        "UPDATE audit.changeset SET hash = NULL",
        "DELETE FROM audit.changeset",
        "UPDATE audit.row_change SET after = '{}'",
        "DELETE FROM audit.row_change",
        "TRUNCATE audit.row_change CASCADE",
        "UPDATE audit.event SET kind = 'sign_out'",
        "DELETE FROM audit.event",
        "UPDATE audit.chain_head SET seq = 0",
        "INSERT INTO audit.chain_head (id, seq, hash) VALUES (2, 0, 'x')",
    ],
)
def test_audit_tables_refuse_rewrites_even_by_owner(
    fresh_db: DatabaseHandle, table: str, role: str, statement: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        open_changeset(
            session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        s.execute(text(f"INSERT INTO data.{table} (name) VALUES ('x')"))
        record_event(session=s, kind="sign_in", actor_username="a")
    before = _changesets(fresh_db), _row_changes(fresh_db)
    engine = fresh_db.owner if role == "owner" else fresh_db.superuser
    with (
        engine.connect() as conn,
        pytest.raises(
            (InternalError, ProgrammingError, IntegrityError),
            match=r"append-only|only moves forward|violates",
        ),
    ):
        conn.execute(text(statement))
    assert (_changesets(fresh_db), _row_changes(fresh_db)) == before


def test_inserted_changeset_cannot_claim_a_seal(fresh_db: DatabaseHandle) -> None:
    with fresh_db.owner.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit.changeset (kind, actor_username, actor_display_name, seq, hash,"
                " prev_hash) VALUES ('edit', 'x', 'X', 99, 'forged', 'forged')"
            )
        )
    (c,) = _changesets(fresh_db)
    assert (c["seq"], c["prev_hash"]) == (1, "0" * 64)
    assert c["hash"] != "forged"


def test_events_are_recorded_and_kinds_checked(fresh_db: DatabaseHandle) -> None:
    with Session(fresh_db.app) as s, s.begin():
        record_event(
            session=s,
            kind="user_admin",
            actor_username="root",
            target="ann",
            detail={"action": "set_role", "old_role": "viewer", "new_role": "editor"},
        )
    with fresh_db.app.connect() as conn:
        row = conn.execute(
            text("SELECT kind, actor_username, target, detail FROM audit.event")
        ).one()
    assert tuple(row) == (
        "user_admin",
        "root",
        "ann",
        {"action": "set_role", "old_role": "viewer", "new_role": "editor"},
    )
    with Session(fresh_db.app) as s, pytest.raises(ValueError, match="unknown audit event"):
        record_event(session=s, kind="coffee", actor_username="root")


def test_each_row_records_only_its_own_changed_cells(fresh_db: DatabaseHandle, table: str) -> None:
    with fresh_db.app.begin() as conn:
        conn.execute(
            text(f"INSERT INTO data.{table} (name, qty, price) VALUES ('a', 1, 1), ('b', 2, 2)")
        )
    with fresh_db.app.begin() as conn:
        conn.execute(
            text(
                f"UPDATE data.{table} SET qty = CASE WHEN name = 'a' THEN 10 ELSE qty END,"
                " price = CASE WHEN name = 'b' THEN NULL ELSE price END"
            )
        )
    updates = [rc for rc in _row_changes(fresh_db) if rc[3] == "update"]
    assert [(rc[2], rc[4], rc[5]) for rc in updates] == [
        (1, {"qty": 1}, {"qty": 10}),
        (2, {"price": 2}, {"price": None}),  # a value that became NULL is still a change
    ]


def test_an_update_of_more_than_fifty_columns_is_captured(fresh_db: DatabaseHandle) -> None:
    columns = ", ".join(f"c{i} integer" for i in range(60))
    with Session(fresh_db.app) as s, s.begin():
        s.execute(
            text(
                "CREATE TABLE data.wide (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                f" _version integer NOT NULL DEFAULT 1, {columns})"
            )
        )
        install_capture(session=s, table_name="wide", dataset_id=DATASET)
    with fresh_db.app.begin() as conn:
        conn.execute(text("INSERT INTO data.wide (c0) VALUES (0)"))
        conn.execute(text("UPDATE data.wide SET " + ", ".join(f"c{i} = {i}" for i in range(60))))
    (update,) = [rc for rc in _row_changes(fresh_db) if rc[3] == "update"]
    # c0 was set to the value it had: not a change
    assert update[4] == {f"c{i}": None for i in range(1, 60)}
    assert update[5] == {f"c{i}": i for i in range(1, 60)}


def test_columns_named_like_the_capture_functions_variables_are_captured(
    fresh_db: DatabaseHandle,
) -> None:
    """A generated capture function's own names (cs, ds, n, o, ...) never shadow a column."""
    names = ["cs", "ds", "n", "o", "v_changed", "v_names", "name", "changed"]
    with Session(fresh_db.app) as s, s.begin():
        s.execute(
            text(
                "CREATE TABLE data.shadow (_row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY"
                " KEY, _version integer NOT NULL DEFAULT 1, "
                + ", ".join(f"{c} integer" for c in names)
                + ")"
            )
        )
        install_capture(session=s, table_name="shadow", dataset_id=DATASET)
    with fresh_db.app.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO data.shadow ({', '.join(names)})"
                f" VALUES ({', '.join(str(i) for i in range(len(names)))})"
            )
        )
        conn.execute(text("UPDATE data.shadow SET ds = 100, o = 300"))
        conn.execute(text("DELETE FROM data.shadow"))
    image = {c: i for i, c in enumerate(names)}
    assert [(rc[3], rc[4], rc[5]) for rc in _row_changes(fresh_db)] == [
        ("insert", None, image),
        ("update", {"ds": 1, "o": 3}, {"ds": 100, "o": 300}),
        ("delete", {**image, "ds": 100, "o": 300}, None),
    ]


def test_capture_refuses_columns_it_was_not_generated_for(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """A column added without regenerating capture would go unrecorded: writes are refused
    until ``install_capture`` runs again."""
    with fresh_db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('a', 1)"))
        conn.execute(text(f"ALTER TABLE data.{table} ADD COLUMN colour text"))
    with (
        fresh_db.app.connect() as conn,
        pytest.raises(DBAPIError, match="changed after its audit capture was generated"),
    ):
        conn.execute(text(f"UPDATE data.{table} SET colour = 'red'"))
    with Session(fresh_db.app) as s, s.begin():
        install_capture(session=s, table_name=table, dataset_id=DATASET)
        s.execute(text(f"UPDATE data.{table} SET colour = 'red', qty = 2"))
    assert _row_changes(fresh_db)[-1][3:] == (
        "update",
        {"qty": 1, "colour": None},
        {"qty": 2, "colour": "red"},
    )


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT audit.generate_capture('portal.users'::regclass)",
        "SELECT audit.current_changeset(1)",
        "SELECT audit.record_bulk_load(1, 1, 'portal.users'::regclass, 1, 1, 1)",
    ],
)
def test_app_role_cannot_use_capture_internals(
    fresh_db: DatabaseHandle, table: str, statement: str
) -> None:
    """The app role may have capture generated for data tables only, and cannot call what
    writes audit rows on a capture function's behalf."""
    with fresh_db.app.connect() as conn, pytest.raises(DBAPIError) as err:
        conn.execute(text(statement))
    assert err.value.orig.pgcode in ("42501", "22023")  # insufficient_privilege, invalid_parameter
    assert _row_changes(fresh_db) == []


def test_a_column_name_cannot_break_out_of_the_generated_capture_function(
    fresh_db: DatabaseHandle,
) -> None:
    """``audit.generate_capture`` (SECURITY DEFINER, callable by the app role) writes the
    capture function between ``$body$`` quotes, with the table's column names inside. A column
    name holding ``$body$`` ended the function there, and what followed ran as SQL of the
    generator's owner (the migrating role; in production the database's superuser), once the
    session had switched off the check of function bodies, as any role may."""
    escape = "$body$;GRANT UPDATE ON audit.event TO portal_app;SELECT $body$"
    with fresh_db.app.connect() as conn:
        conn.execute(text("SET check_function_bodies = off"))
        conn.execute(
            text(
                "CREATE TABLE data.ds_escape (_row_id bigint GENERATED ALWAYS AS IDENTITY"
                f' PRIMARY KEY, _version integer NOT NULL DEFAULT 1, "{escape}" integer)'
            )
        )
        with pytest.raises(DBAPIError, match="contains a dollar sign") as err:
            conn.execute(text("SELECT audit.generate_capture('data.ds_escape'::regclass)"))
        assert err.value.orig.pgcode == "22023"  # invalid_parameter_value
        conn.rollback()
    with fresh_db.app.connect() as conn:
        assert not conn.scalar(text("SELECT has_table_privilege('audit.event', 'UPDATE')"))
        assert conn.scalar(text("SELECT to_regclass('data.ds_escape')")) is None


def test_an_update_is_captured_with_a_plan_for_its_own_rows(
    fresh_db: DatabaseHandle, table: str
) -> None:
    """The pass finding an UPDATE's changed columns joins its old and new rows. Planned once per
    session (static SQL in a PL/pgSQL function), the plan chosen for a first one-row UPDATE was
    a nested loop, reused for every later UPDATE: n rows cost n x n comparisons (1,000 rows,
    160 ms instead of 12). Seen here with auto_explain's plans of the nested statements, sent
    as notices (on a plain psycopg2 connection: SQLAlchemy drains notices into its log)."""
    with Session(fresh_db.app) as s, s.begin():
        s.execute(
            text(
                f"INSERT INTO data.{table} (name, qty)"
                " SELECT 'n' || g, g FROM generate_series(1, 3000) g"
            )
        )
    conn = psycopg2.connect(**fresh_db.info.connect_kwargs("superuser", fresh_db.name))
    try:
        with conn.cursor() as cur:
            for setting in (
                "LOAD 'auto_explain'",
                "SET auto_explain.log_min_duration = 0",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_level = notice",
                "SET client_min_messages = notice",
            ):
                cur.execute(setting)
            cur.execute(f"UPDATE data.{table} SET qty = qty + 1 WHERE qty = 1")  # one row
            conn.notices.clear()
            cur.execute(f"UPDATE data.{table} SET qty = qty + 1 WHERE qty > 1")  # 3,000
            plans = [n for n in conn.notices if "bool_or(" in n]
        conn.commit()
    finally:
        conn.close()
    assert len(plans) == 1, conn.notices
    assert "Nested Loop" not in plans[0], plans[0]
    assert "Hash Join" in plans[0] or "Merge Join" in plans[0], plans[0]
    with fresh_db.app.connect() as c:
        updates = c.scalar(text("SELECT count(*) FROM audit.row_change WHERE op = 'update'"))
    assert updates == 3_001
