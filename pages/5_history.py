"""History (everyone): one dataset's changesets, newest first, with their rows before -> after,
and a chart of its rows changed per day and person; the whole table as it stood right after any
of them, rebuilt from the audit log, paged and downloadable; and every version of one row.
Editors and admins may revert a changeset: a dialog shows what the revert writes and every cell
or row changed since (left alone), asks for a reason and writes a ``revert`` changeset through
``portal.revert``. Under Row history they may restore the row to one of its versions: what would
change is shown (now → then), a reason asked for, and ``portal.restore`` writes it.

Links: ``?dataset=<id>`` opens a dataset, ``&row=<row_id>`` its row history (the Edit and
Datasets pages link here that way).
"""

import math
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
import streamlit as st

from portal import restore, revert, trail_views
from portal.actor import Actor
from portal.datasets import dataset_names
from portal.db import session_scope
from portal.diffs import ChangeSet, RowDelete, RowInsert, cell_changes, show_change
from portal.errors import PortalError
from portal.spec import DatasetSpec
from portal.trail_views import AsOf, Export, changeset_kind, changeset_what, when, who
from portal.ui import current_actor, exports, md_escape, notices, require
from portal.ui.changeset_view import show_changeset
from portal.ui.column_config import EMPTY_CELL, KIND_WIDTH, counts, text_widths
from portal.ui.db_retry import show_error, show_refusal
from portal.ui.navigation import linked_id, no_datasets
from portal.ui.pager import Pager
from portal.ui.picker import renamed_select
from portal.wording import agreeing, counted, quoted_names
from portal.writes import number_after_commit

actor = require("viewer")

DATASET = "history.dataset"
VIEW = "history.view"
ROW = "history.row"
APPLIED = "history.query_params"  # the link's parameters, applied once
PREPARED = "history.prepared"
REVERTING = "history.revert.changeset"  # the changeset whose revert dialog is open
REVERT_PLAN = "history.revert.plan"
REVERT_REASON = "history.revert.reason"
REVERT_PARTIAL = "history.revert.partial"
REVERT_REFUSED = "history.revert.refused"  # why the last Revert wrote nothing, over the new plan
RESTORE_PLAN = "history.restore.plan"  # ((dataset, row, version, newest), plan, row's version
# when that version was chosen)
RESTORE_DONE = "history.restore.done"  # the picker of a row just restored, to clear
FLASH = "history.flash"
AS_OF_PAGE_SIZE = 100
CHANGESETS, ROW_HISTORY = "Changesets", "Row history"


@st.cache_resource(max_entries=4, ttl=900, show_spinner="Rebuilding the table from the audit log…")
def rebuilt(dataset_id: int, seq: int, newest: tuple[int, datetime] | None, _actor: Actor) -> AsOf:
    """The rows after a sealed changeset never change, so one rebuild serves every rerun and
    every person (the role check is the same for all: any role may read history) until the
    dataset's next changeset (``newest``: the seq and time of its newest), which may relabel,
    add or remove its columns, and so the names the rows are shown under. Kept as the one
    object all share (``cache_resource``), only ever read: ``cache_data`` would unpickle a copy
    of the whole table, up to ``MAX_AS_OF_ROWS`` rows, on every rerun."""
    with session_scope() as session:
        return trail_views.as_of(session=session, actor=_actor, dataset_id=dataset_id, seq=seq)


def newest_of(dataset_id: int) -> tuple[int, datetime] | None:
    """The seq and time of the dataset's newest changeset: what the cached reads of its
    history are valid until.

    Raises:
        PortalError: the database could not be read.
    """
    with session_scope() as session:
        latest = trail_views.dataset_history(
            session=session, actor=actor, dataset_id=dataset_id, limit=1
        ).items
    return (latest[0].seq, latest[0].committed_at) if latest else None


@st.cache_data(max_entries=16, ttl=900, show_spinner="Reading the row's versions…")
def versions_of(
    dataset_id: int, row_id: int, newest: tuple[int, datetime] | None, _actor: Actor
) -> pd.DataFrame:
    """A row's versions change only with a new changeset of its dataset (``newest``: the seq
    and time of its newest), so one read (a bulk-loaded row's first version replays its stored
    stream) serves every rerun until then, and every person (any role may read history)."""
    with session_scope() as session:
        return trail_views.row_versions_frame(
            session=session, actor=_actor, dataset_id=dataset_id, row_id=row_id
        )


def close_revert() -> None:
    for key in (REVERTING, REVERT_PLAN, REVERT_REASON, REVERT_PARTIAL, REVERT_REFUSED):
        st.session_state.pop(key, None)


def open_revert(changeset_id: int) -> None:
    close_revert()
    st.session_state[REVERTING] = changeset_id


def row_ids(rows: Sequence[RowDelete | RowInsert], shown: int = 50) -> str:
    """The rows' ids, the first ``shown`` of them."""
    ids = ", ".join(str(r.row_id) for r in rows[:shown])
    return ids + (" …" if len(rows) > shown else "")


def cells_put_back(
    changes: ChangeSet, spec: DatasetSpec, *, then: str, with_row_id: bool = False
) -> None:
    """The cells a revert or a restore writes: each one now and as it puts it back (``then``,
    the column's heading)."""
    st.caption('Cells put back (∅ is no value, "" an empty text)')
    st.dataframe(
        [
            {
                **({"Row id": c.row_id} if with_row_id else {}),
                "Column": c.column,
                "Now": show_change(c.before),
                then: show_change(c.after),
            }
            for c in cell_changes(changes, spec)
        ],
        hide_index=True,
        width="stretch",
    )


def left_empty(added: Sequence[str], since: str = "") -> str:
    """`` (with no value in “A”, added to the dataset since #7)`` for the columns a row brought
    back gets no value in; empty for none."""
    if not added:
        return ""
    return (
        f" (with no value in {quoted_names(map(md_escape, added))}, added to the dataset since"
        + (f" {since})" if since else ")")
    )


@st.dialog("Revert this changeset?", width="large", on_dismiss=close_revert)
def confirm_revert(changeset_id: int) -> None:
    """What the revert writes, what it leaves alone, a reason, then Revert or Cancel. The actor
    is read again (a click in a dialog does not rerun the page's ``require``); the server plans
    the revert again when writing and refuses changes made since that were not shown here."""
    plan: revert.RevertPlan | None = st.session_state.get(REVERT_PLAN)
    if plan is None or plan.target.id != changeset_id:
        try:
            with (
                st.spinner("Working out what the revert would write…"),
                session_scope() as session,
            ):
                plan = revert.plan_revert(
                    session=session, actor=current_actor("editor"), changeset_id=changeset_id
                )
        except PortalError as exc:
            show_refusal(exc)
            if st.button("Close", key="history.revert.close"):
                close_revert()
                st.rerun()
            return
        st.session_state[REVERT_PLAN] = plan
    if refused := st.session_state.pop(REVERT_REFUSED, None):
        st.error(refused, icon=":material/error:")
    seq = plan.target.seq
    st.markdown(
        f"Revert changeset **#{seq}** ({md_escape(changeset_kind(plan.target))} by "
        f"{md_escape(plan.target.actor_display_name)}, {when(plan.target.committed_at)}) on "
        f"**{md_escape(plan.dataset_name)}**: a new changeset that puts back what it changed."
    )
    changes = plan.changes
    if changes.updates:
        cells_put_back(changes, plan.spec, then="Restored", with_row_id=True)
    if changes.deletes:
        st.caption(f"Rows that #{seq} added, to be deleted again: {row_ids(changes.deletes)}")
    if changes.inserts:
        st.caption(
            f"Rows that #{seq} deleted, to be brought back under their own row ids with their "
            f"exact values: {row_ids(changes.inserts)}{left_empty(plan.added, f'#{seq}')}"
        )
    if plan.already:
        st.caption(
            f"{counted(plan.already, 'cell or row', 'cells or rows')} already "
            f"{agreeing(plan.already, 'holds', 'hold')} what the revert would restore; "
            "nothing to do for them."
        )
    partial = False
    if plan.conflicts:
        st.warning(
            f"**{counted(len(plan.conflicts), 'cell or row', 'cells or rows')} "
            f"{agreeing(len(plan.conflicts), 'was', 'were')} changed since #{seq}.** The "
            "revert leaves them as they are now; here is each one, who changed it and what "
            "the revert would have restored.",
            icon=":material/warning:",
        )
        st.dataframe(revert.conflict_records(plan), hide_index=True, width="stretch")
        if not changes.empty:
            partial = st.checkbox(
                "Revert only the untouched part and leave these as they are",
                key=REVERT_PARTIAL,
            )
            if not partial:  # else the Revert button below is greyed out without a word
                st.caption("Tick this to revert: a revert never overwrites what was changed since.")
    if changes.empty:
        st.info(
            "Nothing can be reverted: "
            + (
                f"what is left of #{seq} has been changed again since; the rest already "
                "holds the values from before it."
                if plan.conflicts and plan.already
                else f"everything #{seq} changed has been changed again since."
                if plan.conflicts
                else f"#{seq} changed only "
                + quoted_names(map(md_escape, plan.removed))
                + ", which an admin removed from the dataset since (the values left with the "
                "column), and nothing else that does not already hold its value from before it."
                if plan.removed
                else f"the rows already hold the values from before #{seq}."
            ),
            icon=":material/info:",
        )
        if st.button("Close", key="history.revert.close"):
            close_revert()
            st.rerun()
        return
    st.write(f"The revert writes: {plan.summary()}.")
    if plan.removed:
        st.caption(
            f"#{seq} also changed "
            + quoted_names(map(md_escape, plan.removed))
            + ", which an admin removed from the dataset since: those values left with the "
            "column and are not brought back."
        )
    reason = st.text_input(
        "Reason (required)",
        key=REVERT_REASON,
        placeholder="Why are you reverting this changeset?",
    )
    left, right = st.columns(2)
    if left.button(
        "Revert",
        type="primary",
        width="stretch",
        key="history.revert.confirm",
        # Not until a reason is typed (revert.revert says it is missing): the field takes
        # what is typed when it loses focus, and the click that does so would be lost.
        disabled=bool(plan.conflicts and not partial),
    ):
        try:
            who = current_actor("editor")
            with st.spinner(f"Reverting #{seq}…"), session_scope() as session:
                result = revert.revert(
                    session=session,
                    actor=who,
                    changeset_id=changeset_id,
                    reason=reason,
                    skip=plan.keys if partial else (),
                )
        except revert.RevertRefused as exc:
            # Drawn again from the plan as it is now (what changed since), the choice to
            # leave changes alone unticked: it was given for the changes shown before.
            st.session_state[REVERT_PLAN] = exc.plan
            st.session_state.pop(REVERT_PARTIAL, None)
            st.session_state[REVERT_REFUSED] = str(exc)
            st.rerun()
        except PortalError as exc:
            show_refusal(exc)
            return
        new_seq = number_after_commit(result.changeset_id)
        flash = (
            f"Reverted #{seq} as changeset "
            + (
                f"#{new_seq}"
                if new_seq is not None
                else f"id {result.changeset_id} (saved; its number could not be read just "
                "now: it is listed in this dataset's history, with your reason, once the "
                "database answers)"
            )
            + f": {result.plan.summary()}."
            + (
                f" {counted(len(result.plan.conflicts), 'cell or row', 'cells or rows')} "
                f"changed since {agreeing(len(result.plan.conflicts), 'was', 'were')} left as "
                f"{agreeing(len(result.plan.conflicts), 'it is', 'they are')}."
                if result.plan.conflicts
                else ""
            )
        )
        st.session_state[FLASH] = flash  # shown over the page once it can be drawn again
        if new_seq is not None:
            close_revert()
            st.rerun()
        # The database is away: a rerun would show only that it is, so say it here. The dialog
        # is gone from the next run on (its widgets, drawn in this one, keep their state).
        st.session_state.pop(REVERTING, None)
        st.success(flash, icon=":material/undo:")
        return
    if right.button("Cancel", width="stretch", key="history.revert.cancel"):
        close_revert()
        st.rerun()


def restore_form(dataset_id: int, row_id: int, versions: pd.DataFrame) -> None:
    """Restore the row to one of its earlier versions: the version, what would change (the
    cells now and then, or the row brought back), a reason, then Restore. The plan drawn is
    kept until the dataset's next changeset, and the click writes the plan it was given for:
    ``portal.restore`` refuses it if the row moved since, and the new difference is drawn."""
    existed = [
        int(v)
        for v, change in zip(versions["Version"], versions["Change"], strict=True)
        if change != "delete"
    ]
    latest = int(versions["Version"].iloc[-1])
    candidates = [v for v in reversed(existed) if v != latest]
    st.subheader("Restore an earlier version")
    if not candidates:
        st.caption("The row has no earlier version to go back to.")
        return
    by_version = {int(r["Version"]): r for r in versions.to_dict("records")}
    picker = f"history.restore.{dataset_id}.{row_id}"
    if st.session_state.pop(RESTORE_DONE, None) == picker:
        st.session_state.pop(picker, None)  # restored: the choice is done with
    version = st.selectbox(
        f"Restore row {row_id} to version",
        candidates,
        index=None,
        format_func=lambda v: (
            f"Version {v}: {by_version[v]['Changeset']} · {by_version[v]['Who']} · "
            f"{by_version[v]['When']}"
        ),
        placeholder="Choose a version to see what restoring it would change",
        key=picker,
    )
    if version is None:
        return
    keys = f"history.restore.{dataset_id}.{row_id}.{version}"
    drawn = st.session_state.get(RESTORE_PLAN)
    if (
        st.session_state.get(f"{keys}.confirm")
        and drawn
        and drawn[0][:3]
        == (
            dataset_id,
            row_id,
            version,
        )
    ):
        st.session_state.pop(RESTORE_PLAN)  # planned again below, whatever happens
        write_restore(drawn[1], st.session_state.get(f"{keys}.reason", ""))
    try:
        key = (dataset_id, row_id, version, newest_of(dataset_id))
        kept = st.session_state.get(RESTORE_PLAN)
        if kept is None or kept[0] != key:
            with session_scope() as session:
                plan = restore.plan_restore(
                    session=session,
                    actor=current_actor("editor"),
                    dataset_id=dataset_id,
                    row_id=row_id,
                    version=version,
                )
            # The row as it was when this version was chosen: a change since is said below.
            chosen_at = kept[2] if kept is not None and kept[0][:3] == key[:3] else plan.seen
            st.session_state[RESTORE_PLAN] = kept = (key, plan, chosen_at)
    except PortalError as exc:
        show_refusal(exc)
        return
    plan = kept[1]
    if plan.seen != kept[2]:
        st.warning(
            f"Row {row_id} was changed after you chose version {version} (changeset "
            f"{md_escape(plan.latest)}): what restoring it would change now is drawn below. "
            "Check it before restoring.",
            icon=":material/warning:",
        )
    if plan.changes.empty:
        st.info(
            f"Row {row_id} already holds the values of version {version}; nothing to restore.",
            icon=":material/info:",
        )
        return
    show_restore(plan)
    st.text_input(
        "Reason (required)",
        key=f"{keys}.reason",
        placeholder="Why are you restoring this version?",
    )
    st.button(f"Restore row {row_id} to version {version}", type="primary", key=f"{keys}.confirm")


def show_restore(plan: restore.RestorePlan) -> None:
    """What restoring writes: the cells now and then, or the whole row brought back."""
    row_id, version = plan.row_id, plan.version
    if plan.brings_back:
        [back] = plan.changes.inserts
        st.caption(
            f"Row {row_id} is deleted now; it comes back under its own row id with the values "
            f"of version {version}{left_empty(plan.added)}:"
        )
        labels = {c.name: c.label for c in plan.spec.columns}
        st.dataframe(
            [{labels[n]: show_change(v) for n, v in back.values.items()}],
            hide_index=True,
            width="stretch",
        )
    else:
        cells_put_back(plan.changes, plan.spec, then=f"Version {version}")
        if plan.added:
            st.caption(
                quoted_names(map(md_escape, plan.added))
                + f", added to the dataset since version {version}, "
                + agreeing(len(plan.added), "keeps its value", "keep their values")
                + "."
            )
    if plan.removed:
        st.caption(
            f"Version {version} also had "
            + quoted_names(map(md_escape, plan.removed))
            + ", which an admin removed from the dataset since: those values are not brought "
            "back."
        )


def write_restore(plan: restore.RestorePlan, reason: str) -> None:
    """Write the restore ``plan`` was drawn for; on success the page is drawn again with a
    flash naming the new changeset, else the refusal is shown above the plan as it is now."""
    try:
        with st.spinner(f"Restoring row {plan.row_id}…"), session_scope() as session:
            result = restore.restore_row(
                session=session,
                actor=current_actor("editor"),
                dataset_id=plan.dataset_id,
                row_id=plan.row_id,
                version=plan.version,
                seen=plan.seen,
                reason=reason,
            )
    except PortalError as exc:
        show_refusal(exc)
        return
    new_seq = number_after_commit(result.changeset_id)
    st.session_state[RESTORE_DONE] = f"history.restore.{plan.dataset_id}.{plan.row_id}"
    st.session_state[FLASH] = (
        f"Restored row {plan.row_id} to version {plan.version} as changeset "
        + (
            f"#{new_seq}"
            if new_seq is not None
            else f"id {result.changeset_id} (saved; its number could not be read just now)"
        )
        + f": {result.plan.summary()}."
    )
    st.rerun()


st.title("History")
with notices():
    if flash := st.session_state.pop(FLASH, None):
        st.success(flash, icon=":material/undo:")
        st.toast(flash, icon=":material/undo:")

try:
    with session_scope() as session:
        choices = dict(dataset_names(session=session))
except PortalError as exc:
    show_error(exc)
    st.stop()

if not choices:
    no_datasets(actor, "No datasets yet, so no history.", icon=":material/history:")
    st.stop()

# A link's ?dataset=&row= preselect the widgets, once per distinct link and again whenever the
# page is entered anew: leaving the page drops its widgets' state, so the same link followed
# again (the Datasets page's "History of this dataset") would open nothing.
link = (st.query_params.get("dataset"), st.query_params.get("row"))
if any(link) and (st.session_state.get(APPLIED) != link or DATASET not in st.session_state):
    st.session_state[APPLIED] = link
    linked_dataset, linked_row = linked_id(link[0]), linked_id(link[1])
    if linked_dataset in choices:
        st.session_state[DATASET] = linked_dataset
        if linked_row is not None:
            st.session_state[ROW] = linked_row
            st.session_state[VIEW] = ROW_HISTORY
    elif link[0] is None:
        st.warning(
            f"The link names row {link[1]!r} but no dataset; choose the dataset, then that "
            "row under Row history.",
            icon=":material/link_off:",
        )
    else:
        st.warning(
            f"The link names dataset {link[0]!r}, which does not exist (any more); choose one.",
            icon=":material/link_off:",
        )

dataset_id = renamed_select(
    "Dataset",
    choices,
    index=None,
    placeholder="Choose a dataset to see its history",
    key=DATASET,
)
if dataset_id is None:
    st.stop()

view = st.radio("View", [CHANGESETS, ROW_HISTORY], horizontal=True, key=VIEW)

# -- row history ------------------------------------------------------------------------------

if view == ROW_HISTORY:
    row_id = st.number_input(
        "Row id",
        min_value=1,
        value=None,
        step=1,
        key=ROW,
        placeholder="The row's number in the Row id column of the Datasets and Edit pages",
    )
    if row_id is None:
        st.stop()
    try:
        versions = versions_of(dataset_id, int(row_id), newest_of(dataset_id), actor)
    except PortalError as exc:
        show_error(exc)
        st.stop()
    st.caption(
        f"Every version of row {int(row_id)} of {md_escape(choices[dataset_id])}, oldest first: "
        "the change that made it, then the whole row right after it (blank once deleted)."
    )
    st.dataframe(
        versions,
        hide_index=True,
        width="stretch",
        placeholder=EMPTY_CELL,
        # The row's own columns follow the change's: the version stays in view beside them.
        column_config={"Version": st.column_config.NumberColumn(pinned=True)},
    )
    if actor.can("editor"):
        restore_form(dataset_id, int(row_id), versions)
    st.stop()

# -- changesets -------------------------------------------------------------------------------

pager = Pager("history.pager", dataset_id)
try:
    with session_scope() as session:
        page = trail_views.dataset_history(
            session=session,
            actor=actor,
            dataset_id=dataset_id,
            after=pager.after,
            limit=trail_views.PAGE_SIZE,
        )
except PortalError as exc:
    show_error(exc)
    st.stop()

if not page.items and pager.number == 1:
    st.info("No changesets yet for this dataset.", icon=":material/history:")
    st.stop()

with st.expander(
    f"Rows changed per day, last {trail_views.DATASET_ACTIVITY_DAYS} days",
    icon=":material/bar_chart:",
):
    try:
        with session_scope() as session:
            activity = trail_views.dataset_activity_frame(
                session=session, actor=actor, dataset_id=dataset_id
            )
    except PortalError as exc:
        show_error(exc)
    else:
        if activity.empty:
            st.info(
                f"No changes in the last {trail_views.DATASET_ACTIVITY_DAYS} days.",
                icon=":material/bar_chart:",
            )
        else:
            st.bar_chart(activity, x="day", y="rows changed", color="actor", x_label="day (UTC)")

shown = {c.id: c for c in page.items}
st.dataframe(
    [
        {
            "#": c.seq,
            "When": when(c.committed_at),
            "Kind": changeset_kind(c),  # an out-of-band one flagged loudly
            "Who": who(c.actor_display_name, c.actor_username),  # who and why in view
            "Reason": c.reason,
            "What": changeset_what(c),
            "Inserted": c.inserted,
            "Updated": c.updated,
            "Deleted": c.deleted,
        }
        for c in page.items
    ],
    hide_index=True,
    width="stretch",
    column_config={
        **counts("Inserted", "Updated", "Deleted"),
        **text_widths(Kind=KIND_WIDTH, What="medium", Reason="medium"),  # as on the Audit page
    },
)
pager.controls(page.next_key)

opened = st.selectbox(
    "Open a changeset",
    list(shown),
    index=None,
    format_func=lambda i: (
        f"#{shown[i].seq} · {changeset_kind(shown[i])} · {shown[i].actor_display_name} · "
        f"{when(shown[i].committed_at)}"
    ),
    placeholder="Choose a changeset to see its rows and the table as of it",
    key=f"history.{dataset_id}.open",
)
if opened is None:
    st.stop()
summary = shown[opened]

with st.container(border=True):
    shown_changeset = show_changeset(actor, opened, "history")
    detail = shown_changeset.detail if shown_changeset else None
    revert_slot = st.container(key="history.revert")
    done = trail_views.left_to_revert(shown_changeset.reverts) if shown_changeset else None
    if detail is not None and actor.can("editor"):
        if detail.summary.kind in revert.REVERTIBLE_KINDS and done is not None:
            # Its dialog would only say that nothing can be reverted.
            revert_slot.caption(
                f"Nothing of #{detail.summary.seq} is left to revert: #{done.seq} put all of it "
                f"back. To have its changes again, open #{done.seq} and revert that."
            )
        elif detail.summary.kind in revert.REVERTIBLE_KINDS:
            revert_slot.button(
                f"Revert #{detail.summary.seq}…",
                icon=":material/undo:",
                key="history.revert.open",
                help="Put back what this changeset changed, as a new changeset; cells changed "
                "since are shown and left alone.",
                on_click=open_revert,
                args=(opened,),
            )
        else:
            revert_slot.caption(
                f"{md_escape(changeset_kind(detail.summary))} changesets cannot be reverted "
                "here: only changes to rows can."
            )
    elif detail is not None and detail.summary.kind in revert.REVERTIBLE_KINDS:
        revert_slot.caption("Editors and admins can revert a changeset; your role can view it.")
# The dialog is opened from session state, so a click inside it (which AppTest, and a dialog
# opened before a page rerun, run as a whole-page rerun) still reaches its buttons.
if st.session_state.get(REVERTING) == opened and actor.can("editor"):
    confirm_revert(opened)

# -- as of ------------------------------------------------------------------------------------

st.subheader(f"The table as of changeset #{summary.seq}")
if not st.toggle(
    f"Show {md_escape(choices[dataset_id])} exactly as it stood right after #{summary.seq}",
    key=f"history.{dataset_id}.as_of",
):
    st.stop()
try:
    state = rebuilt(dataset_id, summary.seq, newest_of(dataset_id), actor)
except PortalError as exc:
    show_error(exc)
    st.stop()
if not state.rows:
    st.info(f"The dataset had no rows right after #{summary.seq}.", icon=":material/info:")
else:
    pages = max(1, math.ceil(state.rows / AS_OF_PAGE_SIZE))
    number = int(
        st.number_input(
            "Page", 1, pages, step=1, key=f"history.{dataset_id}.{summary.seq}.as_of_page"
        )
    )
    first = (number - 1) * AS_OF_PAGE_SIZE
    st.caption(
        f"Rows {first + 1:,}–{min(first + AS_OF_PAGE_SIZE, state.rows):,} of {state.rows:,}, "
        f"as of {when(state.committed_at)} · page {number:,} of {pages:,}"
    )
    st.dataframe(
        state.frame.iloc[first : first + AS_OF_PAGE_SIZE],
        hide_index=True,
        width="stretch",
        placeholder=EMPTY_CELL,
        # Text, every digit as stored; numbers right-aligned as in the other tables.
        column_config={n: st.column_config.TextColumn(alignment="right") for n in state.numbers},
        alt=f"{choices[dataset_id]} as it stood right after #{summary.seq}",
    )

export_key = (dataset_id, summary.seq)
export: Export | None = exports.kept(PREPARED, export_key)
st.caption(
    "A CSV file of that state, with the column names as the header; cells a spreadsheet could "
    "run as a formula get a ' in front. Preparing the file records the download in the audit log."
)
export = (
    exports.prepare(
        PREPARED,
        export_key,
        lambda session: trail_views.export_as_of(
            session=session, actor=actor, dataset_id=dataset_id, seq=summary.seq
        ),
        label="Prepare download",
        key="history.prepare",
        spinner="Preparing the CSV file…",
        icon=":material/file_export:",
    )
    or export
)
if export is not None:
    exports.offer(export, noun="row", key="history.download", mime=export.mime)
