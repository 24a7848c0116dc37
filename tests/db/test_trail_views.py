"""The pages' domain side: exports of the trail and of a past state are formula-safe, exact and
recorded; views are recorded only when asked; admins only for the trail; the as-of state and a
row's versions; a bulk load read a page at a time."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit import search
from audit.changesets import open_changeset
from audit.events import record_event
from portal import trail_views
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import NotFound, PermissionDenied, ValidationError
from portal.trail_views import TrailFilter, day_after, day_start
from tests.conftest import DatabaseHandle
from tests.factories import data_table, make_user, upload_dataset
from tests.trail_seed import Trail, edit, seed_trail

pytestmark = pytest.mark.db


@pytest.fixture
def trail(fresh_db: DatabaseHandle) -> Trail:
    return seed_trail(fresh_db)


def event_rows(db: DatabaseHandle, kind: str) -> list[dict]:
    with db.owner.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor_username, target, detail FROM audit.event WHERE kind = :k ORDER BY id"
            ),
            {"k": kind},
        )
        return [dict(r._mapping) for r in rows]


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_trail_csv_with_row_changes_is_formula_safe_and_recorded(trail: Trail) -> None:
    with session_scope() as s:
        export = trail_views.export_trail(
            session=s,
            actor=trail.admin,
            trail_filter=TrailFilter(dataset_id=trail.people),
            include_rows=True,
        )
    table = read_csv(export.data)
    header, lines = table[0], table[1:]
    assert header[:3] == ["seq", "changeset_id", "committed_at"]
    assert header[-4:] == ["row_id", "op", "before", "after"]
    assert export.rows == 4  # changesets
    # The upload's rows are one bulk load: one line, no row change; the edits one per row.
    by_seq = {}
    for line in lines:
        by_seq.setdefault(int(line[0]), []).append(dict(zip(header, line, strict=True)))
    assert [r["row_id"] for r in by_seq[trail.seqs["people upload"]]] == [""]
    assert [r["row_id"] for r in by_seq[trail.seqs["ann qty"]]] == ["1", "2"]
    oob = by_seq[trail.seqs["oob"]][0]
    assert (oob["kind"], oob["out_of_band"], oob["op"]) == ("out_of_band", "true", "delete")
    # Row 4's note is "@cmd": inside the JSON cell, which starts with "{", so kept as JSON.
    assert json.loads(oob["before"])["note"] == "@cmd"
    [event] = event_rows(trail.db, "export")
    assert event["actor_username"] == trail.admin.username
    assert event["target"] == f"dataset:{trail.people}"
    assert event["detail"]["rows"] == 4
    assert event["detail"]["filter"]["dataset_id"] == trail.people


def test_trail_csv_neutralises_formula_reasons_and_names(trail: Trail) -> None:
    from tests.trail_seed import edit

    edit(
        trail.db,
        trail.ann,
        trail.stock,
        [("UPDATE {table} SET count = 1, _version = _version + 1 WHERE _row_id = 1", {})],
        "=cmd|' /C calc'!A0",
    )
    with session_scope() as s:
        export = trail_views.export_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(text="calc")
        )
    [header, line] = read_csv(export.data)
    assert line[header.index("reason")] == "'=cmd|' /C calc'!A0"
    for cell in line:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_trail_json_keeps_exact_values(trail: Trail) -> None:
    with session_scope() as s:
        export = trail_views.export_trail(
            session=s,
            actor=trail.admin,
            trail_filter=TrailFilter(kind="out_of_band"),
            fmt="json",
            include_rows=True,
        )
    [changeset] = json.loads(export.data, parse_float=Decimal)
    assert changeset["kind"] == "out_of_band"
    [row] = changeset["row_changes"]
    assert row["before"]["price"] == Decimal("4.04")
    assert export.mime == "application/json"
    assert event_rows(trail.db, "export")[0]["detail"]["format"] == "json"


def test_events_export(trail: Trail) -> None:
    with session_scope() as s:
        trail_views.search_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(), record=True
        )
    with session_scope() as s:
        export = trail_views.export_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(), trail_list="events"
        )
    [header, line] = read_csv(export.data)
    assert header == ["event_id", "occurred_at", "kind", "actor", "target", "detail"]
    assert (line[2], line[3], line[4]) == ("audit_view", trail.admin.username, "audit")


def test_views_are_recorded_only_when_asked(trail: Trail) -> None:
    with session_scope() as s:
        trail_views.search_trail(session=s, actor=trail.admin, trail_filter=TrailFilter())
        trail_views.changeset(session=s, actor=trail.admin, changeset_id=1)
    assert event_rows(trail.db, "audit_view") == []
    with session_scope() as s:
        trail_views.search_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(actor="x"), record=True
        )
        trail_views.changeset(session=s, actor=trail.admin, changeset_id=1, record=True)
        trail_views.chain_status(session=s, actor=trail.admin)
    assert [e["target"] for e in event_rows(trail.db, "audit_view")] == [
        "audit",
        "changeset:1",
        "audit:verify",
    ]


def test_a_chain_check_names_the_event_that_recorded_it(trail: Trail) -> None:
    """The check is recorded after it ran, as the events' next one: the head it reports is the
    one before its own record, which it names, so the page can say why the head moved."""
    with session_scope() as s:
        status = trail_views.chain_status(session=s, actor=trail.admin)
    with trail.db.owner.connect() as conn:
        seq, target = conn.execute(
            text("SELECT seq, target FROM audit.event ORDER BY seq DESC LIMIT 1")
        ).one()
    assert target == "audit:verify"
    assert status.events.ok
    assert status.recorded_seq == seq == status.events.head.seq + 1


def test_the_trail_is_for_admins_only(trail: Trail) -> None:
    with session_scope() as s:
        for call in (
            lambda: trail_views.search_trail(
                session=s, actor=trail.ann, trail_filter=TrailFilter()
            ),
            lambda: trail_views.export_trail(
                session=s, actor=trail.ann, trail_filter=TrailFilter()
            ),
            lambda: trail_views.chain_status(session=s, actor=trail.ann),
            lambda: trail_views.chain_heads(session=s, actor=trail.ann),
        ):
            with pytest.raises(PermissionDenied):
                call()
    assert event_rows(trail.db, "audit_view") == []
    assert event_rows(trail.db, "export") == []


def test_a_backwards_date_range_is_explained(trail: Trail) -> None:
    from datetime import UTC, datetime

    backwards = TrailFilter(
        since=datetime(2026, 2, 1, tzinfo=UTC), until=datetime(2026, 1, 1, tzinfo=UTC)
    )
    with session_scope() as s, pytest.raises(ValidationError, match="ends before it starts"):
        trail_views.search_trail(session=s, actor=trail.admin, trail_filter=backwards)


def test_as_of_and_its_export(trail: Trail) -> None:
    with session_scope() as s:
        before_edits = trail_views.as_of(
            session=s, actor=trail.ann, dataset_id=trail.people, seq=trail.seqs["people upload"]
        )
        after_oob = trail_views.as_of(
            session=s, actor=trail.ann, dataset_id=trail.people, seq=trail.seqs["oob"]
        )
    assert before_edits.rows == 250
    assert before_edits.frame["Qty"].tolist()[:2] == ["1", "2"]
    assert before_edits.frame["Price"].tolist()[9] == "10.10"  # exact decimals
    assert after_oob.rows == 249
    assert after_oob.frame["Qty"].tolist()[:2] == ["99", "99"]
    assert 4 not in after_oob.frame["Row id"].tolist()
    with session_scope() as s:
        export = trail_views.export_as_of(
            session=s, actor=trail.ann, dataset_id=trail.people, seq=trail.seqs["people upload"]
        )
    table = read_csv(export.data)
    assert table[0] == ["Name", "Code", "Qty", "Price", "Joined", "Note"]
    assert len(table) == 251
    notes = [row[5] for row in table[1:7]]
    assert notes == ["'=1+1", "'+SUM(A1:A2)", "-5", "'@cmd", "'\tTAB", "'\rCR"]  # -5: a number
    [event] = event_rows(trail.db, "export")
    assert event["detail"]["as_of_seq"] == trail.seqs["people upload"]
    assert event["detail"]["rows"] == 250
    with session_scope() as s, pytest.raises(NotFound, match="no changeset"):
        trail_views.as_of(
            session=s, actor=trail.ann, dataset_id=trail.people, seq=trail.seqs["stock upload"]
        )


def test_row_versions_and_bulk_pages(trail: Trail) -> None:
    with session_scope() as s:
        frame = trail_views.row_versions_frame(
            session=s, actor=trail.ann, dataset_id=trail.people, row_id=1
        )
        with pytest.raises(NotFound, match="never existed"):
            trail_views.row_versions_frame(
                session=s, actor=trail.ann, dataset_id=trail.people, row_id=9999
            )
        upload_id = s.scalar(
            text("SELECT id FROM audit.changeset WHERE seq = :s"),
            {"s": trail.seqs["people upload"]},
        )
        bulk_id = s.scalar(
            text("SELECT id FROM audit.bulk_load WHERE changeset_id = :c"), {"c": upload_id}
        )
        page = trail_views.bulk_page(
            session=s,
            actor=trail.ann,
            detail=trail_views.changeset(session=s, actor=trail.ann, changeset_id=upload_id),
            bulk_load_id=bulk_id,
            offset=240,
            limit=50,
        )
    assert frame["Version"].tolist() == [1, 2]
    assert frame["Qty"].tolist() == ["1", "99"]
    assert frame["Changed cells"].tolist() == ["", "Qty: 1 → 99"]
    assert page["Row id"].tolist() == list(range(241, 251))
    assert page["Name"].tolist()[-1] == "Person 250"


def many_rows_changed(db: DatabaseHandle, count: int) -> Actor:
    """An admin, who uploaded ``count`` rows; then one out-of-band UPDATE of all of them (one
    changeset of ``count`` captured row changes, about 200 bytes each)."""
    with Session(db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
    admin = Actor(boss, "Boss", "admin")
    rows = b"".join(b"n%d,%d\n" % (i, i) for i in range(count))
    dataset_id = upload_dataset(admin, b"Name,Qty\n" + rows, name="Many")
    table = data_table(db.app, dataset_id)
    with db.app.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET name = name || repeat('x', 60)"))
    return admin


def test_a_trail_export_larger_than_an_upload_may_be_is_refused_and_not_recorded(
    fresh_db: DatabaseHandle,
) -> None:
    """Built in the server's memory, like every download: at most the upload limit."""
    admin = many_rows_changed(fresh_db, 20_000)  # about 3 MB of images
    for fmt in ("csv", "json"):
        with session_scope() as s, pytest.raises(ValidationError, match="larger than 1 MB"):
            trail_views.export_trail(
                session=s,
                actor=admin,
                trail_filter=TrailFilter(),
                fmt=fmt,  # type: ignore[arg-type]
                include_rows=True,
                max_mb=1,
            )
    assert event_rows(fresh_db, "export") == []
    with session_scope() as s:
        export = trail_views.export_trail(
            session=s, actor=admin, trail_filter=TrailFilter(), include_rows=True, max_mb=10
        )
    assert len(read_csv(export.data)) == 1 + 1 + 20_000  # header, the upload, the row changes


def test_a_large_changeset_is_exported_as_a_stream_and_stopped_early(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A changeset with more row changes than an export holds at once is read as a stream: a
    size limit stops it before the rest is read, and without a limit it is written whole."""
    import tracemalloc

    admin = many_rows_changed(fresh_db, 30_000)  # about 6 MB of images in one changeset
    monkeypatch.setattr(trail_views, "ROW_CHANGE_BATCH", 5_000)
    for fmt in ("csv", "json"):
        with session_scope() as s, pytest.raises(ValidationError, match="larger than 1 MB"):
            tracemalloc.start()
            try:
                trail_views.export_trail(
                    session=s,
                    actor=admin,
                    trail_filter=TrailFilter(kind="out_of_band"),
                    fmt=fmt,  # type: ignore[arg-type]
                    include_rows=True,
                    max_mb=1,
                )
            finally:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        # Read whole, its 30,000 rows alone would take well over 10 MB.
        assert peak < 6 * 1024 * 1024, (fmt, peak)
    for fmt in ("csv", "json"):
        with session_scope() as s:
            export = trail_views.export_trail(
                session=s,
                actor=admin,
                trail_filter=TrailFilter(),
                fmt=fmt,  # type: ignore[arg-type]
                include_rows=True,
                max_mb=20,
            )
        if fmt == "csv":
            lines = read_csv(export.data)[1:]
            # Newest first: the 30,000 row changes, then the upload (a bulk load, no rows).
            assert [line[-4] for line in lines] == [*map(str, range(1, 30_001)), ""]
        else:
            changesets = json.loads(export.data)
            assert [len(c.get("row_changes", [])) for c in changesets] == [30_000, 0]
            assert changesets[0]["row_changes"][-1]["after"]["name"] == "n29999" + "x" * 60


def test_only_admins_see_where_a_change_came_from(trail: Trail) -> None:
    # A changeset's client info (the editor's address and browser) is audit detail; the History
    # page opens changesets for every role.
    where = {"ip": "10.0.0.9", "user_agent": "Firefox/140"}
    with Session(trail.db.app) as s, s.begin():
        changeset_id = open_changeset(
            session=s,
            kind="edit",
            actor_username=trail.ann.username,
            actor_display_name=trail.ann.display_name,
            dataset_id=trail.people,
            reason="from the office",
            client_info=where,
        )
    viewer = Actor("vic", "Vic", "viewer")
    with session_scope() as s:
        shown = {
            who.role: trail_views.changeset(session=s, actor=who, changeset_id=changeset_id)
            for who in (viewer, trail.ann, trail.admin)
        }
    assert shown["admin"].client_info == where
    assert shown["viewer"].client_info == shown["editor"].client_info == {}
    assert shown["viewer"].summary.reason == "from the office"  # the rest as before


def test_a_dataset_s_activity_covers_its_last_90_days(trail: Trail) -> None:
    viewer = Actor("vic", "Vic", "viewer")

    def rows_changed() -> int:
        with session_scope() as s:
            frame = trail_views.dataset_activity_frame(
                session=s, actor=viewer, dataset_id=trail.people
            )
        return int(frame["rows changed"].sum())

    everything = rows_changed()
    with trail.db.superuser.begin() as conn:  # the upload, moved 90 days back (triggers off)
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        moved = conn.scalar(
            text(
                "UPDATE audit.changeset SET committed_at = committed_at - interval '90 days'"
                " WHERE seq = :seq RETURNING inserted"
            ),
            {"seq": trail.seqs["people upload"]},
        )
    assert moved
    assert rows_changed() == everything - moved
    with session_scope() as s, pytest.raises(NotFound):
        trail_views.dataset_activity_frame(session=s, actor=viewer, dataset_id=10**9)


def test_activity_covers_every_day_of_its_range_and_names_people_as_tables_do(
    trail: Trail,
) -> None:
    """One line per person and busy day, one at 0 per quiet day of the range (a chart's axis
    then spans the range); a person by their latest display name beside the username, one
    series however often that name changed."""
    renamed = Actor(trail.ann.username, "Ann Z", "editor")  # a later changeset, a new name
    edit(
        trail.db,
        renamed,
        trail.people,
        [("UPDATE {table} SET qty = 5, _version = _version + 1 WHERE _row_id = 5", {})],
        "renamed since",
    )
    today = datetime.now(UTC).date()
    week = TrailFilter(since=day_start(today - timedelta(days=6)), until=day_after(today))
    with session_scope() as s:
        frame = trail_views.activity_frame(session=s, actor=trail.admin, trail_filter=week)
        datasets = trail_views.activity_frame(
            session=s, actor=trail.admin, trail_filter=week, by="dataset"
        )
        nothing = trail_views.activity_frame(
            session=s,
            actor=trail.admin,
            trail_filter=TrailFilter(
                since=day_start(today - timedelta(days=400)), until=week.since
            ),
        )
    days = [(today - timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert list(frame.columns) == ["day", "actor", "rows changed"]
    assert frame["day"].tolist()[:6] == days[:6]  # the quiet days, once each, in order
    assert frame["rows changed"].tolist()[:6] == [0] * 6
    busy = frame[frame["day"] == today.isoformat()]
    assert sorted(busy["actor"]) == sorted(
        [
            f"Ann Z ({trail.ann.username})",
            f"Bob B ({trail.bob.username})",
            str(trail.db.superuser.url.username),  # out of band: the database user, once
        ]
    )
    assert sorted(set(datasets["day"])) == days
    assert nothing.empty  # no change in the range: nothing to draw, not 365 days of 0


@pytest.mark.parametrize(
    ("since", "until", "points", "expected"),
    [
        (date(2026, 2, 27), date(2026, 3, 2), [], ["2026-02-27", "2026-02-28", "2026-03-01"]),
        (None, date(2026, 1, 3), [date(2026, 1, 1)], ["2026-01-01", "2026-01-02"]),
        (date(2026, 1, 30), None, [date(2026, 1, 31)], ["2026-01-30", "2026-01-31"]),
        (
            None,
            None,
            [date(2026, 1, 3), date(2026, 1, 1)],
            ["2026-01-01", "2026-01-02", "2026-01-03"],
        ),
        (None, None, [], []),
    ],
)
def test_the_days_a_chart_covers(
    since: date | None, until: date | None, points: list[date], expected: list[str]
) -> None:
    trail_filter = TrailFilter(
        since=day_start(since) if since else None, until=day_start(until) if until else None
    )
    assert [d.isoformat() for d in trail_views.days_of(trail_filter, points)] == expected


def test_display_names_are_the_latest_recorded(trail: Trail) -> None:
    edit(trail.db, Actor(trail.bob.username, "Robert B", "editor"), trail.people, [], "renamed")
    with session_scope() as s:
        names = search.display_names(
            session=s, usernames=[trail.ann.username, trail.bob.username, "nobody", "x'; --"]
        )
    assert names == {trail.ann.username: "Ann A", trail.bob.username: "Robert B"}


def test_events_read_in_words_with_the_names_of_what_they_name(trail: Trail) -> None:
    """Targets and the ids a check recorded read as the datasets' names now and the
    changesets' numbers; a failed sign-in's target is what was typed, even if it looks like
    one of the portal's own (it is not looked up); only admins read events."""
    with trail.db.owner.connect() as conn:
        changeset_id, seq = conn.execute(
            text("SELECT id, seq FROM audit.changeset WHERE seq = :s"),
            {"s": trail.seqs["bob note"]},
        ).one()
    with Session(trail.db.app) as s, s.begin():
        for kind, target, detail in [
            ("sign_in_failed", f"dataset:{trail.people}", {"reason": "unknown_user"}),
            ("audit_view", f"changeset:{changeset_id}", {"changeset_id": changeset_id, "seq": seq}),
            ("audit_view", "changeset:999999", {}),
            (
                "audit_view",
                "audit:datasets",
                {"ok": False, "datasets": 3, "differing": [trail.stock, 10**6]},
            ),
            ("export", f"dataset:{trail.people}", {"filter": {"dataset_id": trail.stock}}),
        ]:
            record_event(session=s, kind=kind, actor_username=None, target=target, detail=detail)
    with session_scope() as s:
        page = trail_views.search_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(), trail_list="events"
        )
        frame = trail_views.events_frame(session=s, actor=trail.admin, events=page.items)
        with pytest.raises(PermissionDenied):
            trail_views.events_frame(session=s, actor=trail.ann, events=page.items)
    assert list(frame.columns) == ["When", "Kind", "Who", "Target", "Detail"]
    # Recorded with no actor: said so, not a blank cell.
    assert set(frame["Who"].tolist()[:5]) == {trail_views.NOBODY_SIGNED_IN}
    assert frame[["Target", "Detail"]].values.tolist()[:5] == [
        [f"People (dataset {trail.people})", "filter: dataset Stock"],
        [
            "Check of every dataset against the log",
            f"2 datasets of 3 differ from their audit log: Stock (dataset {trail.stock}), "
            "dataset 1000000",
        ],
        ["changeset id 999999", ""],
        [f"Changeset #{seq}", f"changeset #{seq} (id {changeset_id}) opened"],
        [f"dataset:{trail.people}", "reason: no such account"],
    ]


def test_every_kind_the_database_allows_has_a_label(fresh_db: DatabaseHandle) -> None:
    """The Audit page shows each kind in words: every kind the migrated database's CHECKs let
    into the log (not only the models' lists) has a label of its own."""
    with fresh_db.owner.connect() as conn:
        checks = conn.execute(
            text(
                "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'c' AND connamespace = 'audit'::regnamespace"
                " AND pg_get_constraintdef(oid) LIKE 'CHECK ((kind = ANY %'"
            )
        ).all()
    assert sorted(table for table, _ in checks) == ["audit.changeset", "audit.event"]
    allowed = {kind for _, check in checks for kind in re.findall(r"'([^']+)'", check)}
    assert {"sign_in_failed", "out_of_band"} <= allowed  # the checks were read
    assert allowed <= set(trail_views.KIND_LABELS)


def test_an_event_names_its_actor_as_the_tables_do_but_a_failed_sign_in_as_typed(
    trail: Trail,
) -> None:
    """Events keep a username only: shown with the account's display name ("Ann A (ann)", as
    changesets are); a failed sign-in's username is whatever was typed, shown as typed even
    when it is an account's; one of no account (the command line's) stays as recorded."""
    ann = trail.ann.username
    with Session(trail.db.app) as s, s.begin():
        for kind, who in [
            ("sign_in", ann),
            ("sign_in_failed", ann),
            ("export", "cli:root"),
        ]:
            record_event(session=s, kind=kind, actor_username=who, target="", detail={})
    with session_scope() as s:
        page = trail_views.search_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(), trail_list="events"
        )
        frame = trail_views.events_frame(session=s, actor=trail.admin, events=page.items)
    assert frame["Who"].tolist()[:3] == ["cli:root", ann, f"Ann A ({ann})"]
