"""Edit (everyone; editors and admins change, viewers see the grid read-only).

A window of rows — filtered, sorted and paged in PostgreSQL — goes into ``st.data_editor``; the
frame passed is kept, with each row's ``_version``, in ``portal.diffs.Window``. Every run turns
the editor's state into a checked ChangeSet (``portal.diffs``); changes made on earlier windows
are kept as *pending* and shown again when their rows come back, so they survive paging,
filtering and switching pages. Commit goes through a review dialog to ``portal.writes``; a
conflict shows who changed what, and "Reload and re-apply" merges cell by cell
(``portal.merge``), putting the result back into the grid as pending changes.

Session keys, per dataset ``d``: ``edit.d.view`` (filters, sort, offset, size),
``edit.d.window`` (the loaded ``Window`` and its nonce), ``edit.d.pending`` (the ChangeSet of
every unsaved change, refreshed on each run), ``edit.d.conflict`` and ``edit.d.rebased``.

The database away (restarting, say): reads show "The database is unavailable — retrying…" and the
page comes back by itself (``portal.ui.db_retry``); the grid is then drawn again with the unsaved
changes on top, since the browser may have dropped the grid's own state meanwhile. A commit that
loses its connection was rolled back whole: the dialog says so and keeps every edit for another
try.
"""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import streamlit as st

from portal import browse, column_changes, diffs, merge, writes
from portal.browse import FILTER_HELP, FILTER_OPS, RowFilter, Sort, shown_labels
from portal.csv_safe import csv_bytes
from portal.datasets import check_reason_length, dataset_names, dataset_spec, get_dataset
from portal.db import session_scope, transaction_status
from portal.diffs import ChangeSet, InvalidEdits, show_value
from portal.errors import CommitOutcomeUnknown, PortalError, ValidationError
from portal.spec import ROW_ID, Value, editor_columns
from portal.ui import current_actor, md_escape, md_text, notices, require
from portal.ui.column_config import EMPTY_CELL, column_config
from portal.ui.db_retry import outages, show_error, show_refusal, show_write_error
from portal.ui.fields import show_kept, start_afresh
from portal.ui.index_note import index_note
from portal.ui.leaving import ask_before_leaving
from portal.ui.navigation import history_links, linked_id, no_datasets
from portal.ui.picker import renamed_select
from portal.wording import agreeing, counted

actor = require("viewer")
may_edit = actor.can("editor")


@dataclass(frozen=True)
class View:
    filters: tuple[RowFilter, ...] = ()
    sort: Sort = field(default_factory=Sort)
    offset: int = 0
    size: int = 1_000


LAST_DATASET = "edit.last_dataset"  # the dataset last chosen, kept while the page is left


@dataclass(frozen=True, eq=False)
class Loaded:
    nonce: str
    view: View
    read: writes.EditWindow
    window: diffs.Window
    outages: int  # portal.ui.db_retry.outages() when the grid was drawn
    editable: bool  # may_edit when it was read: a viewer's window carries no unsaved changes

    @property
    def editor_key(self) -> str:
        return f"edit.grid.{self.nonce}"


def keys(dataset_id: int) -> dict[str, str]:
    base = f"edit.{dataset_id}"
    return {
        part: f"{base}.{part}"
        for part in (
            "view",
            "window",
            "pending",
            "dropped",
            "conflict",
            "rebased",
            "flash",
            "confirm",
            "unsure",  # the transaction id of a commit whose outcome was not known
            "committing",  # the correlation id of the commit under way (see below)
            "reason_kept",  # the reason typed, kept when its field's state goes with the grid's
            "no_reason",  # why "Review and commit…" did not open: no reason, or a too long one
            "filter_added",  # the last Apply added a filter: its fields start afresh
        )
    }


def load(dataset_id: int, view: View, pending: ChangeSet | None) -> Loaded:
    """The window ``view`` asks for; past the end (its rows were deleted, by a commit from here
    or someone else's), the last window that has rows."""

    def read_window(offset: int) -> writes.EditWindow:
        return writes.read_window(
            session=session,
            dataset_id=dataset_id,
            offset=offset,
            limit=view.size,
            sort=view.sort,
            filters=view.filters,
        )

    with session_scope() as session:
        if view.filters or view.sort != Sort():
            names = dataset_spec(get_dataset(session=session, dataset_id=dataset_id)).names
            view = without_removed_filters(dataset_id, view, names)
        read = read_window(view.offset)
        if not read.rows and view.offset > 0:
            view = replace(view, offset=(max(1, math.ceil(read.total / view.size)) - 1) * view.size)
            st.session_state[keys(dataset_id)["view"]] = view
            read = read_window(view.offset)
        if pending is not None and may_edit:
            pending, dropped = pending.only_columns(read.spec.names)
            if dropped:
                removed = column_changes.removed_labels(session=session, dataset_id=dataset_id)
                dropped_edits_note(dataset_id, pending, dropped, removed)
    base = diffs.editor_frame(read.spec, read.rows)
    window = diffs.make_window(read.spec, base, read.versions, pending if may_edit else None)
    return Loaded(secrets.token_hex(4), view, read, window, outages(), may_edit)


def without_removed_filters(dataset_id: int, view: View, names: Sequence[str]) -> View:
    """``view`` without its filters and sort on columns other than ``names`` (an admin removed
    them since they were chosen), kept so, and a warning that says so."""
    known = {ROW_ID, *names}
    filters = tuple(f for f in view.filters if f.column in known)
    sort = view.sort if view.sort.column in known else Sort()
    if (filters, sort) == (view.filters, view.sort):
        return view
    view = replace(view, filters=filters, sort=sort, offset=0)
    st.session_state[keys(dataset_id)["view"]] = view
    add_flash(dataset_id, "A filter or sort on a column an admin removed since was cleared.")
    return view


def add_flash(dataset_id: int, note: str) -> None:
    """Add ``note`` to the warning the page shows next."""
    flash = st.session_state.get(keys(dataset_id)["flash"])
    st.session_state[keys(dataset_id)["flash"]] = f"{flash} {note}" if flash else note


def dropped_edits_note(
    dataset_id: int, kept: ChangeSet, dropped: Mapping[str, int], labels: Mapping[str, str]
) -> None:
    """Keep ``kept``, the unsaved changes without the edits to columns an admin removed since
    (``dropped``: how many edits to each), and say which went."""
    said = "; ".join(
        f"{counted(n, 'edit')} to “{labels.get(name, name)}”" for name, n in dropped.items()
    )
    were = agreeing(sum(dropped.values()), "was", "were")
    add_flash(
        dataset_id,
        f"{said} {were} dropped: an admin removed the column since. Your other edits are kept.",
    )
    keep(dataset_id, kept)


def changed_since(read: writes.EditWindow) -> str:
    """What an admin changed since ``read`` that the rows must be read again for — the columns
    or their rules (``spec_version``), or whether a reason is required — in words; empty if
    nothing did, or if the database cannot say just now (the reads below then say why)."""
    try:
        with session_scope() as session:
            now = get_dataset(session=session, dataset_id=read.dataset_id)
            spec_version, reason_required = now.spec_version, now.reason_required
    except PortalError:
        return ""
    if spec_version != read.spec_version:
        return (
            f"An admin changed the columns of “{read.name}” or their rules since you opened it: "
            "the rows are read again, and your unsaved edits are kept and checked under the "
            "columns and rules as they are now."
        )
    if reason_required != read.reason_required:
        return (
            f"“{read.name}” now needs a reason for every change: an admin changed its setting "
            "since you opened it. Your unsaved edits are kept."
            if reason_required
            else f"“{read.name}” no longer needs a reason for changes: an admin changed its "
            "setting since you opened it. Your unsaved edits are kept."
        )
    return ""


def current_changes(loaded: Loaded) -> ChangeSet:
    """Every unsaved change: this window's editor state on top of the pending ones."""
    state = st.session_state.get(loaded.editor_key)
    return diffs.build_changeset(loaded.window, state, may_edit=may_edit)


def changes_to_carry(loaded: Loaded) -> ChangeSet | None:
    """Every unsaved change, those that break a rule too (``diffs.carried_changes``), to keep
    as pending when the rows are read again; None when an edit could not be carried (a value
    the grid cannot show again in its column).

    Raises:
        PortalError: another refusal of the state (a viewer's edits, say).
    """
    try:
        return current_changes(loaded)
    except InvalidEdits:
        kept = diffs.carried_changes(loaded.window, st.session_state.get(loaded.editor_key))
        return kept.changes if may_edit and kept is not None and not kept.dropped else None


def keep(dataset_id: int, changes: ChangeSet) -> None:
    """Keep ``changes`` as every unsaved change to the dataset. A viewer has none to keep: the
    changes kept from when their role let them edit stay as they are (an editor made a viewer
    finds them again if made an editor again)."""
    if may_edit:
        st.session_state[keys(dataset_id)["pending"]] = changes


def move(dataset_id: int, view: View) -> bool:
    """Callback: show another window, carrying this window's edits along as pending, those
    that break a rule too (listed on every window until corrected: a rule broken on a row of
    another window, after an admin tightened it, say, is corrected there); whether it did (not
    when an edit could not be carried: ``diffs.carried_changes``)."""
    k = keys(dataset_id)
    loaded: Loaded | None = st.session_state.get(k["window"])
    if loaded is not None:
        try:
            changes = changes_to_carry(loaded)
        except PortalError as exc:
            st.session_state[k["flash"]] = str(exc)
            return False
        if changes is None:
            st.session_state[k["flash"]] = (
                "Some edits on this page cannot be kept as they are: correct or discard "
                "them before changing page, filter or sort."
            )
            return False
        keep(dataset_id, changes)
    st.session_state[k["view"]] = view
    st.session_state.pop(k["window"], None)
    return True


def forget(dataset_id: int) -> None:
    """Drop every unsaved change, the reason typed for them and the loaded window (after a
    commit or a discard)."""
    k = keys(dataset_id)
    st.session_state.pop(f"edit.{dataset_id}.reason", None)
    for part in (
        "window",
        "pending",
        "dropped",
        "conflict",
        "rebased",
        "confirm",
        "reason_kept",
        "committing",
    ):
        st.session_state.pop(k[part], None)


def committed_message(changeset_id: int, number: int | None, summary: str) -> str:
    """What a commit that landed says, shown by the next run (a toast raised right before
    ``st.rerun()`` may never be seen)."""
    if number is not None:
        return f"Committed as changeset #{number}: {summary}."
    return (
        f"Committed as changeset id {changeset_id} (saved; its number could not be read just "
        "now: it is listed in this dataset's history, with your reason, once the database "
        f"answers): {summary}."
    )


# -- which dataset ----------------------------------------------------------------------------

st.title("Edit")
try:
    with session_scope() as session:
        choices = dict(dataset_names(session=session))
except PortalError as exc:
    show_error(exc)
    st.stop()
if not choices:
    no_datasets(actor, "No datasets yet, so nothing to edit.")
    st.stop()


def unsaved(i: int) -> bool:
    """Whether the dataset holds unsaved changes made in this session."""
    held: ChangeSet | None = st.session_state.get(keys(i)["pending"])
    return held is not None and not held.empty


# The picker is a widget, whose state goes when the person visits another page: the dataset
# chosen is kept apart, so a return finds it (and its unsaved changes) chosen again.
wanted = linked_id(st.query_params.get("dataset"))
if "edit.dataset" not in st.session_state:
    again = wanted if wanted in choices else st.session_state.get(LAST_DATASET)
    if again in choices:
        st.session_state["edit.dataset"] = again
dataset_id = renamed_select(
    "Dataset",
    choices,
    index=None,
    # Not marked with their unsaved changes: a label that changed at the first edit would
    # start the run over at every first edit (renamed_select).
    placeholder="Choose a dataset to edit",
    key="edit.dataset",
)
st.session_state[LAST_DATASET] = dataset_id
if others := [choices[i] for i in choices if i != dataset_id and unsaved(i)]:
    st.caption(
        f"Unsaved changes in {', '.join(f'“{md_escape(n)}”' for n in others)} too: choose "
        f"{agreeing(len(others), 'it', 'one')} above to review and commit them, or discard them."
    )
if dataset_id is None:
    st.stop()
opened: int = dataset_id  # narrowed, for the dialogs below
st.query_params["dataset"] = str(dataset_id)
k = keys(dataset_id)

# A commit whose connection broke while it was committing, with the database gone too long to
# say whether it landed: asked again on every run until it says. Committing waits till then, so
# the same edits are never written twice.
unsure: str | None = st.session_state.get(k["unsure"])
if unsure is not None:
    landed: int | None = None
    try:
        outcome = transaction_status(unsure)
        if outcome == "committed":  # confirmed by its changeset, see transaction_status
            with session_scope() as session:
                landed = writes.changeset_of_transaction(
                    session=session, dataset_id=dataset_id, actor=actor, xid=unsure
                )
                number = writes.number_if_landed(session=session, changeset_id=landed)
            outcome = "committed" if landed is not None else "aborted"
    except PortalError as exc:
        show_error(exc)
        st.stop()
    if outcome is None:
        st.warning(
            "Whether your last commit was saved is not known yet: the database has not said. "
            "Committing is paused until it does, so that nothing is written twice; this page "
            "asks again each time it runs.",
            icon=":material/hourglass_top:",
        )
    else:
        st.session_state.pop(k["unsure"])
        unsure = None
        if outcome == "committed":
            forget(dataset_id)
            st.success(
                f"Your last commit was saved after all, as changeset #{number}: your edits are in "
                "the dataset, and the rows below are read again.",
                icon=":material/check_circle:",
            )
        else:
            st.info(
                "Your last commit was not saved (the database undid it when the connection "
                "broke): your edits are still here; commit them again.",
                icon=":material/undo:",
            )
# A commit's run ends at its next Streamlit call when another click (a second one on Commit,
# say) reaches the server meanwhile: after the database committed, before the edits were
# forgotten. Its correlation id, kept before writing, tells the next run whether it landed, so
# the same edits are not shown as unsaved, nor written again.
committing: uuid.UUID | None = st.session_state.get(k["committing"])
if committing is not None:
    try:
        with session_scope() as session:
            landed = writes.changeset_of_click(
                session=session, dataset_id=dataset_id, actor=actor, correlation_id=committing
            )
            number = writes.number_if_landed(session=session, changeset_id=landed)
    except PortalError as exc:
        show_error(exc)
        st.stop()
    st.session_state.pop(k["committing"])
    if landed is not None:
        pending: ChangeSet = st.session_state.get(k["pending"], ChangeSet())
        forget(dataset_id)
        st.session_state[f"edit.{dataset_id}.done"] = committed_message(
            landed, number, pending.summary()
        )
view: View = st.session_state.get(k["view"], View())
loaded: Loaded | None = st.session_state.get(k["window"])
if loaded is not None and loaded.editable != may_edit:
    loaded = None  # the role changed since the rows were read: read them again for it
elif loaded is not None and loaded.editor_key not in st.session_state:
    # The grid's own state went away (the person was on another page): show the rows again,
    # freshly read, with the unsaved changes on top — all but those that broke a rule.
    loaded = None
    # Edits breaking a rule come back with the rows, to be corrected (diffs.carried_changes);
    # only values the grid cannot show again in their column are lost, and said to be.
    dropped = st.session_state.pop(k["dropped"], None)
    if dropped and dropped[0]:
        problems, others_kept = dropped
        st.session_state[k["flash"]] = (
            f"When you left this page, {counted(len(problems), 'edit')} could not be kept"
            + (
                "; your other edits are still here."
                if others_kept
                else ", nor could the edits made since your edits last kept all the rules."
            )
            + f" Not kept: {diffs.listed(problems, 5)}."
        )
elif loaded is not None and loaded.outages != outages():
    # The database was away since the grid was drawn: the browser dropped the grid while the
    # page said so, but its last state is still here. Keep it as pending and draw the grid
    # again with it on top (as after a page switch). (The typed reason is shown again by
    # show_kept below.)
    try:
        keep(dataset_id, current_changes(loaded))
        loaded = None
    except PortalError:  # edits that break a rule: this grid, whose state holds them, stays
        loaded = replace(loaded, outages=outages())
        st.session_state[k["window"]] = loaded
elif loaded is not None and (news := changed_since(loaded.read)):
    # Checked at every run, not only at the commit (which refuses edits read under other
    # rules): the rows are read again, the unsaved changes on top — those that break a rule
    # too (diffs.carried_changes) — each checked under the rules as they are now. Not while an
    # edit here could not be carried: it is shown, to be corrected first.
    try:
        unsaved_changes = changes_to_carry(loaded)
    except PortalError:
        unsaved_changes = None
    if unsaved_changes is not None:
        keep(dataset_id, unsaved_changes)
        add_flash(dataset_id, news)
        st.session_state.pop(k["confirm"], None)  # a review of edits read under the old rules
        loaded = None
if loaded is None:
    try:
        loaded = load(dataset_id, view, st.session_state.get(k["pending"]))
    except PortalError as exc:
        show_error(exc)
        if unsaved(dataset_id):
            st.caption("Your unsaved changes are kept: they come back with the rows.")
        if view.filters and st.button("Remove the last filter"):
            st.session_state[k["view"]] = replace(view, filters=view.filters[:-1], offset=0)
            st.rerun()
        if st.button("Reset filters and sort"):
            st.session_state.pop(k["view"], None)
            st.rerun()
        st.stop()
    st.session_state[k["window"]] = loaded
read, window, view = loaded.read, loaded.window, loaded.view
spec = read.spec
# A column labelled "Row id" (a file's own row numbers) is "Row id (column)" here, so that the
# grid, the lists and the review tables never show two of that name.
labels = shown_labels(spec)
shown_spec = replace(spec, columns=tuple(replace(c, label=labels[c.name]) for c in spec.columns))


def table(records: list[dict[str, Any]], *, wide: Sequence[str] = ()) -> None:
    """``records`` as a table; the columns named in ``wide`` get room for long text."""
    st.dataframe(
        pd.DataFrame(records),
        hide_index=True,
        width="stretch",
        placeholder=EMPTY_CELL,
        column_config={name: st.column_config.TextColumn(width="large") for name in wide},
    )


def labelled(values: Mapping[str, Value]) -> dict[str, str]:
    """A row's values as the review shows them, keyed by column label."""
    return {labels[name]: show_value(value) for name, value in values.items()}


def in_words(values: Mapping[str, Value]) -> str:
    return ", ".join(f"{label}: {shown}" for label, shown in labelled(values).items())


def review(changes: ChangeSet) -> None:
    """How many cells and rows change, each changed cell before → after, the new rows and the
    deleted ones."""
    m = st.columns(4)
    m[0].metric("Cells changed", f"{changes.cells_updated:,}")
    m[1].metric("Rows changed", f"{len(changes.updates):,}")
    m[2].metric("Rows added", f"{len(changes.inserts):,}")
    m[3].metric("Rows deleted", f"{len(changes.deletes):,}")
    if changes.updates:
        table(
            [
                {
                    labels[ROW_ID]: c.row_id,
                    "Column": c.column,
                    "Before": show_value(c.before),
                    "After": show_value(c.after),
                }
                for c in diffs.cell_changes(changes, shown_spec)
            ]
        )
    if changes.inserts:
        st.caption("New rows")
        table([labelled(i.values) for i in changes.inserts])
    if changes.deletes:
        st.caption("Deleted rows")
        table([{labels[ROW_ID]: d.row_id, **labelled(d.before)} for d in changes.deletes])


if not may_edit:
    st.caption("You can view this dataset; editors and admins can change it.")
with notices():
    if flash := st.session_state.pop(k["flash"], None):
        st.warning(md_text(flash), icon=":material/warning:")
    if done := st.session_state.pop(f"edit.{dataset_id}.done", None):
        st.toast(done, icon=":material/check_circle:")
        st.success(done, icon=":material/check_circle:")
    if reapplied := st.session_state.pop(f"edit.{dataset_id}.reapplied", None):
        st.info(reapplied, icon=":material/merge:")  # set by the run before a rerun: see "done"


# -- filter, sort, page -----------------------------------------------------------------------

with st.expander(
    "Filter and sort" + (f" — {counted(len(view.filters), 'filter')}" if view.filters else ""),
    expanded=bool(view.filters),
    key=f"edit.{dataset_id}.filters_open",  # stays open as its label counts filters
):
    for n, f in enumerate(view.filters):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.write(md_escape(f.describe(spec)))
        right.button(
            "Remove",
            key=f"edit.{dataset_id}.unfilter.{n}",
            on_click=move,
            args=(
                dataset_id,
                replace(view, filters=view.filters[:n] + view.filters[n + 1 :], offset=0),
            ),
        )
    # Once its filter is added, its fields start afresh, or the next Apply (of a sort, say)
    # adds it again.
    fresh = {"fcol": next(iter(labels)), "fop": FILTER_OPS[0], "fval": "", "fup": ""}
    start_afresh(k["filter_added"], {f"{k['view']}.{part}": v for part, v in fresh.items()})
    with st.form(f"edit.{dataset_id}.filter"):
        c1, c2, c3, c4 = st.columns([2, 1, 2, 2])
        f_column = c1.selectbox(
            "Column", list(labels), format_func=labels.__getitem__, key=f"{k['view']}.fcol"
        )
        f_op = c2.selectbox("Match", FILTER_OPS, key=f"{k['view']}.fop", help=FILTER_HELP)
        f_value = c3.text_input("Value (or from)", key=f"{k['view']}.fval")
        f_upper = c4.text_input("To (range only)", key=f"{k['view']}.fup")
        c5, c6, c7 = st.columns([2, 1, 1])
        s_column = c5.selectbox(
            "Sort by",
            list(labels),
            index=list(labels).index(view.sort.column),
            format_func=labels.__getitem__,
        )
        s_desc = c6.toggle("Descending", value=view.sort.descending)
        size = c7.selectbox(
            "Rows per page", writes.WINDOW_SIZES, index=writes.WINDOW_SIZES.index(view.size)
        )
        if view.filters:
            st.caption(
                "A filter applied here is added to those above: the rows shown match all of "
                "them. Remove one above to widen the rows again."
            )
        add = st.form_submit_button("Apply")
    if add:
        asked = RowFilter.asked(f_column, f_op, f_value, f_upper)
        problem = None if asked is None else browse.filter_problem(spec, asked)
        if problem is not None:  # said here, beside the grid, which stays as it is
            st.error(
                md_text(f"{problem} The filter was not added: correct it and apply it again."),
                icon=":material/filter_alt_off:",
            )
        else:
            kept = asked is None or asked in view.filters  # (not twice)
            filters = view.filters if kept else (*view.filters, asked)
            if move(dataset_id, View(filters, Sort(s_column, s_desc), 0, size)) and not kept:
                st.session_state[k["filter_added"]] = True
            st.rerun()

index_note(labels, read.indexing)


def close_dialog() -> None:
    st.session_state.pop(k["confirm"], None)


def open_dialog(which: str) -> None:
    st.session_state[k["confirm"]] = which


@st.dialog("Discard your changes?", on_dismiss=close_dialog)
def confirm_discard(what: str) -> None:
    st.write(f"{what}: all of it will be lost.")
    left, right = st.columns(2)
    if left.button("Discard", type="primary", width="stretch"):
        forget(opened)
        st.rerun()
    if right.button("Keep editing", width="stretch"):
        close_dialog()
        st.rerun()


def discard_button(what: str) -> None:
    """The "Discard changes…" button, and its confirmation once clicked (``what``: what is
    lost). The dialog is opened from session state, as the commit's is."""
    st.button(
        "Discard changes…",
        icon=":material/delete_sweep:",
        width="stretch",
        on_click=open_dialog,
        args=("discard",),
    )
    if st.session_state.get(k["confirm"]) == "discard":
        confirm_discard(what)


# -- the grid ---------------------------------------------------------------------------------

# A forged state that does not fit the window would break the grid itself: refuse it and start
# this window afresh (pending changes from earlier windows are kept).
forged = diffs.structural_problems(window, st.session_state.get(loaded.editor_key))
if forged:
    st.session_state[k["flash"]] = str(InvalidEdits(forged))
    st.session_state.pop(k["window"], None)
    st.rerun()

config: dict[str, Any] = column_config(editor_columns(shown_spec), as_text=window.as_text)
config["_index"] = st.column_config.NumberColumn(
    labels[ROW_ID], disabled=True, help="Assigned by the portal; new rows get theirs on commit."
)
# While I choose what to keep after a conflict, the merge holds my edits as they were when I
# reloaded, on the rows as they are now: the grid, which shows the rows as they were before, is
# not drawn until then, so nothing typed meanwhile can be dropped and no stale value is shown.
choosing = may_edit and k["rebased"] in st.session_state
if choosing:
    st.info(
        "Choose what to keep below, then apply your choices: the rows come back, as they are "
        "now with your edits on them, once you have.",
        icon=":material/merge:",
    )
else:
    st.data_editor(
        window.grid,
        key=loaded.editor_key,
        column_config=config,
        num_rows="dynamic" if may_edit else "fixed",
        disabled=not may_edit,
        width="stretch",
        # A few rows (none, when a filter matches nothing): as tall as they are, not a tall
        # empty grid over the words that say so. Per window: part of the grid's identity.
        height=420 if len(window.grid) > 10 else "auto",
        placeholder=EMPTY_CELL,
        # The name the rows were read under: part of the grid's identity, so a rename made
        # meanwhile must not change it (the grid's unsaved edits would go with it).
        alt=f"Rows of {read.name}" + (", editable" if may_edit else ", read-only"),
    )
# The pager and the row links, in a container drawn in every run: not while I choose what to
# keep after a conflict (there is no grid to page through then, and the rows shown are not yet
# those the merge works on).
under_grid = st.container()
if not choosing:
    with under_grid:
        # Under the grid: above it, the grid's own toolbar (shown on hover) covered the Next button.
        first, last = read.offset + 1, read.offset + len(read.rows)
        nav = st.columns([3, 1, 1], vertical_alignment="center")
        if read.rows:
            nav[0].caption(f"Rows {first:,}–{last:,} of {read.total_text}")
        elif view.filters:
            nav[0].caption("No rows match the filters. Remove a filter to see more.")
        else:
            nav[0].caption(
                "The dataset has no rows yet." + (" Add one in the grid above." if may_edit else "")
            )
        nav[1].button(
            "Previous",
            disabled=read.offset == 0,
            on_click=move,
            args=(dataset_id, replace(view, offset=max(0, read.offset - view.size))),
            width="stretch",
        )
        nav[2].button(
            "Next",
            disabled=not read.has_more,
            on_click=move,
            args=(dataset_id, replace(view, offset=read.offset + view.size)),
            width="stretch",
        )
        if any(window.shown.index < 0):
            st.caption("Rows with a negative id are new rows you added earlier, not committed yet.")
        history_links(
            dataset_id,
            [int(i) for i in window.shown.index if i >= 0],
            key=f"edit.{dataset_id}.history_row",
        )

leaving = st.empty()  # where the browser is told whether leaving would lose edits
try:
    changes = current_changes(loaded)
except InvalidEdits as exc:
    # Kept for a return to the page, when the grid and its state are gone: the edits that
    # break no rule, and word of those that do.
    state = st.session_state.get(loaded.editor_key)
    carried = diffs.carried_changes(window, state) if may_edit else None
    if carried is not None:
        st.session_state[k["pending"]] = carried.changes
    st.session_state[k["dropped"]] = (
        carried.dropped if carried is not None else exc.problems,
        carried is not None,
    )
    kept = (
        diffs.keeping_the_rules(carried.changes, spec, exc.problems)
        if carried is not None
        else None
    )
    with leaving:
        ask_before_leaving(True)
    st.error(
        f"{len(exc.problems):,} of your edits {agreeing(len(exc.problems), 'breaks', 'break')} "
        "the dataset's rules; nothing can be "
        "committed until they are corrected (or discarded).",
        icon=":material/error:",
    )
    header = ["Where", "Column", "Value", "Problem"]
    rows = [[p.where, p.column, p.value, p.message] for p in exc.problems]
    table([dict(zip(header, row, strict=True)) for row in rows])
    st.download_button(
        "Download the problems (CSV)",
        csv_bytes(header, rows),
        file_name="edit-problems.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
    )
    if kept is not None and not kept.empty:  # what else was changed, for the person to see
        st.subheader("Your other changes")
        st.caption(
            "These keep the rules; they are committed with the rest once every problem above "
            "is corrected."
        )
        review(kept)
    discard_button("Every unsaved change to this dataset, those that break its rules too")
    st.stop()
except PortalError as exc:
    show_refusal(exc)
    st.stop()
keep(dataset_id, changes)  # for the next window, or a return to the page
st.session_state.pop(k["dropped"], None)
with leaving:  # edits to any dataset, kept in this session: a reload loses them
    ask_before_leaving(any(unsaved(i) for i in choices))


# -- a conflict, and the merge ----------------------------------------------------------------

conflict: writes.EditConflict | None = st.session_state.get(k["conflict"]) if may_edit else None
if conflict is not None:
    st.error(md_text(str(conflict)), icon=":material/sync_problem:")
    table(
        [
            {
                labels[ROW_ID]: c.row_id,
                "You": "deleted it" if isinstance(c.mine, diffs.RowDelete) else "edited it",
                "They": "deleted it" if c.now is None else "changed it",
                "Their change": ", ".join(
                    f"{labels[n]}: {show_value(old)} → {show_value(new)}"
                    for n, (old, new) in c.their_change.items()
                    if n in labels
                ),
                "By": c.by,
                "When": c.at.strftime("%Y-%m-%d %H:%M:%S UTC") if c.at else "",
                "Why": c.reason,
                "Now": in_words(c.now or {}) or "(row deleted)",
            }
            for c in conflict.conflicts
        ],
        wide=("Now",),
    )
    if st.button("Reload and re-apply my edits", type="primary", icon=":material/merge:"):
        try:
            with session_scope() as session:
                now = writes.rows_now(
                    session=session, dataset_id=dataset_id, row_ids=changes.row_ids()
                )
        except PortalError as exc:
            show_error(exc)
            st.stop()
        outcome = merge.rebase(changes, now)
        st.session_state.pop(k["conflict"], None)
        if outcome.needs_decisions:
            st.session_state[k["rebased"]] = outcome
        else:
            st.session_state[k["pending"]] = outcome.auto
            st.session_state.pop(k["window"], None)
            st.session_state[f"edit.{dataset_id}.reapplied"] = (
                f"Re-applied {outcome.reapplied_cells} of your cells on the latest rows."
            )
        st.rerun()

rebased: merge.Rebased | None = st.session_state.get(k["rebased"]) if may_edit else None
if rebased is not None:
    st.subheader("Choose what to keep")
    n = rebased.reapplied_cells
    st.caption(
        (
            f"{counted(n, 'cell')} of yours {agreeing(n, 'was', 'were')} re-applied by "
            f"{agreeing(n, 'itself', 'themselves')}, on the latest rows."
            if n
            else "None of your cells could be re-applied by itself."
        )
        + " What needs your decision, below:"
    )
    asked = []  # said for what is there: a re-created row is no choice between theirs and mine
    if rebased.clashes:
        asked.append(
            "- cells you and someone else both changed: choose “theirs” (the value saved since "
            "you loaded the rows) or “mine” (the one you typed);"
        )
    if rebased.lost:
        asked.append(
            "- rows you edited that someone else deleted: tick one to re-create it as a new "
            "row with your edits; unticked, your edits to it are dropped;"
        )
    if rebased.changed_deletes:
        asked.append(
            "- rows you deleted that someone else changed since: tick one to delete it "
            "anyway; unticked, it stays as they left it;"
        )
    st.markdown("\n".join(asked)[:-1] + ".")
    choices_made: dict[tuple[int, str], merge.Choice] = {}
    for clash in rebased.clashes:
        # Widget labels are Markdown: values and column labels are shown as they are.
        sides: dict[merge.Choice, str] = {
            "theirs": f"theirs: {md_escape(show_value(clash.theirs)) or '(empty)'}",
            "mine": f"mine: {md_escape(show_value(clash.mine)) or '(empty)'}",
        }
        choice = st.radio(
            f"Row {clash.row_id}, {md_escape(labels[clash.column])} — it was "
            f"“{md_escape(show_value(clash.original))}”",
            list(sides),
            index=None,  # chosen by the person, each one: no side is taken for them
            format_func=sides.__getitem__,
            horizontal=True,
            key=f"edit.{dataset_id}.clash.{clash.row_id}.{clash.column}",
        )
        if choice is not None:
            choices_made[(clash.row_id, clash.column)] = choice
    recreate = {
        lost.row_id
        for lost in rebased.lost
        if st.checkbox(
            f"Row {lost.row_id} was deleted by someone else; re-create it as a new row: "
            + md_escape(in_words(lost.values))
            + " (your edits: "
            + md_escape(in_words(lost.mine.after))
            + ")",
            key=f"edit.{dataset_id}.recreate.{lost.row_id}",
        )
    }
    delete_anyway = {
        d.row_id
        for d in rebased.changed_deletes
        if st.checkbox(
            f"Row {d.row_id}, which you deleted, was changed by someone else; delete it anyway",
            key=f"edit.{dataset_id}.delete.{d.row_id}",
        )
    }
    undecided = len(rebased.clashes) - len(choices_made)
    if undecided:
        st.caption(f"Choose theirs or mine for {counted(undecided, 'more cell')} to apply.")
    apply_col, discard_col = st.columns(2)
    if apply_col.button(
        "Apply my choices", type="primary", width="stretch", disabled=bool(undecided)
    ):
        resolved = merge.resolve(
            rebased, choices_made, recreate=recreate, delete_anyway=delete_anyway
        )
        st.session_state[k["pending"]] = resolved
        st.session_state.pop(k["rebased"], None)
        st.session_state.pop(k["window"], None)
        st.session_state[f"edit.{dataset_id}.reapplied"] = (  # news, not a warning
            "Your choices are applied to the latest rows: review the changes below, then "
            "commit them."
            if not resolved.empty
            else "Your choices are applied to the latest rows: nothing is left to commit, as"
            " the rows already hold what you chose."
        )
        st.rerun()
    with discard_col:  # or give up my edits altogether, rather than choose
        discard_button("Your edits to this dataset, those re-applied by themselves too")
    st.stop()


# -- review and commit ------------------------------------------------------------------------

if changes.empty:
    held: ChangeSet | None = st.session_state.get(k["pending"])
    if may_edit or held is None or held.empty:
        st.caption("No unsaved changes." if may_edit else "")
        st.stop()
    # Made while their role let them edit: kept (not shown, never committed) for its return.
    st.info(
        f"Your unsaved changes to this dataset ({held.summary()}), made while your role let "
        "you edit it, are kept but not shown and cannot be committed; they come back if an "
        "admin makes you an editor again.",
        icon=":material/lock:",
    )
    discard_button(held.summary())
    st.stop()

st.subheader("Review")
review(changes)
# Not refused (such a date may be meant), but asked about: see diffs.doubtful_dates.
doubtful = diffs.doubtful_dates(changes, shown_spec)
if doubtful:
    n = len(doubtful)
    st.warning(
        f"{counted(n, 'date')} to check before you commit: "
        f"{agreeing(n, 'it looks like', 'they look like')} a slip of the grid's date field.",
        icon=":material/event_busy:",
    )
    table(
        [
            {"Where": d.where, "Column": d.column, "Value": d.value, "Check": d.message}
            for d in doubtful
        ],
        wide=("Check",),
    )

reason_key = f"edit.{dataset_id}.reason"
if reason_key not in st.session_state and k["reason_kept"] in st.session_state:
    # The field's state went away with the grid's (another page or dataset was shown): the
    # reason comes back with the edits it was typed for.
    st.session_state[reason_key] = st.session_state[k["reason_kept"]]
show_kept(reason_key)  # after a conflict's screens, which stop the page above it
reason = st.text_input(
    "Reason" + (" (required)" if read.reason_required else " (optional)"),
    key=reason_key,
    placeholder="Why are you making these changes?",
)
st.session_state[k["reason_kept"]] = reason


@st.dialog("Commit these changes?", on_dismiss=close_dialog)
def confirm(changes: ChangeSet, reason: str) -> None:
    st.write(changes.summary() + ".")
    st.write(f"Reason: {md_escape(reason) or '(none)'}")
    if doubtful:
        st.warning(
            f"{counted(len(doubtful), 'date')} listed under the review to check: commit only"
            f" if {agreeing(len(doubtful), 'it is', 'they are')} what you meant.",
            icon=":material/event_busy:",
        )
    left, right = st.columns(2)
    if left.button("Commit", type="primary", width="stretch"):
        click = uuid.uuid4()
        try:
            who = current_actor("editor")
            st.session_state[k["committing"]] = click  # before writing: see "committing" above
            with st.spinner(f"Committing {changes.summary()}…"), session_scope() as session:
                result = writes.commit(
                    session=session,
                    actor=who,
                    dataset_id=opened,
                    spec_version=read.spec_version,
                    changes=changes,
                    reason=reason,
                    correlation_id=click,
                )
        except writes.EditConflict as exc:
            st.session_state.pop(k["committing"], None)
            st.session_state[k["conflict"]] = exc
            close_dialog()
            st.rerun()
        except (writes.SpecChanged, writes.ReasonRequired) as exc:
            # A setting changed since the rows were read: an admin changed the column rules or
            # added a column, or required a reason while the field said it was optional (the
            # button asks for one otherwise). Read the rows again, edits kept: checked under the
            # new rules, or with the field saying a reason is required.
            st.session_state.pop(k["committing"], None)
            st.session_state[k["flash"]] = (
                f"An admin changed the columns of “{read.name}” or their rules since you opened "
                "it, so nothing was written. Your edits are kept and checked again under the "
                "columns and rules as they are now: review them, then commit again."
                if isinstance(exc, writes.SpecChanged)
                else f"“{read.name}” now needs a reason for every change (its setting was "
                "changed since you opened it), so nothing was written: type a reason below, "
                "then commit again."
            )
            st.session_state.pop(k["window"], None)
            close_dialog()
            st.rerun()
        except PortalError as exc:
            st.session_state.pop(k["committing"], None)
            if isinstance(exc, CommitOutcomeUnknown) and exc.xid is not None:
                st.session_state[k["unsure"]] = exc.xid  # asked again by every run
            show_write_error(exc, kept="Your edits are kept", again="commit again")
            return
        forget(opened)
        number = writes.number_after_commit(result.changeset_id)
        st.session_state[f"edit.{opened}.done"] = committed_message(
            result.changeset_id, number, changes.summary()
        )
        st.rerun()
    if right.button("Cancel", width="stretch"):
        close_dialog()
        st.rerun()


def ask_to_commit() -> None:
    """``on_click`` of "Review and commit…": the dialog, or, without a reason the dataset
    needs or with one too long to keep, a word under the button. The button is not disabled
    until a reason is typed: the field takes what is typed when it loses focus, and the click
    that does so would be lost."""
    typed = st.session_state.get(reason_key, "")
    try:
        check_reason_length(typed)
    except ValidationError as exc:
        st.session_state[k["no_reason"]] = f"{exc} Shorten it, then commit."
        return
    if read.reason_required and not typed.strip():
        st.session_state[k["no_reason"]] = (
            f"“{md_escape(read.name)}” needs a reason for every change: type why in the reason "
            "field above, then commit."
        )
    else:
        open_dialog("commit")


left, right = st.columns(2)
left.button(
    "Review and commit…",
    type="primary",
    icon=":material/save:",
    # After a conflict, not until the edits are re-applied on the latest rows (above): the
    # same commit would meet the same conflict.
    disabled=not may_edit or unsure is not None or conflict is not None,
    help="A reason is required for this dataset." if read.reason_required else None,
    width="stretch",
    on_click=ask_to_commit,
)
if no_reason := st.session_state.pop(k["no_reason"], None):
    left.error(no_reason, icon=":material/error:")
with right:
    discard_button(changes.summary())
# The dialog is opened from session state, so a click inside it (which AppTest, and a dialog
# opened before a page rerun, run as a whole-page rerun) still reaches its buttons.
if st.session_state.get(k["confirm"]) == "commit" and may_edit and unsure is None:
    confirm(changes, reason)
