"""Searching the trail: every filter and their combinations return exactly the changesets (and
events) an independent reading of the log says they should, newest first; keyset paging never
skips or repeats, also across tied timestamps; the pages' queries use the 0004 indexes."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit import search
from audit.events import record_event
from audit.search import ChangesetKey, TrailFilter
from portal.errors import ValidationError
from tests.conftest import DatabaseHandle
from tests.trail_seed import Trail, seed_trail

pytestmark = pytest.mark.db


@pytest.fixture
def trail(fresh_db: DatabaseHandle) -> Trail:
    return seed_trail(fresh_db)


def all_changesets(db: DatabaseHandle) -> list[dict]:
    """The oracle: every sealed changeset with its row-change values, read with plain SQL."""
    with db.owner.connect() as conn:
        heads = conn.execute(
            text(
                "SELECT id, seq, committed_at, kind, dataset_id, actor_username, reason"
                " FROM audit.changeset WHERE seq IS NOT NULL"
            )
        ).mappings()
        out = [dict(h) for h in heads]
        values = conn.execute(
            text("SELECT changeset_id, before::text, after::text FROM audit.row_change")
        ).all()
    by_changeset: dict[int, list[str]] = {}
    for changeset_id, before, after in values:
        for image in (before, after):
            for v in json.loads(image, parse_float=str).values() if image else ():
                if v is not None:
                    shown = ("true" if v else "false") if isinstance(v, bool) else str(v)
                    by_changeset.setdefault(changeset_id, []).append(shown)
    for c in out:
        c["values"] = by_changeset.get(c["id"], [])
    return sorted(out, key=lambda c: (c["committed_at"], c["seq"]), reverse=True)


def expected(db: DatabaseHandle, f: TrailFilter, log: list[dict] | None = None) -> list[int]:
    needle = f.text.strip().lower()
    return [
        c["seq"]
        for c in (log if log is not None else all_changesets(db))
        if (f.dataset_id is None or c["dataset_id"] == f.dataset_id)
        and (not f.actor or c["actor_username"] == f.actor)
        and (not f.kind or c["kind"] == f.kind)
        and (f.since is None or c["committed_at"] >= f.since)
        and (f.until is None or c["committed_at"] < f.until)
        and (
            not needle
            or needle in c["reason"].lower()
            or any(needle in v.lower() for v in c["values"])
        )
    ]


def found(db: DatabaseHandle, f: TrailFilter, limit: int = 50) -> list[int]:
    """Every matching seq, read page by page."""
    seqs: list[int] = []
    after = None
    with Session(db.app) as s:
        while True:
            page = search.search_changesets(session=s, trail_filter=f, after=after, limit=limit)
            seqs += [c.seq for c in page.items]
            if page.next_key is None:
                return seqs
            assert len(page.items) == limit
            after = page.next_key


def committed_at(db: DatabaseHandle, seq: int) -> datetime:
    with db.app.connect() as conn:
        return conn.scalar(
            text("SELECT committed_at FROM audit.changeset WHERE seq = :s"), {"s": seq}
        )


def test_the_seeded_trail_is_what_the_tests_expect(trail: Trail) -> None:
    everything = found(trail.db, TrailFilter())
    assert everything == sorted(everything, reverse=True)
    assert len(everything) == len(trail.seqs)
    with Session(trail.db.app) as s:
        page = search.search_changesets(session=s, trail_filter=TrailFilter())
    by_seq = {c.seq: c for c in page.items}
    oob = by_seq[trail.seqs["oob"]]
    assert oob.out_of_band
    assert oob.kind == "out_of_band"
    assert (oob.dataset_name, oob.deleted) == ("People", 1)
    stock_edit = by_seq[trail.seqs["ann stock"]]
    assert (stock_edit.inserted, stock_edit.deleted, stock_edit.reason) == (1, 1, "stock take 100%")
    assert by_seq[trail.seqs["people upload"]].inserted == 250


def test_every_filter_and_combination_matches_the_oracle(trail: Trail) -> None:
    db = trail.db
    seqs = sorted(trail.seqs.values())
    since = committed_at(db, seqs[2])
    until = committed_at(db, seqs[5])
    choices = {
        "dataset_id": [None, trail.people, trail.stock, 999_999],
        "actor": [None, trail.ann.username, trail.bob.username, "portal_superuser_nobody"],
        "kind": [None, "edit", "upload", "out_of_band"],
        "range": [(None, None), (since, None), (None, until), (since, until)],
        "text": ["", "typo", "zebra", "100%", "99", "no such thing", "_"],
    }
    checked = 0
    log = all_changesets(db)
    for dataset_id, actor, kind, (lo, hi), needle in itertools.product(*choices.values()):
        f = TrailFilter(dataset_id, actor, kind, lo, hi, needle)
        assert found(db, f) == expected(db, f, log), f
        checked += 1
    assert checked == 4 * 4 * 4 * 4 * 7
    # A few the oracle agrees on, spelled out.
    assert found(db, TrailFilter(kind="out_of_band")) == [trail.seqs["oob"]]
    assert found(db, TrailFilter(text="ZEBRA")) == [trail.seqs["bob note"]]  # a value, any case
    assert found(db, TrailFilter(text="100%")) == [trail.seqs["ann stock"]]  # % is literal
    assert found(db, TrailFilter(dataset_id=trail.people, actor=trail.ann.username)) == [
        trail.seqs["ann qty"],
        trail.seqs["people upload"],
    ]


def test_paging_has_no_gaps_or_duplicates_at_any_page_size(trail: Trail) -> None:
    everything = found(trail.db, TrailFilter())
    for limit in (1, 2, 3, 4, 7):
        assert found(trail.db, TrailFilter(), limit=limit) == everything
        assert found(trail.db, TrailFilter(dataset_id=trail.people), limit=limit) == expected(
            trail.db, TrailFilter(dataset_id=trail.people)
        )


def test_keyset_paging_across_tied_commit_times(fresh_db: DatabaseHandle) -> None:
    """Changesets sharing one committed_at (written directly, triggers off, as a restore
    might) still page in one total order by seq."""
    tied = datetime(2026, 1, 1, 12, tzinfo=UTC)
    moments = {s: tied if 3 <= s <= 9 else tied + timedelta(seconds=s - 6) for s in range(1, 12)}
    moments[10] = moments[11]  # a second tie
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        for seq in range(1, 12):
            moment = moments[seq]
            conn.execute(
                text(
                    "INSERT INTO audit.changeset (seq, kind, dataset_id, actor_username,"
                    " actor_display_name, committed_at, prev_hash, hash)"
                    " VALUES (:seq, 'edit', 1, 'x', 'X', :t, '', '')"
                ),
                {"seq": seq, "t": moment},
            )
    ordered = sorted(moments, key=lambda s: (moments[s], s), reverse=True)
    assert ordered == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # ties broken by seq
    for limit in (1, 2, 3, 4, 5):
        assert found(fresh_db, TrailFilter(), limit=limit) == ordered
        assert found(fresh_db, TrailFilter(dataset_id=1, actor="x"), limit=limit) == ordered


def test_events_filters_and_paging_with_ties(fresh_db: DatabaseHandle) -> None:
    tied = datetime(2026, 2, 1, tzinfo=UTC)
    with Session(fresh_db.app) as s, s.begin():
        for i in range(9):
            record_event(
                session=s,
                kind="export" if i % 3 == 0 else "audit_view",
                actor_username="amy" if i % 2 == 0 else "ben",
                target="dataset:7" if i < 4 else "audit",
                detail={"note": f"n{i}", "rows": i},
            )
    with fresh_db.owner.begin() as conn:  # copies of each
        ids = conn.scalars(text("SELECT id FROM audit.event ORDER BY id")).all()
        conn.execute(
            text(
                "INSERT INTO audit.event (kind, actor_username, target, detail)"
                " SELECT kind, actor_username, target, detail || '{\"tied\": true}'"
                " FROM audit.event ORDER BY id"
            )
        )
    # ... all at one tied moment: a time no INSERT may choose (migration 0011), so set as a
    # superuser with the triggers off
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text("UPDATE audit.event SET occurred_at = :t WHERE detail ? 'tied'"), {"t": tied}
        )

    def events(f: TrailFilter, limit: int) -> list[int]:
        out, after = [], None
        with Session(fresh_db.app) as s:
            while True:
                page = search.search_events(session=s, trail_filter=f, after=after, limit=limit)
                out += [e.id for e in page.items]
                if page.next_key is None:
                    return out
                after = page.next_key

    with fresh_db.owner.connect() as conn:
        every = conn.execute(
            text(
                "SELECT id, occurred_at, kind, actor_username, target, detail::text"
                " FROM audit.event"
            )
        ).all()
    every.sort(key=lambda e: (e[1], e[0]), reverse=True)
    assert len(every) == 2 * len(ids)
    cases = [
        (TrailFilter(), lambda e: True),
        (TrailFilter(kind="export"), lambda e: e[2] == "export"),
        (TrailFilter(actor="amy"), lambda e: e[3] == "amy"),
        (TrailFilter(dataset_id=7), lambda e: e[4] == "dataset:7"),
        (TrailFilter(text="N3"), lambda e: '"n3"' in e[5]),
        (TrailFilter(until=tied), lambda e: e[1] < tied),
        (TrailFilter(since=tied), lambda e: e[1] >= tied),
        (
            TrailFilter(actor="ben", kind="audit_view", since=tied),
            lambda e: e[3] == "ben" and e[2] == "audit_view" and e[1] >= tied,
        ),
    ]
    for f, keep in cases:
        want = [e[0] for e in every if keep(e)]
        for limit in (1, 2, 4, 50):
            assert events(f, limit) == want, (f, limit)


def test_event_text_search_reads_the_detail_s_values_not_its_json(
    fresh_db: DatabaseHandle,
) -> None:
    """An event's detail is searched for what it says, as a changeset's cells are: a value
    with a double quote or a backslash is found as typed (its JSON text escapes them), and a
    word that is only a key of the detail ("reason", "rows", "filter") matches nothing."""
    details = {
        "quoted": {"dataset": 'Sales "Q1"', "rows": 3},
        "path": {"file": "C:\\exports\\q1.csv"},
        "nested": {"list": "events", "filter": {"text": "zebra"}},
    }
    ids = {}
    with Session(fresh_db.app) as s, s.begin():
        for label, detail in details.items():
            ids[label] = record_event(
                session=s, kind="export", actor_username="amy", target="audit", detail=detail
            )

    def hits(needle: str) -> set[int]:
        with Session(fresh_db.app) as s:
            page = search.search_events(session=s, trail_filter=TrailFilter(text=needle))
        return {e.id for e in page.items}

    assert hits('Sales "Q1"') == {ids["quoted"]}
    assert hits("C:\\exports") == {ids["path"]}
    assert hits("zebra") == {ids["nested"]}
    assert hits("3") == {ids["quoted"]}
    for key_only in ("rows", "dataset", "filter", "text", "file"):
        assert hits(key_only) == set(), key_only


def test_changeset_detail_and_row_changes(trail: Trail) -> None:
    with Session(trail.db.app) as s:
        page = search.search_changesets(
            session=s, trail_filter=TrailFilter(dataset_id=trail.stock, actor=trail.ann.username)
        )
        [summary] = page.items
        detail = search.changeset_detail(session=s, changeset_id=summary.id)
        assert detail.row_ops == {"insert": 1, "update": 0, "delete": 1}
        assert detail.summary == summary
        stored = s.execute(
            text(
                "SELECT hash, prev_hash, client_info, detail, CAST(correlation_id AS text)"
                " FROM audit.changeset WHERE id = :id"
            ),
            {"id": summary.id},
        ).one()
        assert stored.hash
        assert stored.prev_hash
        assert stored.hash != stored.prev_hash
        assert (
            detail.hash,
            detail.prev_hash,
            detail.client_info,
            detail.detail,
            detail.correlation_id,
        ) == tuple(stored)
        assert not detail.bulk_loads
        inserted = search.row_changes(session=s, changeset_id=summary.id, op="insert")
        assert [(c.op, c.after) for c in inserted.items] == [
            ("insert", {"item": "washer", "count": 5})
        ]
        one_by_one = search.row_changes(session=s, changeset_id=summary.id, limit=1)
        assert len(one_by_one.items) == 1
        assert one_by_one.next_key is not None
        rest = search.row_changes(session=s, changeset_id=summary.id, after_id=one_by_one.next_key)
        assert [c.op for c in one_by_one.items + rest.items] == ["insert", "delete"]
        assert rest.next_key is None

        upload_seq = trail.seqs["people upload"]
        upload = next(
            c
            for c in search.search_changesets(session=s, trail_filter=TrailFilter()).items
            if c.seq == upload_seq
        )
        bulk = search.changeset_detail(session=s, changeset_id=upload.id)
        assert [(b.row_count, b.first_row_id) for b in bulk.bulk_loads] == [(250, 1)]
        assert bulk.row_ops == {"insert": 0, "update": 0, "delete": 0}


def test_decimals_keep_their_digits(trail: Trail) -> None:
    with Session(trail.db.app) as s:
        versions = search.row_history(session=s, dataset_id=trail.people, row_id=4)
    assert [v.op for v in versions] == ["insert", "delete"]
    assert versions[1].before["price"] == Decimal("4.04")
    assert versions[1].kind == "out_of_band"


def test_activity_per_day_by_actor_and_dataset(trail: Trail) -> None:
    today = datetime.now(UTC).date()
    with Session(trail.db.app) as s:
        by_actor = search.activity(session=s, trail_filter=TrailFilter())
        by_dataset = search.activity(session=s, trail_filter=TrailFilter(), by="dataset")
        none_ = search.activity(
            session=s, trail_filter=TrailFilter(until=datetime(2000, 1, 1, tzinfo=UTC))
        )
    totals = {p.key: p.changes for p in by_actor}
    assert {p.day for p in by_actor} == {today}
    assert totals[trail.ann.username] == 250 + 2 + 2
    assert totals[trail.bob.username] == 3 + 1
    assert sum(totals.values()) == 250 + 3 + 2 + 1 + 1 + 2
    assert {p.key: p.changes for p in by_dataset} == {"People": 250 + 2 + 1 + 1, "Stock": 3 + 2}
    assert none_ == []


def test_actors_lists_every_actor_once(trail: Trail) -> None:
    with Session(trail.db.app) as s:
        names = search.actors(session=s)
    assert {trail.ann.username, trail.bob.username} <= set(names)
    assert names == sorted(set(names))


def test_a_page_size_out_of_range_is_refused(trail: Trail) -> None:
    with Session(trail.db.app) as s, pytest.raises(ValidationError, match="page size"):
        search.search_changesets(session=s, trail_filter=TrailFilter(), limit=0)


def test_the_page_queries_use_the_indexes(trail: Trail) -> None:
    """With sequential scans priced out (the seeded log is tiny), each filter combination's
    page query is answered from the index made for it."""
    key = ChangesetKey(datetime.now(UTC), 10**9)
    cases = {
        "ix_changeset_dataset_actor_committed_seq": TrailFilter(
            dataset_id=trail.people,
            actor=trail.ann.username,
            since=datetime(2020, 1, 1, tzinfo=UTC),
        ),
        "ix_changeset_dataset_committed_seq": TrailFilter(dataset_id=trail.people),
        "ix_changeset_actor_committed_seq": TrailFilter(actor=trail.ann.username),
        "ix_changeset_kind_committed_seq": TrailFilter(kind="out_of_band"),
        "ix_changeset_committed_seq": TrailFilter(),
    }
    with Session(trail.db.app) as s:
        s.execute(text("SET enable_seqscan = off"))
        s.execute(text("SET enable_bitmapscan = off"))
        for index, f in cases.items():
            plan = search.explain(s, search.changesets_statement(f, after=key))
            assert f"Index Scan using {index}" in plan, (index, plan)
            assert "Sort" not in plan.replace("Incremental Sort", ""), plan


def test_a_text_search_puts_back_the_statement_timeout_it_found(trail: Trail) -> None:
    """The search stops itself after FREE_TEXT_TIMEOUT; afterwards the session's own timeout
    (one set on the role, say) holds again, not none."""
    with Session(trail.db.app) as s, s.begin():
        s.execute(text("SET LOCAL statement_timeout = '7s'"))
        search.search_changesets(session=s, trail_filter=TrailFilter(text="qty"))
        search.search_events(session=s, trail_filter=TrailFilter(text="qty"))
        assert s.scalar(text("SHOW statement_timeout")) == "7s"
