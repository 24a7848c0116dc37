"""The event chain: every audit event is chained as it is recorded, gap-free, and any tampering
— even by a superuser with the triggers switched off — is named by ``verify_events`` at the
first event it breaks."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.orm import Session

from audit.chain import GENESIS_HASH
from audit.event_chain import ChainedEvent, event_hash, read_event_head, verify_events
from audit.events import record_event
from portal.cli import main
from tests.conftest import DatabaseHandle
from tests.factories import all_at_once

pytestmark = pytest.mark.db

RECORDED = (
    ("sign_in", "ann"),
    ("sign_in_failed", "bob"),
    ("lock_out", "cy"),
    ("user_admin", "dee"),
    ("export", "eve"),
)


def _record(db: DatabaseHandle, kind: str = "sign_in", who: str = "ann") -> int:
    with Session(db.app) as s, s.begin():
        return record_event(
            session=s,
            kind=kind,
            actor_username=who,
            target=f"user:{who}",
            detail={"n": 1, "who": who},
            client_info={"ua": "pytest"},
        )


@pytest.fixture
def events(fresh_db: DatabaseHandle) -> tuple[DatabaseHandle, list[int]]:
    """Five chained events (seq 1..5), recorded by ``record_event`` as the portal records them."""
    return fresh_db, [_record(fresh_db, kind, who) for kind, who in RECORDED]


def _verify(db: DatabaseHandle):
    with Session(db.app) as s:
        return verify_events(session=s)


def _tamper(db: DatabaseHandle, *statements: str) -> None:
    """As a superuser with every trigger switched off: the strongest attacker inside the DB."""
    with db.superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        for stmt in statements:
            conn.execute(text(stmt))


def _seqs(db: DatabaseHandle) -> list[int]:
    with db.app.connect() as conn:
        return list(conn.scalars(text("SELECT seq FROM audit.event ORDER BY seq")))


def test_recorded_events_chain_up_and_verify(events) -> None:
    db, ids = events
    with db.app.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, seq, prev_hash, hash, audit.event_hash(e) AS sql_hash"
                " FROM audit.event e ORDER BY seq"
            )
        ).all()
    assert [(r.id, r.seq) for r in rows] == list(zip(ids, range(1, 6), strict=True))
    assert [r.prev_hash for r in rows] == [GENESIS_HASH] + [r.hash for r in rows[:-1]]
    assert all(r.hash == r.sql_hash for r in rows)
    result = _verify(db)
    assert result.ok, result.summary()
    assert (result.count, result.head.seq, result.head.event_id) == (5, 5, ids[-1])
    assert result.head.hash == rows[-1].hash
    with Session(db.app) as s:
        assert read_event_head(session=s) == result.head
    assert result.summary() == f"event chain intact: 5 events, head {result.head.hash}"


@pytest.mark.parametrize(
    ("attack", "broken_seq", "message"),
    [
        ("DELETE FROM audit.event WHERE id = {e3}", 3, "missing or renumbered"),
        (
            "UPDATE audit.event SET actor_username = 'mallory' WHERE id = {e2}",
            2,
            "contents no longer match",
        ),
        (
            "UPDATE audit.event SET detail = detail || '{{\"n\": 2}}' WHERE id = {e4}",
            4,
            "contents no longer match",
        ),
        ("UPDATE audit.event SET kind = 'sign_out' WHERE id = {e1}", 1, "contents no longer match"),
        ("UPDATE audit.event SET target = NULL WHERE id = {e3}", 3, "contents no longer match"),
        (
            "UPDATE audit.event SET client_info = '{{}}' WHERE id = {e5}",
            5,
            "contents no longer match",
        ),
        (
            "UPDATE audit.event SET occurred_at = occurred_at - interval '1 day' WHERE id = {e2}",
            2,
            "contents no longer match",
        ),
        (
            "UPDATE audit.event SET seq = -seq WHERE id IN ({e2}, {e3});"
            " UPDATE audit.event SET seq = 5 + seq WHERE id IN ({e2}, {e3})",
            2,
            "prev_hash",
        ),
        ("UPDATE audit.event SET hash = repeat('a', 64) WHERE id = {e4}", 4, "contents no longer"),
        ("UPDATE audit.event SET prev_hash = repeat('b', 64) WHERE id = {e3}", 3, "prev_hash"),
        # Times Python has no datetime for: reported, not a ValueError out of the walk.
        (
            "UPDATE audit.event SET occurred_at = '12000-01-01Z' WHERE id = {e2}",
            2,
            "a time the portal never records",
        ),
        (
            "UPDATE audit.event SET occurred_at = '0044-03-15Z BC' WHERE id = {e4}",
            4,
            "a time the portal never records",
        ),
    ],
    ids=[
        "delete",
        "actor",
        "detail",
        "kind",
        "target",
        "client-info",
        "backdate",
        "swap-seq",
        "edit-hash",
        "edit-prev-hash",
        "year-12000",
        "year-44-bc",
    ],
)
def test_tampering_is_named_at_the_first_broken_event(
    events, attack: str, broken_seq: int, message: str
) -> None:
    db, ids = events
    names = {f"e{i + 1}": event_id for i, event_id in enumerate(ids)}
    _tamper(db, *attack.format(**names).split(";"))
    result = _verify(db)
    assert not result.ok
    assert result.failed_seq == broken_seq, result.summary()
    assert message in (result.problem or "")
    # A missing event's id is not known: only an event that is there is named by its id.
    named = ": " if message == "missing or renumbered" else " (id "
    assert result.summary().startswith(f"event chain broken at event seq {broken_seq}{named}")


def test_the_reviewers_attack_is_detected(events) -> None:
    """The reproduction that found the gap: exports deleted, every actor rewritten."""
    db, ids = events
    _tamper(
        db,
        "DELETE FROM audit.event WHERE kind = 'export'",
        "UPDATE audit.event SET actor_username = 'ann'",
    )
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 2, ids[1])


def test_recomputing_one_hash_still_breaks_the_link_after_it(events) -> None:
    """An attacker who re-hashes the event they altered breaks its successor's prev_hash."""
    db, ids = events
    _tamper(
        db,
        f"UPDATE audit.event SET actor_username = 'mallory' WHERE id = {ids[1]}",
        f"UPDATE audit.event e SET hash = audit.event_hash(e) WHERE id = {ids[1]}",
    )
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 3, ids[2])
    assert "prev_hash" in (result.problem or "")


def test_removed_tail_is_caught_by_the_head_row(events) -> None:
    db, ids = events
    _tamper(db, f"DELETE FROM audit.event WHERE id IN ({ids[3]}, {ids[4]})")
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 4, None)
    assert "removed from the end" in (result.problem or "")
    assert result.summary().startswith("event chain broken at event seq 4: ")

    # A careful attacker rewinds the head row too: only a head kept outside the database
    # catches that (the module says so).
    _tamper(
        db,
        "UPDATE audit.event_chain_head h SET seq = e.seq, hash = e.hash, event_id = e.id"
        " FROM audit.event e WHERE e.seq = 3",
    )
    assert _verify(db).ok


def test_a_removed_head_row_is_reported_not_a_traceback(events) -> None:
    db, _ = events
    _tamper(db, "DELETE FROM audit.event_chain_head")
    result = _verify(db)
    assert not result.ok
    assert result.summary().startswith(
        "event chain broken at event chain: the event chain head row"
    ), result.summary()
    out = CliRunner().invoke(main, ["audit", "verify"])
    assert (out.exit_code, type(out.exception)) == (1, SystemExit), out.output
    assert "the event chain head row (audit.event_chain_head) is missing" in out.output


def test_removed_tail_with_rewound_head_is_caught_by_expect_head(events) -> None:
    db, ids = events
    kept_head = _verify(db).head.hash
    _tamper(
        db,
        f"DELETE FROM audit.event WHERE id IN ({ids[3]}, {ids[4]})",
        "UPDATE audit.event_chain_head h SET seq = e.seq, hash = e.hash, event_id = e.id"
        " FROM audit.event e WHERE e.seq = 3",
    )
    assert _verify(db).ok
    with Session(db.app) as s:
        result = verify_events(session=s, expect_head=kept_head)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 4, None)
    assert kept_head in (result.problem or "")
    assert "newest events were removed" in (result.problem or "")


def test_expect_head_accepts_an_older_head_of_a_grown_chain(events) -> None:
    db, _ = events
    older = _verify(db).head.hash
    _record(db, "sign_out", "ann")
    with Session(db.app) as s:
        assert verify_events(session=s, expect_head=older).ok
        assert verify_events(session=s, expect_head=f" {older.upper()}\n").ok
        assert verify_events(session=s, expect_head=GENESIS_HASH).ok
        assert not verify_events(session=s, expect_head="f" * 64).ok


def test_cli_expect_event_head_catches_the_newest_events_removed(events) -> None:
    db, ids = events
    runner = CliRunner()
    head = runner.invoke(main, ["audit", "head"])
    assert head.exit_code == 0, head.output
    label, seq, kept = head.output.splitlines()[1].split()
    assert (label, seq) == ("events", "5")
    _tamper(
        db,
        f"DELETE FROM audit.event WHERE id = {ids[4]}",
        "UPDATE audit.event_chain_head h SET seq = e.seq, hash = e.hash, event_id = e.id"
        " FROM audit.event e WHERE e.seq = 4",
    )
    assert runner.invoke(main, ["audit", "verify"]).exit_code == 0

    bad = runner.invoke(main, ["audit", "verify", "--expect-event-head", kept])
    assert bad.exit_code == 1, bad.output
    assert bad.output.startswith("chain intact: 0 changesets, head ")
    assert (
        f"event chain broken at event seq 5: the event head recorded earlier ({kept}) is not in"
        " the event chain" in bad.output
    )
    assert "the newest events were removed" in bad.output

    rewound = runner.invoke(main, ["audit", "head"]).output.splitlines()[1].split()[2]
    good = runner.invoke(main, ["audit", "verify", "--expect-event-head", rewound])
    assert good.exit_code == 0, good.output
    assert good.output.splitlines()[1] == f"event chain intact: 4 events, head {rewound}"


def test_cli_head_prints_the_changesets_head_then_the_events_head(events) -> None:
    db, _ = events
    head = CliRunner().invoke(main, ["audit", "head"])
    assert head.exit_code == 0, head.output
    with db.app.connect() as conn:
        changesets = conn.execute(text("SELECT seq, hash FROM audit.chain_head")).one()
        newest = conn.execute(
            text("SELECT seq, hash FROM audit.event ORDER BY seq DESC LIMIT 1")
        ).one()
    assert head.output.splitlines() == [
        f"{changesets.seq} {changesets.hash}",
        f"events {newest.seq} {newest.hash}",
    ]
    assert (newest.seq, newest.hash) == (5, _verify(db).head.hash)


def test_a_rewritten_head_row_is_reported(events) -> None:
    db, ids = events
    _tamper(db, "UPDATE audit.event_chain_head SET hash = repeat('c', 64)")
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 5, ids[4])
    assert "head row was altered" in (result.problem or "")


def test_a_head_row_naming_another_event_is_reported(events) -> None:
    db, ids = events
    _tamper(db, f"UPDATE audit.event_chain_head SET event_id = {ids[1]}")
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 5, ids[4])
    assert "head row was altered" in (result.problem or "")
    assert f"event id {ids[1]}) but the newest event is seq 5" in (result.problem or "")


def test_an_event_added_around_the_trigger_is_reported(events) -> None:
    db, _ = events
    _tamper(
        db,
        "INSERT INTO audit.event (kind, actor_username, seq, prev_hash, hash)"
        " VALUES ('sign_in', 'ghost', 99, repeat('0', 64), repeat('0', 64))",
    )
    result = _verify(db)
    assert (result.ok, result.failed_seq) == (False, 99)
    assert "is not in the chain" in (result.problem or "")


def test_an_event_recorded_mid_walk_is_not_a_break(events) -> None:
    """The walk stops at the head read first: an event committed between that read and the
    walk (READ COMMITTED) is not a removed tail nor an event outside the chain."""
    db, _ = events
    landed: list[int] = []

    def commit_one_first(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM audit.event WHERE seq <=" in statement and not landed:
            landed.append(_record(db, "sign_out", "late"))

    sa_event.listen(db.app, "before_cursor_execute", commit_one_first)
    try:
        result = _verify(db)
    finally:
        sa_event.remove(db.app, "before_cursor_execute", commit_one_first)
    assert len(landed) == 1
    assert result.ok, result.summary()
    assert (result.count, result.head.seq) == (5, 5)
    assert _verify(db).count == 6


def test_the_app_role_cannot_choose_seq_or_hash(events) -> None:
    db, _ = events
    before = _verify(db).head.hash
    with db.app.begin() as conn:
        row = conn.execute(
            text(
                "INSERT INTO audit.event (kind, actor_username, seq, prev_hash, hash)"
                " VALUES ('sign_in', 'forger', 1000, repeat('f', 64), repeat('f', 64))"
                " RETURNING seq, prev_hash, hash"
            )
        ).one()
    assert (row.seq, row.prev_hash) == (6, before)
    result = _verify(db)
    assert result.ok, result.summary()
    assert result.head.hash == row.hash != "f" * 64


@pytest.mark.parametrize("engine", ["app", "owner"])
def test_an_events_time_is_the_servers_not_the_writers(events, engine: str) -> None:
    db, _ = events
    with getattr(db, engine).begin() as conn:
        before = conn.scalar(text("SELECT clock_timestamp()"))
        row = conn.execute(
            text(
                "INSERT INTO audit.event (occurred_at, kind, actor_username)"
                " VALUES ('2000-01-01', 'sign_in', 'backdater') RETURNING seq, occurred_at"
            )
        ).one()
        after = conn.scalar(text("SELECT clock_timestamp()"))
    assert before <= row.occurred_at <= after
    result = _verify(db)
    assert result.ok, result.summary()
    assert (result.count, result.head.seq) == (6, row.seq)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.event_chain_head SET seq = seq + 1",
        "UPDATE audit.event SET hash = hash",
        "INSERT INTO audit.event_chain_head (id, seq, hash) VALUES (2, 0, '')",
        "DELETE FROM audit.event_chain_head",
    ],
)
def test_the_app_role_cannot_move_the_head_or_rewrite_events(events, statement: str) -> None:
    db, _ = events
    with db.app.connect() as conn, pytest.raises(ProgrammingError) as err:
        conn.execute(text(statement))
    assert err.value.orig.pgcode == "42501"  # insufficient_privilege


def test_even_the_owner_cannot_move_the_head_by_hand(events) -> None:
    db, _ = events
    with db.owner.connect() as conn, pytest.raises(DBAPIError) as err:
        conn.execute(text("SET LOCAL audit.event_chaining = 'on'"))
        conn.execute(text("UPDATE audit.event_chain_head SET seq = seq + 2"))
    assert "only moves forward by recording an event" in str(err.value.orig)


def test_a_rolled_back_event_leaves_no_gap(events) -> None:
    db, _ = events
    with Session(db.app) as s:
        record_event(session=s, kind="sign_in", actor_username="lost")
        s.rollback()
    with Session(db.app) as s, s.begin():
        with s.begin_nested() as savepoint:
            record_event(session=s, kind="sign_in", actor_username="lost too")
            savepoint.rollback()
        record_event(session=s, kind="sign_in", actor_username="kept")
    _record(db, "sign_out", "kept")
    assert _seqs(db) == [1, 2, 3, 4, 5, 6, 7]
    result = _verify(db)
    assert (result.ok, result.count) == (True, 7), result.summary()


def test_concurrent_recorders_keep_the_chain_gap_free(events) -> None:
    db, _ = events

    def recorder(n: int) -> None:
        for i in range(3):
            _record(db, "sign_in" if i % 2 else "export", f"user{n}")

    all_at_once(20, recorder)
    result = _verify(db)
    assert result.ok, result.summary()
    assert result.count == 5 + 60
    assert _seqs(db) == list(range(1, 66))


def test_cli_verify_checks_the_event_chain_too(events) -> None:
    db, ids = events
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    first, second = ok.output.splitlines()
    assert first.startswith("chain intact: 0 changesets, head ")
    assert second == f"event chain intact: 5 events, head {_verify(db).head.hash}"

    _tamper(db, f"UPDATE audit.event SET actor_username = 'mallory' WHERE id = {ids[2]}")
    bad = runner.invoke(main, ["audit", "verify"])
    assert bad.exit_code == 1
    assert bad.output.startswith("chain intact: 0 changesets, head ")
    assert f"event chain broken at event seq 3 (id {ids[2]})" in bad.output


awkward_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actor=awkward_text, target=st.none() | awkward_text, value=awkward_text, ua=awkward_text)
def test_encoding_matches_postgres_for_any_text(
    fresh_db: DatabaseHandle, actor: str, target: str | None, value: str, ua: str
) -> None:
    """The Python encoder reproduces PostgreSQL's byte for byte: quotes, backslashes, control
    characters, non-ASCII, emoji, line separators, numbers in jsonb."""
    with Session(fresh_db.app) as s:
        event_id = record_event(
            session=s,
            kind="export",
            actor_username=actor,
            target=target,
            detail={value: [value, 1.50, None, True], "n": 10**20},
            client_info={"ua": ua},
        )
        row = s.execute(
            text(
                "SELECT seq, occurred_at, kind, actor_username, target, detail::text AS detail,"
                " client_info::text AS client_info, prev_hash, hash FROM audit.event"
                " WHERE id = :id"
            ),
            {"id": event_id},
        ).one()
        s.rollback()
    event = ChainedEvent(
        seq=row.seq,
        id=event_id,
        occurred_at=row.occurred_at,
        kind=row.kind,
        actor_username=row.actor_username,
        target=row.target,
        detail=row.detail,
        client_info=row.client_info,
    )
    assert event_hash(row.prev_hash, event) == row.hash


def test_a_missing_event_is_not_given_the_id_of_the_one_found_in_its_place(events) -> None:
    """Seq 3 deleted: the report named "event seq 3 (id …)" with the id of seq 4, an intact
    event, as if it were the broken one. The missing one's id is not known; the one found in
    its place is named as what it is."""
    db, ids = events
    _tamper(db, f"DELETE FROM audit.event WHERE id = {ids[2]}")
    result = _verify(db)
    assert (result.ok, result.failed_seq, result.failed_event_id) == (False, 3, None)
    assert result.summary() == (
        f"event chain broken at event seq 3: expected seq 3 next, found 4 (event id {ids[3]}):"
        " events 3..3 are missing or renumbered"
    )
