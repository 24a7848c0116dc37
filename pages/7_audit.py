"""Audit (admins): the chain's status, the trail of changesets and events — filtered, newest
first, keyset-paged — one changeset in detail, activity per day, and exports.

Views are recorded as ``audit_view`` events once per sign-in for each distinct list and filter,
each changeset opened and each verification (``portal.trail_views`` explains why); exports are
always recorded.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from portal import trail_views
from portal.datasets import dataset_names
from portal.db import session_scope
from portal.errors import AuditError, PortalError
from portal.trail_views import (
    Export,
    ExportFormat,
    TrailExportKey,
    TrailFilter,
    changeset_kind,
    changeset_what,
    day_after,
    day_start,
    kind_label,
    when,
    who,
)
from portal.ui import exports, require_session
from portal.ui.changeset_view import show_changeset
from portal.ui.column_config import EVENT_KIND_WIDTH, KIND_WIDTH, TARGET_WIDTH, counts, text_widths
from portal.ui.db_retry import show_error, show_refusal
from portal.ui.markdown import md_text
from portal.ui.pager import Pager
from portal.ui.picker import renamed_select
from portal.wording import agreeing, counted

signed = require_session("admin")
actor = signed.actor

RECORDED = "audit.recorded"  # views already recorded in this sign-in: {"since", "seen"}
VERIFIED = "audit.verified"  # (the chains' status, when it was checked)
DRIFT = "audit.drift"  # the datasets as last checked against the log
PREPARED = "audit.prepared"  # (TrailExportKey, Export): the file last prepared, and what for
ALL = "(all)"
EARLIEST_DAY = date(1970, 1, 1)  # the date filter's first day: before any log


def recorded_views() -> set[object]:
    """The views recorded since this sign-in began. A browser tab keeps its state when the same
    person signs out and in again; the new sign-in must record what it reads itself."""
    state = st.session_state.get(RECORDED)
    if not isinstance(state, dict) or state.get("since") != signed.since:
        state = {"since": signed.since, "seen": set()}
        st.session_state[RECORDED] = state
    seen: set[object] = state["seen"]
    return seen


def recorded_once(view: object) -> bool:
    """True the first time this sign-in shows ``view``: then it should be recorded."""
    seen = recorded_views()
    if view in seen:
        return False
    seen.add(view)
    return True


def forget(view: object) -> None:
    recorded_views().discard(view)


st.title("Audit")

# -- chain status -----------------------------------------------------------------------------

heads_problem: str | None = None
try:
    with session_scope() as session:
        dataset_choices = dict(dataset_names(session=session))
        actor_choices = trail_views.actors(session=session, actor=actor)
        try:
            heads = trail_views.chain_heads(session=session, actor=actor)
        except AuditError as exc:  # a head row deleted: the rest of the page still serves
            heads, heads_problem = None, str(exc)
except PortalError as exc:
    show_error(exc)
    st.stop()

# Folded under one line (the heads' numbers): open, it filled the first screen above the
# trail, which is what the page is mostly opened for. Open when the heads cannot be read.
chain_summary = (
    "Chain heads cannot be read: open to see why"
    if heads is None
    else f"Chain heads: changeset #{heads[0].seq}, event #{heads[1].seq} — keep copies, verify "
    "the log"
)
with st.expander(
    chain_summary, expanded=heads is None, icon=":material/verified_user:", key="audit.chain"
):
    st.caption(
        "Keep copies of these hashes outside the database: `portal audit verify --expect-head "
        "… --expect-event-head …` then also detects changesets or events removed from the end "
        "of the log. A copy stays good as the log grows; the newer, the more it covers."
    )
    if heads is None:
        st.error(
            f"The heads cannot be shown: {heads_problem}. Only someone with superuser access "
            "to the database can do that; Verify now says what else of the log no longer "
            "matches.",
            icon=":material/gpp_bad:",
        )
    else:
        head, event_head = heads
        st.markdown(f"**Chain head** — changeset #{head.seq}")
        st.code(head.hash, language=None)
        st.markdown(f"**Event chain head** — event #{event_head.seq}")
        st.code(event_head.hash, language=None)
    if st.button("Verify now", icon=":material/verified:", key="audit.verify"):
        try:
            with st.spinner("Recomputing the hash chains…"), session_scope() as session:
                st.session_state[VERIFIED] = (
                    trail_views.chain_status(session=session, actor=actor),
                    datetime.now(UTC),
                )
        except PortalError as exc:
            show_refusal(exc)
    if (checked := st.session_state.get(VERIFIED)) is not None:
        verified, verified_at = checked
        changesets, events = verified.changesets, verified.events
        if changesets.ok:
            st.success(
                f"Chain intact: {counted(changesets.changesets, 'changeset')}, head"
                f" #{changesets.head.seq}.",
                icon=":material/verified:",
            )
        else:
            where = f"changeset #{changesets.failed_seq}" if changesets.failed_seq else "the chain"
            st.error(f"Chain broken at {where}: {changesets.problem}", icon=":material/gpp_bad:")
        if events.ok:
            # The check is recorded as the next event, so the head above moves one past it.
            recorded = verified.recorded_seq
            st.success(
                f"Event chain intact: {counted(events.count, 'event')}, head #{events.head.seq}"
                + (f" (this check was then recorded as event #{recorded})." if recorded else "."),
                icon=":material/verified:",
            )
        else:
            where = f"event #{events.failed_seq}" if events.failed_seq else "the event chain"
            st.error(f"Event chain broken at {where}: {events.problem}", icon=":material/gpp_bad:")
        newer = heads[0].seq - changesets.head.seq if heads is not None and changesets.ok else 0
        st.caption(
            f"Checked at {when(verified_at)}."
            + (
                f" {counted(newer, 'changeset')} committed since {agreeing(newer, 'is', 'are')} "
                "not covered by that check (up to the chain head above): verify again."
                if newer > 0
                else ""
            )
        )
    st.caption(
        "The chains show the log was not edited. Checking the datasets shows it is complete: "
        "each is rebuilt from the log alone and compared with its table, cell by cell, to find "
        "any change made around the audit capture (a few seconds per 100,000 rows)."
    )
    if st.button("Check every dataset against the log", icon=":material/rule:"):
        try:
            with st.status("Rebuilding the datasets from the audit log…") as status:
                problem: str | None = None
                try:
                    with session_scope() as session:
                        drifts = trail_views.dataset_drift(
                            session=session,
                            actor=actor,
                            progress=lambda name: status.write(md_text(f"Checking “{name}”…")),
                        )
                except AuditError as exc:  # the log itself is damaged: recorded too
                    drifts, problem = [], str(exc)
                with session_scope() as session:
                    trail_views.record_drift_check(
                        session=session, actor=actor, drifts=drifts, problem=problem
                    )
                if problem is None:
                    status.update(label="Datasets checked", state="complete")
                else:
                    status.update(label="The check stopped", state="error")
            st.session_state[DRIFT] = drifts if problem is None else None
            if problem is not None:
                st.error(f"The check stopped: {problem}", icon=":material/gpp_bad:")
        except PortalError as exc:
            show_refusal(exc)
    drifts = st.session_state.get(DRIFT)
    if drifts is not None and all(d.ok for d in drifts):
        st.success(f"{trail_views.all_datasets_match(len(drifts))}.", icon=":material/verified:")
    for drift in drifts or []:
        if not drift.ok:
            st.error(md_text(drift.summary()), icon=":material/gpp_bad:")  # names, values
        elif drift.count_note:  # bookkeeping, not the log: a count to correct
            st.warning(md_text(drift.summary()), icon=":material/calculate:")

# -- filters ----------------------------------------------------------------------------------

trail_list = st.radio(
    "Show",
    ["changesets", "events"],
    format_func=str.capitalize,
    horizontal=True,
    key="audit.list",
)
kinds = trail_views.kinds(trail_list)
dataset_col, actor_col, kind_col = st.columns(3)
with dataset_col:
    # A box cleared with its × shows the placeholder: "(all)" too, as it means the same.
    dataset_id = renamed_select(
        "Dataset", {None: ALL, **dataset_choices}, key="audit.dataset", placeholder=ALL
    )
actor_name = actor_col.selectbox(
    "Actor",
    [None, *actor_choices],
    format_func=lambda a: ALL if a is None else actor_choices.get(a, a),
    key="audit.actor",
    placeholder=ALL,
)
kind = kind_col.selectbox(
    "Kind",
    [None, *kinds],
    format_func=lambda k: ALL if k is None else kind_label(k),
    key=f"audit.kind.{trail_list}",
    placeholder=ALL,
)
dates_col, text_col = st.columns([1, 2])
dates: Any = dates_col.date_input(
    "Dates (UTC)",
    value=(),
    # Any day of the log: the picker's own range starts ten years back, and refused an older
    # first day with only a red frame, leaving the list unfiltered.
    min_value=EARLIEST_DAY,
    key="audit.dates",
    help="One day, or a first and a last day.",
)
free_text = text_col.text_input(
    "Text",
    key="audit.text",
    help="Found in reasons and in any value before or after a change (changesets), or in an "
    "event's target or details as the export writes them (`bad_password`, `dataset:3`). Rows "
    "loaded from an uploaded file are not searched: they are stored as the file, not as row "
    "changes (open the upload to read them). Not indexed: narrow it with a dataset or dates on "
    "a large log.",
)
picked = [d for d in (dates if isinstance(dates, tuple | list) else [dates]) if d]
since = day_start(picked[0]) if picked else None
until = day_after(picked[-1]) if picked else None
trail_filter = TrailFilter(dataset_id, actor_name, kind, since, until, free_text.strip())

# -- the trail --------------------------------------------------------------------------------

view = (trail_list, trail_filter)
pager = Pager("audit.pager", view)
record = recorded_once(view)
try:
    with st.spinner("Searching the audit log…"), session_scope() as session:
        page = trail_views.search_trail(
            session=session,
            actor=actor,
            trail_filter=trail_filter,
            trail_list=trail_list,
            after=pager.after,
            limit=trail_views.PAGE_SIZE,
            record=record,
        )
        shown_events = (
            trail_views.events_frame(session=session, actor=actor, events=page.items)
            if trail_list == "events"
            else None
        )
except PortalError as exc:
    forget(view)
    show_error(exc)
    st.stop()

if not page.items and pager.number == 1:
    st.info(
        f"No {trail_list} match these filters."
        if trail_filter != TrailFilter()
        else f"No {trail_list} yet.",
        icon=":material/search_off:",
    )
elif trail_list == "changesets":
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "#": c.seq,
                    "When": when(c.committed_at),
                    "Kind": changeset_kind(c),  # an out-of-band one flagged loudly
                    # Who and why next, in view without scrolling the table sideways.
                    "Who": who(c.actor_display_name, c.actor_username),
                    "Reason": c.reason,
                    "What": changeset_what(c),
                    "Dataset": c.dataset_name or "",
                    "Inserted": c.inserted,
                    "Updated": c.updated,
                    "Deleted": c.deleted,
                }
                for c in page.items
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={
            **counts("Inserted", "Updated", "Deleted"),
            **text_widths(Kind=KIND_WIDTH, What="medium", Reason="medium"),
        },
    )
else:
    st.dataframe(
        shown_events,
        hide_index=True,
        width="stretch",
        column_config=text_widths(Kind=EVENT_KIND_WIDTH, Target=TARGET_WIDTH, Detail="large"),
    )
with st.container():  # drawn every run, so a pager that comes and goes moves nothing below
    if page.items or pager.number > 1:  # not under "No changesets match these filters."
        pager.controls(page.next_key)

# -- one changeset ----------------------------------------------------------------------------

if trail_list == "changesets" and page.items:
    shown = {c.id: c for c in page.items}
    opened = st.selectbox(
        "Open a changeset",
        list(shown),
        index=None,
        format_func=lambda i: (
            f"#{shown[i].seq} · {changeset_kind(shown[i])} · {shown[i].dataset_name or '—'} · "
            f"{shown[i].actor_display_name} · {when(shown[i].committed_at)}"
        ),
        placeholder="Choose a changeset on this page to see its rows",
        key="audit.open",
    )
    if opened is not None:
        with st.container(border=True):
            changeset_view = ("changeset", opened)
            if show_changeset(actor, opened, "audit", record=recorded_once(changeset_view)) is None:
                forget(changeset_view)

# -- activity ---------------------------------------------------------------------------------

with st.expander("Activity per day", icon=":material/bar_chart:"):
    by = st.radio("By", ["actor", "dataset"], horizontal=True, key="audit.activity.by")
    chart_filter = trail_filter
    if since is None and until is None:
        today = datetime.now(UTC).date()
        chart_filter = TrailFilter(
            dataset_id,
            actor_name,
            kind if trail_list == "changesets" else None,
            day_start(today - timedelta(days=29)),
            day_after(today),
        )
        st.caption("The last 30 days (choose dates above for another range).")
    elif trail_list != "changesets":
        chart_filter = TrailFilter(dataset_id, actor_name, None, since, until)
    if trail_filter.text:
        st.caption(
            "The text above is not applied here: the chart counts every changeset that matches "
            "the other filters."
        )
    try:
        with session_scope() as session:
            activity = trail_views.activity_frame(
                session=session, actor=actor, trail_filter=chart_filter, by=by
            )
    except PortalError as exc:
        show_refusal(exc)
    else:
        if activity.empty:
            st.info("No changes in this range.", icon=":material/bar_chart:")
        else:
            st.bar_chart(activity, x="day", y="rows changed", color=by, x_label="day (UTC)")

# -- export -----------------------------------------------------------------------------------

st.subheader("Export")
st.caption(
    f"Every {trail_list[:-1]} matching the filters above, newest first. In CSV, cells a "
    "spreadsheet could run as a formula get a ' in front. Preparing a file records the export "
    "in the audit log."
)
include_rows = trail_list == "changesets" and st.checkbox(
    "Include each row change (before and after)",
    key="audit.export.rows",
    help="Rows loaded from an uploaded file are not listed one by one: the upload's line "
    "counts them under inserted (open the upload above to read them).",
)
export_key = TrailExportKey(trail_list, trail_filter, include_rows)
export: Export | None = exports.kept(PREPARED, export_key)  # None if prepared for other filters


def trail_file(fmt: ExportFormat) -> Callable[[Any], Export]:
    return lambda session: trail_views.export_trail(
        session=session,
        actor=actor,
        trail_filter=trail_filter,
        trail_list=trail_list,
        fmt=fmt,
        include_rows=include_rows,
    )


if not page.items and pager.number == 1:  # an empty file, and an export event, for nothing
    st.caption(f"Nothing to export: no {trail_list} match these filters.")
    st.stop()
csv_col, json_col = st.columns(2)
for fmt, column in (("csv", csv_col), ("json", json_col)):
    export = (
        exports.prepare(
            PREPARED,
            export_key,
            trail_file(fmt),
            label=f"Prepare {fmt.upper()}",
            key=f"audit.export.{fmt}",
            spinner="Preparing the file…",
            where=column,
        )
        or export
    )
if export is not None:
    exports.offer(export, noun=trail_list[:-1], key="audit.download", mime=export.mime)
