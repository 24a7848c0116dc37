"""The hash chain: sealed at commit, gap-free, and any tampering — even by a superuser with the
triggers switched off — is named by ``verify`` at the first changeset it breaks."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text
from sqlalchemy.orm import Session

import audit.chain
from audit.chain import Header, RowsHasher, changeset_hash, read_head, row_line, verify
from audit.changesets import open_changeset
from audit.events import record_event
from portal.actor import Actor
from portal.cli import main
from tests.conftest import DatabaseHandle
from tests.factories import all_at_once, make_captured_table, make_user, upload_dataset

pytestmark = pytest.mark.db

DATASET = 3


def _commit_changeset(db: DatabaseHandle, table: str, *, rows: int = 2, who: str = "ann") -> int:
    with Session(db.app) as s, s.begin():
        cs = open_changeset(
            session=s,
            kind="edit",
            actor_username=who,
            actor_display_name=who.title(),
            dataset_id=DATASET,
            reason=f"by {who}",
        )
        for _ in range(rows):
            s.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES (md5(random()::text), 1)"))
        # Lock in key order first, as the portal's writer does, so committers that touch the
        # same rows queue instead of deadlocking.
        s.execute(
            text(f"SELECT 1 FROM data.{table} WHERE _row_id % 2 = 0 ORDER BY _row_id FOR UPDATE")
        )
        s.execute(text(f"UPDATE data.{table} SET qty = qty + 1 WHERE _row_id % 2 = 0"))
    return cs


@pytest.fixture
def chain(fresh_db: DatabaseHandle) -> tuple[DatabaseHandle, str, list[int]]:
    """Five sealed changesets (seq 1..5), with row changes, on one captured table."""
    with Session(fresh_db.app) as s, s.begin():
        table = make_captured_table(s, dataset_id=DATASET)
    ids = [_commit_changeset(fresh_db, table, who=w) for w in ("ann", "bob", "cy", "dee", "eve")]
    return fresh_db, table, ids


def _verify(db: DatabaseHandle, expect_head: str | None = None):
    with Session(db.app) as s:
        return verify(session=s, expect_head=expect_head)


def _tamper(db: DatabaseHandle, *statements: str) -> None:
    """As a superuser with every trigger switched off: the strongest attacker inside the DB."""
    with db.superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        for stmt in statements:
            conn.execute(text(stmt))


def test_intact_chain_verifies(chain) -> None:
    db, _, _ = chain
    result = _verify(db)
    assert result.ok, result.summary()
    assert result.changesets == 5
    assert result.head.seq == 5
    with Session(db.app) as s:
        assert read_head(session=s).hash == result.head.hash
    assert result.summary() == f"chain intact: 5 changesets, head {result.head.hash}"


def test_python_and_sql_agree_on_every_hash(chain) -> None:
    db, _, _ = chain
    with db.app.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT c.seq, c.hash, audit.changeset_hash(c, audit.rows_hash(c.id)) AS sql_hash"
                " FROM audit.changeset c ORDER BY seq"
            )
        ).all()
    assert all(r.hash == r.sql_hash for r in stored)


@pytest.mark.parametrize(
    ("attack", "broken_seq", "message"),
    [
        (
            "UPDATE audit.row_change SET after = jsonb_set(after, '{{qty}}', '999')"
            " WHERE changeset_id = {c3} AND op = 'insert'",
            3,
            "contents no longer match",
        ),
        (
            "UPDATE audit.changeset SET reason = 'nothing to see' WHERE id = {c2}",
            2,
            "contents no longer match",
        ),
        (
            "UPDATE audit.changeset SET actor_username = 'mallory' WHERE id = {c4}",
            4,
            "contents no longer match",
        ),
        (
            "DELETE FROM audit.row_change WHERE id = (SELECT min(id) FROM audit.row_change"
            " WHERE changeset_id = {c2})",
            2,
            "contents no longer match",
        ),
        (
            "DELETE FROM audit.row_change WHERE changeset_id = {c3};"
            " DELETE FROM audit.changeset WHERE id = {c3}",
            3,
            "missing or renumbered",
        ),
        (
            "UPDATE audit.changeset SET seq = -seq WHERE id IN ({c2}, {c3});"
            " UPDATE audit.changeset SET seq = 5 + seq WHERE id IN ({c2}, {c3})",
            2,
            "prev_hash",
        ),
        (
            "UPDATE audit.changeset SET hash = repeat('a', 64) WHERE id = {c4}",
            4,
            "contents no longer match",
        ),
        (
            "UPDATE audit.changeset SET committed_at = committed_at - interval '1 day'"
            " WHERE id = {c1}",
            1,
            "contents no longer match",
        ),
        (
            "INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, after)"
            " VALUES ({c5}, 3, 1, 'insert', '{{\"name\": \"ghost\"}}')",
            5,
            "contents no longer match",
        ),
        (
            "UPDATE audit.changeset SET opened_at = opened_at - interval '1 year' WHERE id = {c2}",
            2,
            "contents no longer match",
        ),
        ("UPDATE audit.changeset SET txid = 1 WHERE id = {c3}", 3, "contents no longer match"),
    ],
    ids=[
        "row-value",
        "reason",
        "actor",
        "delete-row-change",
        "delete-changeset",
        "swap-seq",
        "edit-hash",
        "backdate",
        "append-row-change",
        "backdate-opening",
        "other-transaction",
    ],
)
def test_tampering_is_named_at_the_first_broken_changeset(
    chain, attack: str, broken_seq: int, message: str
) -> None:
    db, _, ids = chain
    names = {f"c{i + 1}": cid for i, cid in enumerate(ids)}
    _tamper(db, *attack.format(**names).split(";"))
    result = _verify(db)
    assert not result.ok
    assert result.failed_seq == broken_seq, result.summary()
    assert message in (result.problem or "")
    assert result.summary().startswith(f"chain broken at changeset seq {broken_seq}")


OTHER_FILE = b"Name,Qty\nmallory,1\n"


@pytest.mark.parametrize(
    "attack",
    [
        "UPDATE audit.upload SET filename = 'innocent.csv'",
        "UPDATE audit.upload SET actor_username = 'ann'",
        "UPDATE audit.upload SET report = '{\"forged\": true}'",
        "UPDATE audit.upload SET mime_type = 'application/pdf'",
        "UPDATE audit.upload SET received_at = received_at - interval '1 day'",
        "UPDATE audit.upload SET content = '\\x00'",  # no longer the file
        # another file, with its own SHA-256: the sealed line still has the first one's
        f"UPDATE audit.upload SET content = decode('{zlib.compress(OTHER_FILE).hex()}', 'hex'),"
        f" sha256 = '{hashlib.sha256(OTHER_FILE).hexdigest()}', size_bytes = {len(OTHER_FILE)}",
        "DELETE FROM audit.upload",
        "UPDATE audit.upload SET received_at = '12000-01-01Z'",  # no datetime for it in Python
    ],
    ids=[
        "filename",
        "actor",
        "report",
        "mime",
        "backdate",
        "bytes",
        "other-file",
        "delete",
        "year-12000",
    ],
)
def test_an_uploaded_file_is_sealed_with_its_changeset(
    fresh_db: DatabaseHandle, attack: str
) -> None:
    """Under portal-audit/3 the original file kept in ``audit.upload`` (bytes, name, verdicts,
    who and when) is part of its changeset's hash; its bytes are checked against its SHA-256."""
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    upload_dataset(Actor(name, "E", "editor"), b"Name,Qty\nann,1\nbob,2\n", name='Odd "name" \\ ☃')
    assert _verify(fresh_db).ok
    with fresh_db.app.connect() as conn:
        header = conn.scalar(text("SELECT audit.changeset_header(c) FROM audit.changeset c"))
    assert header.startswith('["portal-audit/3", 1, ')
    _tamper(fresh_db, attack)
    result = _verify(fresh_db)
    assert (result.ok, result.failed_seq) == (False, 1), result.summary()


def test_row_changes_of_a_missing_changeset_are_reported(chain) -> None:
    db, _, _ = chain
    _tamper(
        db,
        "INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, after)"
        " VALUES (999999, 3, 1, 'insert', '{}')",
    )
    result = _verify(db)
    assert not result.ok
    assert result.failed_changeset_id == 999999
    assert "does not exist" in (result.problem or "")


_FORGED_UPLOAD = (
    "INSERT INTO audit.upload (changeset_id, dataset_id, actor_username, filename, size_bytes,"
    " sha256, mime_type, compression, content) VALUES ({cs}, 3, 'ann', 'forged.csv', 0,"
    f" '{hashlib.sha256(b'').hexdigest()}', 'text/csv', 'none', '')"
)


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (_FORGED_UPLOAD.format(cs="NULL"), "upload {id} is of no changeset"),
        (
            _FORGED_UPLOAD.format(cs=999999),
            "upload {id} names changeset id 999999, which does not exist",
        ),
        (
            "INSERT INTO audit.bulk_load (changeset_id, dataset_id, first_row_id, last_row_id,"
            ' row_count, columns) VALUES (999999, 3, 100, 100, 1, \'[["name", "text"]]\')',
            "bulk load {id} names changeset id 999999, which does not exist",
        ),
        (
            "INSERT INTO audit.bulk_content (bulk_load_id, compression, content, content_sha256)"
            f" VALUES (999999, 'none', '', '{hashlib.sha256(b'').hexdigest()}')",
            "a bulk load's content names bulk load id 999999, which does not exist",
        ),
    ],
    ids=["upload-of-no-changeset", "upload-of-a-missing-changeset", "bulk-load", "bulk-content"],
)
def test_upload_and_bulk_rows_outside_the_chain_are_reported(
    chain, attack: str, message: str
) -> None:
    """An audit row that no sealed changeset covers, added with the foreign keys switched off
    (``session_replication_role = replica``): a forged file kept under nobody's changeset, a
    bulk load or its rows with nothing to vouch for them."""
    db, _, _ = chain
    _tamper(db, attack)
    with db.app.connect() as conn:
        forged = conn.scalar(text("SELECT max(id) FROM audit.upload")) or conn.scalar(
            text("SELECT max(id) FROM audit.bulk_load")
        )
    result = _verify(db)
    assert not result.ok
    assert message.format(id=forged) in (result.problem or ""), result.summary()


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (
            "UPDATE audit.changeset SET committed_at = NULL WHERE id = {c3}",
            "chain broken at changeset seq 3 (id {c3}): it has a seq but no commit time",
        ),
        ("DELETE FROM audit.chain_head", "chain broken at chain: the chain head row"),
        # Times Python has no datetime for: the walk read them as a ValueError.
        (
            "UPDATE audit.changeset SET committed_at = '12000-01-01Z' WHERE id = {c3}",
            "chain broken at changeset seq 3 (id {c3}): it was opened at ",
        ),
        (
            "UPDATE audit.changeset SET opened_at = '0044-03-15Z BC' WHERE id = {c2}",
            "chain broken at changeset seq 2 (id {c2}): it was opened at ",
        ),
    ],
    ids=["no-commit-time", "no-head-row", "committed-year-12000", "opened-year-44-bc"],
)
def test_damage_that_leaves_a_field_empty_is_reported_not_a_traceback(
    chain, attack: str, message: str
) -> None:
    """A superuser with the triggers off can empty what the walk reads (a sealed changeset's
    commit time, the head row), or store a time Python cannot read: verify names it, as any
    other damage, and exits 1."""
    db, _, ids = chain
    names = {f"c{i + 1}": cid for i, cid in enumerate(ids)}
    _tamper(db, attack.format(**names))
    result = _verify(db)
    assert not result.ok
    assert result.summary().startswith(message.format(**names)), result.summary()
    out = CliRunner().invoke(main, ["audit", "verify"])
    assert (out.exit_code, type(out.exception)) == (1, SystemExit), out.output
    assert message.format(**names) in out.output


def test_cli_head_without_a_head_row_says_so(chain) -> None:
    db, _, _ = chain
    _tamper(db, "DELETE FROM audit.chain_head")
    out = CliRunner().invoke(main, ["audit", "head"])
    assert (out.exit_code, type(out.exception)) == (1, SystemExit), out.output
    assert "the chain head row (audit.chain_head) is missing" in out.output


def test_recomputing_one_hash_still_breaks_the_link_after_it(chain) -> None:
    """An attacker who re-seals the changeset they altered breaks its successor's prev_hash."""
    db, _, ids = chain
    _tamper(
        db,
        f"UPDATE audit.changeset SET reason = 'rewritten' WHERE id = {ids[1]}",
        f"UPDATE audit.changeset c SET hash = audit.changeset_hash(c, audit.rows_hash(c.id))"
        f" WHERE id = {ids[1]}",
    )
    result = _verify(db)
    assert (result.ok, result.failed_seq) == (False, 3)
    assert "prev_hash" in (result.problem or "")


def test_removed_tail_is_caught_by_head_row_and_by_expect_head(chain) -> None:
    db, _, ids = chain
    kept_head = _verify(db).head.hash
    drop_tail = (
        f"DELETE FROM audit.row_change WHERE changeset_id IN ({ids[3]}, {ids[4]});"
        f" DELETE FROM audit.changeset WHERE id IN ({ids[3]}, {ids[4]})"
    )
    _tamper(db, *drop_tail.split(";"))
    assert "removed from the end" in (_verify(db).problem or "")  # head row disagrees

    # A careful attacker rewinds the head row too: only the head kept outside catches it.
    _tamper(
        db,
        "UPDATE audit.chain_head h SET seq = c.seq, hash = c.hash, changeset_id = c.id"
        " FROM audit.changeset c WHERE c.seq = 3",
    )
    assert _verify(db).ok
    result = _verify(db, expect_head=kept_head)
    assert not result.ok
    assert result.failed_seq == 4
    assert kept_head in (result.problem or "")


def test_a_head_row_naming_another_changeset_is_reported(chain) -> None:
    """The head row's ``changeset_id`` is an audit value too: rewritten alone, it is named."""
    db, _, ids = chain
    _tamper(db, f"UPDATE audit.chain_head SET changeset_id = {ids[1]}")
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_changeset_id) == (False, 5, ids[4])
    assert result.problem == (
        f"the chain head names changeset id {ids[1]} for seq 5, which is changeset id {ids[4]}:"
        " the head row was altered"
    )


def test_a_head_moved_back_over_changesets_still_there_is_caught(chain) -> None:
    db, _, _ = chain
    _tamper(
        db,
        "UPDATE audit.chain_head h SET seq = c.seq, hash = c.hash, changeset_id = c.id"
        " FROM audit.changeset c WHERE c.seq = 3",
    )
    result = _verify(db)
    assert (result.ok, result.failed_seq) == (False, 4)
    assert "exist past the chain head (seq 3): the head was moved back" in (result.problem or "")


def test_a_changeset_sealed_while_verify_reads_is_not_a_break(
    chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify reads in several statements: one sealed in between belongs to the next check."""
    db, table, _ = chain
    read = audit.chain._by_changeset
    calls = []

    def read_then_commit(session: Session, query: object) -> object:
        found = read(session, query)
        if not calls:
            _commit_changeset(db, table, who="fay")
        calls.append(query)
        return found

    monkeypatch.setattr(audit.chain, "_by_changeset", read_then_commit)
    result = _verify(db)
    assert result.ok, result.summary()
    assert result.changesets == 5
    monkeypatch.undo()
    assert _verify(db).changesets == 6


def test_expect_head_accepts_an_older_head_of_a_grown_chain(chain) -> None:
    db, table, _ = chain
    older = _verify(db).head.hash
    _commit_changeset(db, table)
    assert _verify(db, expect_head=older).ok
    assert not _verify(db, expect_head="f" * 64).ok


def test_cli_verify_and_head(chain) -> None:
    db, _, ids = chain
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("chain intact: 5 changesets, head ")
    head = runner.invoke(main, ["audit", "head"])
    changesets_line, events_line = head.output.splitlines()
    seq, digest = changesets_line.split()
    assert (head.exit_code, seq) == (0, "5")
    assert events_line.startswith("events ")
    assert ok.output.splitlines()[0].endswith(digest)  # then the event chain's line

    _tamper(db, f"UPDATE audit.changeset SET reason = 'x' WHERE id = {ids[2]}")
    bad = runner.invoke(main, ["audit", "verify"])
    assert bad.exit_code == 1
    assert f"chain broken at changeset seq 3 (id {ids[2]})" in bad.output


def test_concurrent_committers_keep_the_chain_gap_free(chain) -> None:
    db, table, _ = chain

    def committer(n: int) -> None:
        for _ in range(3):
            _commit_changeset(db, table, rows=3, who=f"user{n}")

    all_at_once(20, committer)
    result = _verify(db)
    assert result.ok, result.summary()
    assert result.changesets == 5 + 60
    with db.app.connect() as conn:
        seqs = conn.scalars(text("SELECT seq FROM audit.changeset ORDER BY seq")).all()
    assert seqs == list(range(1, 66))


awkward_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reason=awkward_text, actor=awkward_text, value=awkward_text, client=awkward_text)
def test_encoding_matches_postgres_for_any_text(
    fresh_db: DatabaseHandle, reason: str, actor: str, value: str, client: str
) -> None:
    """The Python encoder reproduces PostgreSQL's byte for byte: quotes, backslashes, control
    characters, non-ASCII, emoji, line separators."""
    # As the owner: only capture may write row changes as the app role
    with fresh_db.owner.connect() as conn:
        trans = conn.begin()
        row = _sealed_in_transaction(conn, reason=reason, actor=actor, value=value, client=client)
        trans.rollback()
    header = Header(
        seq=row.seq,
        id=row.id,
        kind=row.kind,
        dataset_id=row.dataset_id,
        actor_username=row.actor_username,
        actor_display_name=row.actor_display_name,
        reason=row.reason,
        client_info=row.client_info,
        detail=row.detail,
        correlation_id=row.correlation_id,
        opened_at=row.committed_at,  # the composite below has both at opened_at
        committed_at=row.committed_at,
        txid=row.txid,
        inserted=0,
        updated=0,
        deleted=0,
    )
    assert header.encode() == row.sql_header
    rows = RowsHasher()
    rows.add_row(
        row.rc_id,
        row_line(
            id=row.rc_id, dataset_id=1, row_id=1, op="insert", before=None, after=row.rc_after
        ),
    )
    assert rows.hexdigest() == row.rows_hash
    assert changeset_hash(row.prev_hash, header, rows.hexdigest()) == row.sql_hash


def _sealed_in_transaction(conn: Connection, **values: str):
    """Compute the SQL header and hash of a changeset built in memory (never sealed): the caller
    rolls the transaction back."""
    cs = conn.scalar(
        text(
            "INSERT INTO audit.changeset (kind, actor_username, actor_display_name, reason,"
            " client_info, detail, dataset_id) VALUES ('edit', :actor, :actor, :reason,"
            " jsonb_build_object('ua', CAST(:client AS text), 'n', 1.50),"
            " jsonb_build_object(CAST(:reason AS text), jsonb_build_array(CAST(:value AS text))),"
            " 1) RETURNING id"
        ),
        values,
    )
    conn.execute(
        text(
            "INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, after)"
            " VALUES (:cs, 1, 1, 'insert', jsonb_build_object('v', CAST(:value AS text),"
            " 'n', 10.10, 'b', true, 'list', jsonb_build_array(1, CAST(:value AS text))))"
        ),
        {"cs": cs, "value": values["value"]},
    )
    return conn.execute(
        text(
            "SELECT c.id, 7 AS seq, c.kind, c.dataset_id, c.actor_username,"
            " c.actor_display_name, c.reason, c.client_info::text AS client_info,"
            " c.detail::text AS detail,"
            " c.correlation_id::text AS correlation_id, c.opened_at AS committed_at, c.txid,"
            " repeat('0', 64) AS prev_hash, audit.rows_hash(c.id) AS rows_hash,"
            " audit.changeset_header(x) AS sql_header,"
            " audit.changeset_hash(x, audit.rows_hash(c.id)) AS sql_hash,"
            " r.id AS rc_id, r.after::text AS rc_after"
            " FROM audit.changeset c JOIN audit.row_change r ON r.changeset_id = c.id,"
            " LATERAL (SELECT (c.id, 7, c.dataset_id, c.kind, c.actor_username,"
            "   c.actor_display_name, c.reason, c.client_info, c.detail, c.correlation_id, c.txid,"
            "   0, 0, 0, c.opened_at, c.opened_at, repeat('0', 64), NULL)::audit.changeset) AS"
            "   l(x)"
            " WHERE c.id = :id"
        ),
        {"id": cs},
    ).one()


def test_an_open_changeset_does_not_block_other_committers(chain) -> None:
    """seq is taken at COMMIT: a long transaction holds no chain lock while it works."""
    db, table, _ = chain
    slow = Session(db.app)
    slow.begin()
    open_changeset(
        session=slow,
        kind="edit",
        actor_username="slow",
        actor_display_name="Slow",
        dataset_id=DATASET,
    )
    slow.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('slow one', 1)"))
    try:
        with db.app.connect() as conn:  # would hang on a chain lock held by `slow`
            conn.execute(text("SET lock_timeout = '3s'"))
            conn.commit()
            with Session(bind=conn) as fast, fast.begin():
                open_changeset(
                    session=fast,
                    kind="edit",
                    actor_username="fast",
                    actor_display_name="Fast",
                    dataset_id=DATASET,
                )
                fast.execute(text(f"INSERT INTO data.{table} (name, qty) VALUES ('fast one', 1)"))
        slow.commit()
    finally:
        slow.close()
    with db.app.connect() as conn:
        order = (
            conn.execute(
                text("SELECT actor_username FROM audit.changeset WHERE seq > 5 ORDER BY seq")
            )
            .scalars()
            .all()
        )
    assert order == ["fast", "slow"]
    assert _verify(db).ok


def test_rows_hash_blocks_agree_across_a_block_boundary(fresh_db: DatabaseHandle) -> None:
    """portal-audit/2 hashes row lines in blocks of ids (id // 1024): Python and SQL agree on a
    changeset spanning several blocks, and a change in any block breaks it."""
    with Session(fresh_db.app) as s, s.begin():
        table = make_captured_table(s, dataset_id=DATASET)
    with Session(fresh_db.app) as s, s.begin():
        cs = open_changeset(
            session=s, kind="edit", actor_username="a", actor_display_name="A", dataset_id=DATASET
        )
        s.execute(
            text(
                f"INSERT INTO data.{table} (name, qty)"
                " SELECT 'n' || i, i FROM generate_series(1, 2100) AS i"
            )
        )
    with fresh_db.app.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, dataset_id, row_id, op, before::text AS before, after::text AS after"
                " FROM audit.row_change WHERE changeset_id = :cs ORDER BY id"
            ),
            {"cs": cs},
        ).all()
        sql_rows_hash = conn.scalar(text("SELECT audit.rows_hash(:cs)"), {"cs": cs})
    assert len({r.id // 1024 for r in rows}) >= 3
    hasher = RowsHasher()
    for r in rows:
        hasher.add_row(r.id, row_line(**r._mapping))
    assert hasher.hexdigest() == sql_rows_hash
    assert _verify(fresh_db).ok
    _tamper(
        fresh_db,
        f"UPDATE audit.row_change SET after = after || '{{\"qty\": 0}}' WHERE id = {rows[-1].id}",
    )
    result = _verify(fresh_db)
    assert (result.ok, result.failed_seq) == (False, 1)
    assert "contents no longer match" in (result.problem or "")


def test_a_missing_changeset_is_not_given_the_id_of_the_one_found_in_its_place(chain) -> None:
    """Seq 3 deleted: the report named "changeset seq 3 (id …)" with the id of seq 4, an intact
    changeset, as if it were the broken one. The missing one's id is not known; the one found
    in its place is named as what it is."""
    db, _, ids = chain
    _tamper(
        db,
        f"DELETE FROM audit.row_change WHERE changeset_id = {ids[2]}",
        f"DELETE FROM audit.changeset WHERE id = {ids[2]}",
    )
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_changeset_id) == (False, 3, None)
    assert result.summary() == (
        f"chain broken at changeset seq 3: expected seq 3 next, found 4 (changeset id {ids[3]}):"
        " changesets 3..3 are missing or renumbered"
    )


def test_heads_given_the_wrong_way_round_are_refused_not_taken_for_tampering(chain) -> None:
    """`portal audit head` prints two hashes of the same form; one kept as the other's was
    never in that chain, and verify reported the newest changesets (or events) removed, a
    false alarm of tampering. Such a hash is now refused, saying which option takes it."""
    db, _, _ = chain
    with Session(db.app) as s, s.begin():
        record_event(session=s, kind="sign_in", actor_username="ann")
    runner = CliRunner()
    head = runner.invoke(main, ["audit", "head"]).output.splitlines()
    changesets, events = head[0].split()[1], head[1].split()[2]
    for args, said in (
        (["--expect-head", events], "is an event's hash (the events line of `portal audit head`)"),
        (["--expect-event-head", changesets], "is a changeset's hash (the first line of"),
    ):
        swapped = runner.invoke(main, ["audit", "verify", *args])
        assert swapped.exit_code == 2, swapped.output
        assert said in swapped.stderr
        assert "broken" not in swapped.output
        assert "removed" not in swapped.output
    right = runner.invoke(
        main, ["audit", "verify", "--expect-head", changesets, "--expect-event-head", events]
    )
    assert right.exit_code == 0, right.output
