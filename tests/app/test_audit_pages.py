"""The Audit page (admins) and the History page (everyone) in AppTest: the trail filtered and
paged, a changeset's rows before -> after, out-of-band changes flagged, the chain verified, the
table as of a changeset, a row's versions from a link, exports — and the events they leave."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from audit.events import record_event
from portal import trail_views, uploads
from portal.actor import Actor
from portal.db import session_scope
from portal.trail_views import TrailFilter
from portal.ui.markdown import md_escape
from tests.app.conftest import (
    app_test,
    events,
    localized,
    new_user,
    show_app,
    sign_in,
    signed_in,
    texts,
)
from tests.conftest import DatabaseHandle
from tests.db.test_browse import seed_people, upload
from tests.factories import make_user, table_name
from tests.trail_seed import Trail, edit, seed_trail, stock_csv

pytestmark = pytest.mark.app

AUDIT = "pages/7_audit.py"
HISTORY = "pages/5_history.py"


@pytest.fixture
def trail(fresh_db: DatabaseHandle) -> Trail:
    return seed_trail(fresh_db)


def on_page(db: DatabaseHandle, role: str, page: str) -> tuple[AppTest, str]:
    at, name = signed_in(db, role)
    show_app(at)
    at.switch_page(page).run()
    assert not at.exception
    return at, name


def changesets_shown(at: AppTest) -> list[int]:
    return at.main.dataframe[0].value["#"].tolist()


def test_an_admin_filters_the_trail_and_each_view_is_recorded_once(trail: Trail) -> None:
    at, admin = on_page(trail.db, "admin", AUDIT)
    assert at.title[0].value == "Audit"
    assert changesets_shown(at) == sorted(trail.seqs.values(), reverse=True)
    assert localized(at.main.dataframe[0]) == ["Inserted", "Updated", "Deleted"]
    views = events(trail.db, "audit_view")
    assert len(views) == 1
    assert (views[0]["actor_username"], views[0]["detail"]["list"]) == (admin, "changesets")
    at.run()  # a rerun with the same filters records nothing new
    assert len(events(trail.db, "audit_view")) == 1

    assert at.selectbox(key="audit.kind.changesets").options == [
        "(all)",
        "Upload",
        "Edit",
        "Revert",
        "Schema change",
        "⚠ OUT OF BAND",
        "Dataset set-up",
    ]
    assert set(at.main.dataframe[0].value["Kind"]) == {"Upload", "Edit", "⚠ OUT OF BAND"}
    at.selectbox(key="audit.kind.changesets").select("out_of_band").run()
    assert changesets_shown(at) == [trail.seqs["oob"]]
    assert at.main.dataframe[0].value["Kind"].tolist() == ["⚠ OUT OF BAND"]
    assert len(events(trail.db, "audit_view")) == 2
    assert events(trail.db, "audit_view")[1]["detail"]["filter"]["kind"] == "out_of_band"

    at.selectbox(key="audit.kind.changesets").select(None)
    at.selectbox(key="audit.dataset").select(trail.people)
    at.selectbox(key="audit.actor").select(trail.ann.username).run()
    assert changesets_shown(at) == [trail.seqs["ann qty"], trail.seqs["people upload"]]
    chart_note = "The text above is not applied here"
    assert not any(chart_note in c.value for c in at.caption)
    at.text_input(key="audit.text").input("zebra").run()
    assert "No changesets match these filters." in [i.value for i in at.info]
    assert not [b for b in at.button if b.label in ("First", "Newer", "Older")]  # no pages
    assert any(chart_note in c.value for c in at.caption)  # the chart says it ignores the text
    at.selectbox(key="audit.actor").select(None).run()
    assert changesets_shown(at) == [trail.seqs["bob note"]]

    at.radio(key="audit.list").set_value("events").run()
    assert not at.exception
    assert at.selectbox(key="audit.kind.events").options == [
        "(all)",
        "Signed in",
        "Failed sign-in",
        "Locked out",
        "Signed out",
        "User account changed",
        "Exported",
        "Audit viewed",
    ]


def widths(frame: object) -> dict[str, str | int]:
    """The widths a shown dataframe gives its columns (those it sets)."""
    config = json.loads(frame.proto.columns or "{}")  # type: ignore[attr-defined]
    return {name: c["width"] for name, c in config.items() if c.get("width")}


def test_the_trail_s_text_columns_are_wide_enough_to_read(trail: Trail) -> None:
    """A reason was cut off after 30 characters ("Correct quantity and price aft"): the grid
    sizes a column to its first rows only. The text columns whose values vary most have widths
    of their own: a reason and an event's details the widest, a kind or a target its longest
    label."""
    at, _ = on_page(trail.db, "admin", AUDIT)
    assert widths(at.main.dataframe[0]) == {"Kind": 120, "What": "medium", "Reason": "medium"}
    assert "new dataset" in at.main.dataframe[0].value["What"].tolist()  # each upload creating one
    # Who and why in view without scrolling sideways (Reason came after What and Dataset).
    assert list(at.main.dataframe[0].value.columns)[:5] == ["#", "When", "Kind", "Who", "Reason"]
    assert localized(at.main.dataframe[0]) == ["Inserted", "Updated", "Deleted"]  # kept
    at.radio(key="audit.list").set_value("events").run()
    assert widths(at.main.dataframe[0]) == {"Kind": 150, "Target": 250, "Detail": "large"}


def test_the_trail_pages_newest_first(trail: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("portal.trail_views.PAGE_SIZE", 2)
    at, _ = on_page(trail.db, "admin", AUDIT)
    everything = sorted(trail.seqs.values(), reverse=True)
    seen = changesets_shown(at)
    while not at.button(key="audit.pager.older").disabled:
        at.button(key="audit.pager.older").click().run()
        seen += changesets_shown(at)
    assert seen == everything
    at.button(key="audit.pager.newer").click().run()
    assert changesets_shown(at) == everything[2:4]
    at.button(key="audit.pager.first").click().run()
    assert changesets_shown(at) == everything[:2]


def test_an_out_of_band_changeset_opens_flagged_with_its_deleted_row(trail: Trail) -> None:
    at, _ = on_page(trail.db, "admin", AUDIT)
    oob = next(
        o for o in at.selectbox(key="audit.open").options if o.startswith(f"#{trail.seqs['oob']} ")
    )
    assert oob.startswith(f"#{trail.seqs['oob']} · ⚠ OUT OF BAND · People · ")
    at.selectbox(key="audit.open").select(oob).run()
    assert not at.exception
    assert any("Out of band" in w.value for w in at.warning)
    # By the database user, named once (its display name is its username).
    superuser = md_escape(str(trail.db.superuser.url.username))
    assert any(f"on **People** by **{superuser}**, 20" in m.value for m in at.markdown)
    deleted = at.main.dataframe[1].value
    assert deleted["Row id"].tolist() == [4]
    assert deleted["Name"].tolist() == ["Person 004"]
    assert deleted["Price"].tolist() == ["4.04"]
    opened = [e for e in events(trail.db, "audit_view") if e["target"].startswith("changeset:")]
    assert len(opened) == 1


def test_an_update_shows_before_and_after_with_changed_cells_highlighted(trail: Trail) -> None:
    at, _ = on_page(trail.db, "admin", AUDIT)
    label = next(
        o
        for o in at.selectbox(key="audit.open").options
        if o.startswith(f"#{trail.seqs['ann qty']} ")
    )
    assert label.startswith(f"#{trail.seqs['ann qty']} · Edit · People · ")
    at.selectbox(key="audit.open").select(label).run()
    ann = md_escape(f"{trail.ann.display_name} ({trail.ann.username})")
    assert any(m.value.startswith(f"**Edit** on **People** by **{ann}**, ") for m in at.markdown)
    assert not [r for r in at.radio if (r.key or "").endswith(".op")]  # one kind of row change
    assert "**Updated rows (2)**" in [m.value for m in at.markdown]
    frame = at.main.dataframe[1]
    assert frame.value[["Row id", "State", "Qty"]].values.tolist() == [
        [1, "before", "1"],
        [1, "after", "99"],
        [2, "before", "2"],
        [2, "after", "99"],
    ]
    styles = frame.proto.arrow_data.styler.styles
    for row in range(4):  # the four changed cells (Qty), red before and green after
        assert f"_row{row}_col2" in styles
    assert "col0" not in styles
    assert "col1" not in styles


def chart_data(at: AppTest) -> list[dict]:
    """The rows the page's one chart plots."""
    [chart] = [e for e in at.main if getattr(e, "type", None) == "vega_lite_chart"]
    table = pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all()
    return table.to_pylist()


def test_the_activity_chart_draws_an_actor_or_a_dataset_named_day(trail: Trail) -> None:
    """Actors and datasets are the chart's series; one named like its axis ("day", a valid
    username and dataset name) must be drawn like any other, not break the page."""
    with Session(trail.db.app) as s, s.begin():
        make_user(s, role="editor", username="day", display_name="Day")
    day = Actor("day", "Day", "editor")
    upload(day, stock_csv(), uploads.NewDataset("day"))
    edit(
        trail.db,
        day,
        trail.people,
        [("UPDATE {table} SET qty = 7, _version = _version + 1 WHERE _row_id = 5", {})],
        "by day",
    )
    at, _ = on_page(trail.db, "admin", AUDIT)
    assert not at.exception
    drawn = {(r["actor"], r["rows changed"]) for r in chart_data(at) if "day" in r["actor"]}
    assert drawn == {("Day (day)", 4)}  # three rows uploaded, one updated
    at.radio(key="audit.activity.by").set_value("dataset").run()
    assert not at.exception
    assert [r["rows changed"] for r in chart_data(at) if r["dataset"] == "day"] == [3]


def test_the_activity_chart_spans_the_30_days_it_names_and_names_people_as_tables_do(
    trail: Trail,
) -> None:
    """ "The last 30 days", but the chart was given only the days with changes: one busy day
    filled its whole width. And its legend named people by username (ann) where the tables
    name them "Ann A (ann)". Every day is there now, a quiet one at 0."""
    at, _ = on_page(trail.db, "admin", AUDIT)
    assert any(c.value.startswith("The last 30 days") for c in at.caption)
    points = chart_data(at)
    today = datetime.now(UTC).date()
    month = [(today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)]
    assert sorted({p["day"] for p in points}) == month
    assert [p["day"] for p in points] == sorted(p["day"] for p in points)
    quiet = [p for p in points if p["day"] != today.isoformat()]
    assert len(quiet) == 29  # each quiet day once
    assert {p["rows changed"] for p in quiet} == {0}
    busy = {p["actor"]: p["rows changed"] for p in points if p["day"] == today.isoformat()}
    with trail.db.owner.connect() as conn:
        logged = conn.execute(
            text(
                "SELECT actor_username, actor_display_name, sum(inserted + updated + deleted)"
                " FROM audit.changeset GROUP BY 1, 2"
            )
        ).all()
    assert busy == {trail_views.who(shown, name): int(n) for name, shown, n in logged}
    assert busy[f"Ann A ({trail.ann.username})"] > 0
    superuser = str(trail.db.superuser.url.username)
    assert busy[superuser] == 1  # out of band: the database user, once (no display name)
    at.radio(key="audit.activity.by").set_value("dataset").run()
    points = chart_data(at)
    assert sorted({p["day"] for p in points}) == month
    assert {p["dataset"] for p in points} == {"People", "Stock"}


def test_verify_now_reports_an_intact_chain_and_shows_the_heads(trail: Trail) -> None:
    at, _ = on_page(trail.db, "admin", AUDIT)
    head, shown_event_head = at.code[0].value, at.code[1].value
    assert len(head) == 64
    with trail.db.owner.connect() as conn:  # the events head when the page was drawn
        assert (
            conn.scalar(
                text("SELECT count(*) FROM audit.event WHERE hash = :h"), {"h": shown_event_head}
            )
            == 1
        )
    at.button(key="audit.verify").click().run()
    verified = [e for e in events(trail.db, "audit_view") if e["target"] == "audit:verify"]
    detail = verified[0]["detail"]
    assert detail["events"] > 0  # the seed's and this session's sign-ins, views, ...
    recorded = detail["events"] + 1  # the check itself, recorded after it ran
    assert [s.value for s in at.success] == [
        f"Chain intact: {len(trail.seqs)} changesets, head #{max(trail.seqs.values())}.",
        f"Event chain intact: {detail['events']:,} events, head #{detail['events']} "
        f"(this check was then recorded as event #{recorded}).",
    ]
    with trail.db.owner.connect() as conn:
        assert conn.scalar(
            text("SELECT target FROM audit.event WHERE seq = :s"), {"s": recorded}
        ) == ("audit:verify")
    # Drawn again, the head above is that record: the two numbers on screen now agree.
    at.run()
    assert f"**Event chain head** — event #{recorded}" in [m.value for m in at.markdown]
    # Folded under one line naming both heads, above the trail (open, it filled the screen).
    [chain] = [e for e in at.expander if e.label.startswith("Chain heads:")]
    assert chain.label == (
        f"Chain heads: changeset #{max(trail.seqs.values())}, event #{recorded} — keep copies, "
        "verify the log"
    )
    assert not chain.proto.expanded
    assert any(f"recorded as event #{recorded})" in s.value for s in at.success)
    assert detail["ok"] is True
    assert detail["head"] == head
    with trail.db.owner.connect() as conn:
        event_head = conn.scalar(
            text("SELECT hash FROM audit.event WHERE seq = :s"), {"s": detail["events"]}
        )
    assert detail["event_head"] == event_head
    assert any(c.value.startswith("Checked at ") for c in at.caption)
    assert not any("not covered" in c.value for c in at.caption)

    # A changeset committed since: the check kept on the page says it does not cover it.
    edit(
        trail.db,
        trail.ann,
        trail.people,
        [("UPDATE {table} SET qty = 7, _version = _version + 1 WHERE _row_id = 3", {})],
        "later",
    )
    at.run()
    [stale] = [c.value for c in at.caption if "not covered" in c.value]
    assert "1 changeset committed since is not covered by that check" in stale


def test_verify_now_reports_a_broken_event_chain(trail: Trail) -> None:
    at, _ = on_page(trail.db, "admin", AUDIT)
    with trail.db.superuser.begin() as conn:  # every trigger off: the first event removed
        conn.execute(text("SET session_replication_role = replica"))
        removed = conn.scalar(text("DELETE FROM audit.event WHERE seq = 1 RETURNING seq"))
    assert removed == 1
    at.button(key="audit.verify").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == [
        f"Chain intact: {len(trail.seqs)} changesets, head #{max(trail.seqs.values())}."
    ]
    [error] = [e.value for e in at.error]
    assert error.startswith("Event chain broken at event #1: expected seq 1 next, found 2")
    verified = [e for e in events(trail.db, "audit_view") if e["target"] == "audit:verify"]
    assert (verified[0]["detail"]["ok"], verified[0]["detail"]["failed_event_seq"]) == (False, 1)


def test_a_deleted_chain_head_is_reported_and_the_rest_of_the_page_still_works(
    trail: Trail,
) -> None:
    """The chain head row deleted (a superuser, triggers off): the page says so where the head
    would be, and still shows the trail and verifies the log, which is when an admin needs it."""
    with trail.db.superuser.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("DELETE FROM audit.chain_head"))
    at, _ = on_page(trail.db, "admin", AUDIT)
    [error] = [e.value for e in at.error]
    assert "the chain head row (audit.chain_head) is missing: it was deleted" in error
    assert changesets_shown(at) == sorted(trail.seqs.values(), reverse=True)
    at.button(key="audit.verify").click().run()
    assert not at.exception
    assert any("Chain broken" in e.value and "audit.chain_head" in e.value for e in at.error)
    verified = [e for e in events(trail.db, "audit_view") if e["target"] == "audit:verify"]
    assert verified[0]["detail"]["ok"] is False


def test_an_admin_checks_every_dataset_against_the_log(trail: Trail) -> None:
    at, _ = on_page(trail.db, "admin", AUDIT)
    check = "Check every dataset against the log"
    [button] = [b for b in at.button if b.label == check]
    button.click().run()
    assert not at.exception
    assert "Both datasets match their audit log, cell by cell." in [s.value for s in at.success]
    with trail.db.app.begin() as conn:  # the table's owner, around capture
        table = table_name(trail.db.app, trail.stock)
        conn.execute(text(f"ALTER TABLE data.{table} DISABLE TRIGGER audit_capture_delete"))
        conn.execute(text(f"DELETE FROM data.{table} WHERE _row_id = 1"))
        conn.execute(text(f"ALTER TABLE data.{table} ENABLE TRIGGER audit_capture_delete"))
    [button] = [b for b in at.button if b.label == check]
    button.click().run()
    [error] = [e.value for e in at.error]
    assert "does not match its audit log: 1 row of the log not in the table (ids 1)" in error
    checked = [
        e["detail"] for e in events(trail.db, "audit_view") if e["target"] == "audit:datasets"
    ]
    assert [(d["ok"], d["differing"]) for d in checked] == [(True, []), (False, [trail.stock])]


def test_a_dataset_check_notes_a_stored_row_count_its_table_does_not_bear_out(
    trail: Trail,
) -> None:
    with trail.db.app.begin() as conn:  # as a write with triggers off leaves it
        conn.execute(
            text("UPDATE portal.datasets SET row_count = row_count + 5 WHERE id = :i"),
            {"i": trail.stock},
        )
    at, _ = on_page(trail.db, "admin", AUDIT)
    [button] = [b for b in at.button if b.label == "Check every dataset against the log"]
    button.click().run()
    assert not at.exception
    assert "Both datasets match their audit log, cell by cell." in [s.value for s in at.success]
    [warning] = [w.value for w in at.warning]
    assert "“Stock”: 3 rows, as the audit log has them; its stored row count says 8" in warning
    assert f"portal dataset recount {trail.stock}" in warning  # quoted as markdown text
    [checked] = [e for e in events(trail.db, "audit_view") if e["target"] == "audit:datasets"]
    assert checked["detail"] == {
        "ok": True,
        "datasets": 2,
        "differing": [],
        "miscounted": [trail.stock],
    }


def test_a_dataset_check_that_finds_a_forged_bulk_stream_is_recorded(trail: Trail) -> None:
    """Checking the datasets against the log is recorded whatever it finds, as a verification
    of the chains is: also when a bulk load's stored stream no longer matches its SHA-256,
    the worst outcome, which stops the check with an error."""
    at, admin = on_page(trail.db, "admin", AUDIT)
    with trail.db.superuser.begin() as conn:  # around the append-only trigger
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE audit.bulk_content SET content_sha256 = repeat('0', 64)"))
    [button] = [b for b in at.button if b.label == "Check every dataset against the log"]
    button.click().run()
    assert not at.exception
    assert at.error  # the page says what went wrong
    checked = [e for e in events(trail.db, "audit_view") if e["target"] == "audit:datasets"]
    assert len(checked) == 1
    assert (checked[0]["actor_username"], checked[0]["detail"]["ok"]) == (admin, False)


def test_a_dataset_check_that_meets_a_rewritten_row_image_says_so_and_is_recorded(
    trail: Trail,
) -> None:
    """A row change a superuser rewrote into something that is no row (a JSON list): the
    check stops with what it met, in words, not a traceback, and is recorded as failed."""
    at, _ = on_page(trail.db, "admin", AUDIT)
    with trail.db.superuser.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE audit.row_change SET after = '[1, 2]' WHERE op = 'update'"))
    [button] = [b for b in at.button if b.label == "Check every dataset against the log"]
    button.click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("The check stopped: row change ")
    assert error.endswith("holds [1, 2], not a row: it was altered after sealing")
    [checked] = [e for e in events(trail.db, "audit_view") if e["target"] == "audit:datasets"]
    assert checked["detail"]["ok"] is False
    assert "not a row" in checked["detail"]["problem"]


def test_the_trail_exports_as_formula_safe_csv_and_is_recorded(trail: Trail) -> None:
    at, admin = on_page(trail.db, "admin", AUDIT)
    at.selectbox(key="audit.dataset").select(trail.stock).run()
    at.checkbox(key="audit.export.rows").check().run()
    at.button(key="audit.export.csv").click().run()
    assert not at.exception
    [export] = events(trail.db, "export")
    assert (export["actor_username"], export["target"]) == (admin, f"dataset:{trail.stock}")
    assert export["detail"]["include_rows"] is True
    assert export["detail"]["rows"] == 2
    download = at.get("download_button")[0]
    assert download.proto.label.startswith("Download audit-changesets-")
    assert download.proto.label.endswith(".csv (2 changesets)")
    at.run()  # a rerun offers the same file, and records no other export
    assert at.get("download_button")[0].proto.label == download.proto.label
    assert len(events(trail.db, "export")) == 1
    at.checkbox(key="audit.export.rows").uncheck().run()  # another file asked for: none yet
    assert not at.get("download_button")
    at.checkbox(key="audit.export.rows").check().run()  # the first one was dropped
    assert not at.get("download_button")


def test_below_admin_the_audit_page_is_out_of_reach(trail: Trail) -> None:
    for role in ("viewer", "editor"):
        at, _ = signed_in(trail.db, role)
        show_app(at)
        at.switch_page(AUDIT).run()  # registered but hidden: its own refusal
        page = app_test(AUDIT).run()  # a URL on a fresh server: the file alone
        name, password = new_user(trail.db, role=role)
        sign_in(page, name, password)
        for shown in (at, page):
            assert not shown.exception
            assert "This page is for admins;" in shown.error[0].value
            assert not shown.main.dataframe
            assert not shown.code
            assert "Verify now" not in texts(shown)
    assert events(trail.db, "audit_view") == []


def test_empty_states(fresh_db: DatabaseHandle) -> None:
    at, _ = on_page(fresh_db, "admin", AUDIT)
    assert "No changesets yet." in [i.value for i in at.info]
    at, _ = on_page(fresh_db, "viewer", HISTORY)
    assert [i.value for i in at.info] == ["No datasets yet, so no history."]


def test_a_chain_of_one_changeset_is_said_in_the_singular(fresh_db: DatabaseHandle) -> None:
    seed_people(fresh_db)  # the one changeset: its upload
    at, _ = on_page(fresh_db, "admin", AUDIT)
    at.button(key="audit.verify").click().run()
    assert not at.exception
    assert at.success[0].value == "Chain intact: 1 changeset, head #1."


def test_a_viewer_reads_a_dataset_s_history_and_its_state_as_of_a_changeset(
    trail: Trail,
) -> None:
    at, viewer = on_page(trail.db, "viewer", HISTORY)
    at.selectbox(key="history.dataset").select(trail.stock).run()
    assert changesets_shown(at) == [trail.seqs["ann stock"], trail.seqs["stock upload"]]
    assert localized(at.main.dataframe[0]) == ["Inserted", "Updated", "Deleted"]
    assert widths(at.main.dataframe[0]) == {"Kind": 120, "What": "medium", "Reason": "medium"}
    shown = at.main.dataframe[0].value  # what each did, beside its kind, as on Audit
    assert shown[["Kind", "What"]].values.tolist() == [["Edit", ""], ["Upload", "new dataset"]]
    upload = next(
        o
        for o in at.selectbox(key=f"history.{trail.stock}.open").options
        if o.startswith(f"#{trail.seqs['stock upload']} ")
    )
    at.selectbox(key=f"history.{trail.stock}.open").select(upload).run()
    assert not at.exception
    bulk = at.main.dataframe[1].value  # the bulk-loaded rows, replayed
    assert bulk["Item"].tolist() == ["bolt", "nut", "=HYPERLINK(1)"]
    at.toggle(key=f"history.{trail.stock}.as_of").set_value(True).run()
    state = at.main.dataframe[-1].value
    assert state["Count"].tolist() == ["10", "20", "30"]
    aligned = json.loads(at.main.dataframe[-1].proto.columns)
    assert {n: c["alignment"] for n, c in aligned.items() if c.get("alignment")} == {
        "Count": "right"
    }
    at.button(key="history.prepare").click().run()
    [export] = events(trail.db, "export")
    assert export["actor_username"] == viewer
    assert export["detail"]["as_of_seq"] == trail.seqs["stock upload"]
    data = at.get("download_button")[0]
    assert data.proto.label == f"Download Stock-as-of-{trail.seqs['stock upload']}.csv (3 rows)"
    assert events(trail.db, "audit_view") == []  # history views are not audit views


def test_a_link_opens_a_row_s_history(trail: Trail) -> None:
    at, _ = signed_in(trail.db, "viewer")
    show_app(at)
    at.query_params["dataset"] = str(trail.people)
    at.query_params["row"] = "3"
    at.switch_page(HISTORY).run()
    assert not at.exception
    versions = at.main.dataframe[0].value
    assert versions["Change"].tolist() == ["bulk insert", "update"]
    # The username beside the display name: two people may share a display name.
    assert versions["Who"].tolist() == [
        f"Ann A ({trail.ann.username})",
        f"Bob B ({trail.bob.username})",
    ]
    assert versions["Why"].tolist() == ["seed", "typo"]
    assert versions["Note"].tolist() == ["-5", "Zebra crossing"]
    assert "Note: -5 → Zebra crossing" in versions["Changed cells"].tolist()[1]


def test_a_link_followed_again_later_in_the_session_opens_what_it_names_again(
    trail: Trail,
) -> None:
    """Leaving the page drops its widgets' state; coming back by the same link (the Datasets
    page's "History of this dataset", say) opens the linked dataset and row again, not an empty
    page."""
    at, _ = signed_in(trail.db, "viewer")
    show_app(at)
    for _ in range(2):
        at.query_params["dataset"] = str(trail.people)
        at.query_params["row"] = "3"
        at.switch_page(HISTORY).run()
        assert not at.exception
        assert at.selectbox(key="history.dataset").value == trail.people
        assert at.main.dataframe[0].value["Why"].tolist() == ["seed", "typo"]
        # On the page, a choice of one's own stands (the link stays in the address bar).
        at.selectbox(key="history.dataset").select(trail.stock).run()
        at.run()
        assert at.selectbox(key="history.dataset").value == trail.stock
        at.query_params.clear()
        at.switch_page("pages/1_home.py").run()
        assert not at.exception


def test_a_link_naming_a_row_but_no_dataset_says_so(trail: Trail) -> None:
    at, _ = signed_in(trail.db, "viewer")
    show_app(at)
    at.query_params["row"] = "3"
    at.switch_page(HISTORY).run()
    assert not at.exception
    [warning] = at.warning
    assert "None" not in warning.value
    assert "but no dataset; choose the dataset" in warning.value


def test_export_csv_is_formula_safe(trail: Trail) -> None:
    at, _ = on_page(trail.db, "viewer", HISTORY)
    at.selectbox(key="history.dataset").select(trail.stock).run()
    upload = next(
        o
        for o in at.selectbox(key=f"history.{trail.stock}.open").options
        if o.startswith(f"#{trail.seqs['stock upload']} ")
    )
    at.selectbox(key=f"history.{trail.stock}.open").select(upload).run()
    at.toggle(key=f"history.{trail.stock}.as_of").set_value(True).run()
    at.button(key="history.prepare").click().run()
    assert not at.exception


def test_the_page_says_which_rows_text_and_row_exports_leave_out(trail: Trail) -> None:
    """Rows loaded from an uploaded file are one stored stream, not row changes: the text search
    does not find their values and the export with row changes does not list them. The page
    claimed "any value before or after a change" and "each row change"; it says so now."""
    at, _ = on_page(trail.db, "admin", AUDIT)
    at.text_input(key="audit.text").input("bolt").run()  # a row of the Stock upload only
    assert "No changesets match these filters." in [i.value for i in at.info]
    assert "loaded from an uploaded file are not searched" in at.text_input(key="audit.text").help
    rows = at.checkbox(key="audit.export.rows")
    assert "loaded from an uploaded file are not listed" in rows.help


def test_a_dataset_check_shows_names_and_values_as_written_not_as_markdown(trail: Trail) -> None:
    """A dataset's name (chosen by whoever uploaded it) and the cell values a drift quotes were
    drawn as Markdown in the check's progress and its error: "$5 … $6" turned into a formula,
    *x* into italics. They are now shown as written."""
    name = "Costs *Q1* $5"
    costs = upload(trail.ann, stock_csv(), uploads.NewDataset(name)).dataset_id
    table = table_name(trail.db.app, costs)
    with trail.db.app.begin() as conn:  # the table's owner, around capture
        column = conn.scalar(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'data'"
                " AND table_name = :t AND data_type = 'text' ORDER BY ordinal_position LIMIT 1"
            ),
            {"t": table},
        )
        conn.execute(text(f"ALTER TABLE data.{table} DISABLE TRIGGER audit_capture_update"))
        conn.execute(text(f"UPDATE data.{table} SET {column} = '$6 *now* $7' WHERE _row_id = 1"))
        conn.execute(text(f"ALTER TABLE data.{table} ENABLE TRIGGER audit_capture_update"))
    at, _ = on_page(trail.db, "admin", AUDIT)
    [button] = [b for b in at.button if b.label == "Check every dataset against the log"]
    button.click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith(f"dataset {costs} “Costs \\*Q1\\* \\$5” does not match its audit log")
    assert "table '\\$6 \\*now\\* \\$7'" in error
    progress = [m.value for m in at.markdown if "Checking" in m.value]
    assert "Checking “Costs \\*Q1\\* \\$5”…" in progress


def test_the_events_list_names_targets_and_checks_in_words(trail: Trail) -> None:
    """The events list showed internal names and raw structures: "audit:datasets",
    "dataset:1", "differing: [] · ok: true", a filter as a brace full of dashes. Targets now
    read as what they name, a check as a sentence, a filter by the parts that are set; the
    exports keep the machine values."""
    at, _ = on_page(trail.db, "admin", AUDIT)  # the trail viewed, unfiltered
    at.button(key="audit.verify").click().run()
    [button] = [b for b in at.button if b.label == "Check every dataset against the log"]
    button.click().run()
    opened = next(
        o
        for o in at.selectbox(key="audit.open").options
        if o.startswith(f"#{trail.seqs['ann qty']} ")
    )
    at.selectbox(key="audit.open").select(opened).run()
    at.selectbox(key="audit.open").select(None)
    at.selectbox(key="audit.actor").select(trail.ann.username).run()  # a filtered view
    with session_scope() as s:  # an export of one dataset's changesets
        trail_views.export_trail(
            session=s, actor=trail.admin, trail_filter=TrailFilter(dataset_id=trail.people)
        )
    at.selectbox(key="audit.actor").select(None)
    at.radio(key="audit.list").set_value("events").run()
    assert not at.exception
    shown = at.main.dataframe[0].value
    rows = list(zip(shown["Kind"], shown["Target"], shown["Detail"], strict=True))
    with trail.db.owner.connect() as conn:
        opened_id = conn.scalar(
            text("SELECT id FROM audit.changeset WHERE seq = :s"), {"s": trail.seqs["ann qty"]}
        )
    seq = trail.seqs["ann qty"]
    verified = next(r for r in rows if r[1] == "Audit log verification")
    assert verified[2].startswith(f"Both chains intact · {len(trail.seqs)} changesets, head ")
    assert [r for r in rows if r[0] in ("Audit viewed", "Exported") and r != verified] == [
        (  # newest first
            "Exported",
            f"People (dataset {trail.people})",
            "filter: dataset People · format: csv · include rows: false · rows: 4 · "
            "what: audit changesets",
        ),
        (
            "Audit viewed",
            "Audit trail",
            f"filter: actor {trail.ann.username} · list: changesets",
        ),
        ("Audit viewed", f"Changeset #{seq}", f"changeset #{seq} (id {opened_id}) opened"),
        (
            "Audit viewed",
            "Check of every dataset against the log",
            "Both datasets match their audit log, cell by cell",
        ),
        ("Audit viewed", "Audit trail", "filter: none · list: changesets"),
    ]
    # The export and the search keep the machine values.
    with session_scope() as s:
        exported = trail_views.export_trail(
            session=s,
            actor=trail.admin,
            trail_filter=TrailFilter(kind="audit_view"),
            trail_list="events",
        )
    targets = [r[4] for r in csv.reader(io.StringIO(exported.data.decode("utf-8-sig")))][1:]
    assert {"audit", "audit:verify", "audit:datasets", f"changeset:{trail.seqs['ann qty']}"} <= (
        set(targets)
    )
    at.text_input(key="audit.text").input("audit:datasets").run()
    assert at.main.dataframe[0].value["Target"].tolist() == [
        "Check of every dataset against the log"
    ]


def test_an_event_reads_in_words_and_its_export_keeps_the_json(trail: Trail) -> None:
    """The events list showed each event's raw kind (user_admin) and its details as JSON, as a
    database dump would; it now shows the kind in words and the details as one line to read.
    The CSV export keeps the JSON, and the text search the stored values."""
    with Session(trail.db.app) as s, s.begin():
        record_event(
            session=s,
            kind="user_admin",
            actor_username=trail.admin.username,
            target="user:o'hara",
            detail={"ok": False, "rows": None, "name": "o'hara", "n": 2},
        )
    at, _ = on_page(trail.db, "admin", AUDIT)
    at.radio(key="audit.list").set_value("events").run()
    at.selectbox(key="audit.kind.events").select("user_admin").run()
    shown = at.main.dataframe[0].value
    assert shown["Kind"].tolist() == ["User account changed"]
    assert shown["Detail"].tolist() == ["n: 2 · name: o'hara · ok: false · rows: —"]
    with session_scope() as s:
        exported = trail_views.export_trail(
            session=s,
            actor=trail.admin,
            trail_filter=TrailFilter(kind="user_admin"),
            trail_list="events",
        )
    [_, row] = csv.reader(io.StringIO(exported.data.decode("utf-8-sig"), newline=""))
    assert row[2] == "user_admin"
    assert row[-1] == '{"n": 2, "name": "o\'hara", "ok": false, "rows": null}'
    at.text_input(key="audit.text").input("O'HARA").run()  # the search reads the stored values
    assert at.main.dataframe[0].value["Kind"].tolist() == ["User account changed"]


def test_a_failed_sign_in_reads_in_words(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="editor")
    at = sign_in(app_test().run(), name, password + "x")
    assert not at.exception
    at, _ = on_page(fresh_db, "admin", AUDIT)
    at.radio(key="audit.list").set_value("events").run()
    kinds = {"Failed sign-in", "Signed in", "Audit viewed"}
    assert set(at.main.dataframe[0].value["Kind"]) == kinds
    at.selectbox(key="audit.kind.events").select("sign_in_failed").run()
    shown = at.main.dataframe[0].value
    assert shown["Kind"].tolist() == ["Failed sign-in"]
    assert shown["Detail"].tolist() == ["failed attempts: 1 · reason: wrong password"]
    assert shown["Target"].tolist() == [name]  # a person's target: the username, as recorded


def test_a_new_sign_in_in_the_same_browser_tab_records_its_views_again(trail: Trail) -> None:
    """Views are recorded once per sign-in for each filter, but the page kept what it had
    recorded across a sign-out: the same admin signing in again in the same tab read the trail
    with nothing recorded after that sign-in. Each sign-in now records its own views."""
    name, password = new_user(trail.db, role="admin")
    at = sign_in(app_test().run(), name, password)
    show_app(at)
    at.switch_page(AUDIT).run()
    assert changesets_shown(at) == sorted(trail.seqs.values(), reverse=True)

    def mine() -> list[dict]:
        return [e for e in events(trail.db, "audit_view") if e["actor_username"] == name]

    assert len(mine()) == 1
    at.sidebar.button(key="portal.sign_out").click().run()
    assert not changesets_shown_or_none(at)
    sign_in(at, name, password)
    show_app(at)
    at.switch_page(AUDIT).run()
    assert not at.exception
    assert changesets_shown(at) == sorted(trail.seqs.values(), reverse=True)
    assert len(mine()) == 2


def changesets_shown_or_none(at: AppTest) -> list[int] | None:
    return changesets_shown(at) if at.main.dataframe else None


def test_a_viewer_sees_a_dataset_s_rows_changed_per_day_and_person(trail: Trail) -> None:
    at, _ = on_page(trail.db, "viewer", HISTORY)
    at.selectbox(key="history.dataset").select(trail.people).run()
    assert not at.exception
    drawn: dict[str, int] = {}
    for point in chart_data(at):
        drawn[point["actor"]] = drawn.get(point["actor"], 0) + point["rows changed"]
    with trail.db.owner.connect() as conn:
        logged = conn.execute(
            text(
                "SELECT actor_username, actor_display_name, sum(inserted + updated + deleted)"
                " FROM audit.changeset WHERE dataset_id = :d GROUP BY 1, 2"
            ),
            {"d": trail.people},
        ).all()
    # People as the tables name them, every day of the 90 there.
    assert drawn == {trail_views.who(shown, name): int(n) for name, shown, n in logged}
    assert len({point["day"] for point in chart_data(at)}) == trail_views.DATASET_ACTIVITY_DAYS
    # Days as text: a date-time would be drawn in the browser's time zone, on the day before
    # west of UTC.
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", point["day"]) for point in chart_data(at))
    assert len(drawn) >= 3  # ann, bob and the database user of the out-of-band delete


def test_the_dates_reach_back_before_any_log(trail: Trail) -> None:
    """The picker's own range started ten years back: an older first day was refused with only
    a red frame, and the list stayed unfiltered."""
    at, _ = on_page(trail.db, "admin", AUDIT)
    # A filter cleared with its × reads "(all)", as it means, not "Choose an option".
    for key in ("audit.dataset", "audit.actor", "audit.kind.changesets"):
        assert at.selectbox(key=key).proto.placeholder == "(all)", key
    box = at.date_input(key="audit.dates")
    assert box.proto.min == "1970-01-01"
    box.set_value((date(2015, 1, 1), date(2015, 12, 31))).run()
    assert not at.exception
    assert "No changesets match these filters." in texts(at)
    # Nothing to export either: no empty file offered, no export recorded for it.
    assert "Nothing to export: no changesets match these filters." in texts(at)
    assert not [b for b in at.button if b.label.startswith("Prepare")]


def test_the_actor_filter_names_people_as_the_lists_do(trail: Trail) -> None:
    """The lists name people "Ann A (ann…)"; the Actor box listed bare usernames, so a person
    looked for by the name read in the list was not found there. It now names them as the
    lists do: either name, typed into it, finds them. A username without an account (a
    database role that wrote around the portal) reads as itself."""
    at, _ = on_page(trail.db, "admin", AUDIT)
    with trail.db.owner.connect() as conn:
        around = conn.scalar(
            text("SELECT actor_username FROM audit.changeset WHERE kind = 'out_of_band'")
        )
    options = at.selectbox(key="audit.actor").options
    assert f"Ann A ({trail.ann.username})" in options
    assert f"Bob B ({trail.bob.username})" in options
    assert around in options
    assert trail.ann.username not in options
    at.selectbox(key="audit.actor").select(trail.ann.username).run()
    assert at.selectbox(key="audit.actor").value == trail.ann.username
    assert set(at.main.dataframe[0].value["Who"]) == {f"Ann A ({trail.ann.username})"}
