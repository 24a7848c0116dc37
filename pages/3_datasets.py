"""Datasets (everyone): every dataset with its size and last change, and one dataset opened
read-only — filtered, sorted and paged in PostgreSQL — with a profile of any column (empty
cells, distinct and most frequent values, the spread of numbers and dates) and a CSV download of
its rows.

The download is prepared on an explicit click, because ``st.download_button`` serves bytes it
already holds; preparing records the export in the audit log, since the page cannot know whether
the browser then saved the file.
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from portal import browse, column_changes, datasets, diffs, rule_changes, uploads
from portal.browse import (
    FILTER_HELP,
    FILTER_OPS,
    PAGE_SIZES,
    CsvExport,
    ExportKey,
    FilterOp,
    RowFilter,
    Sort,
)
from portal.db import session_scope
from portal.errors import PortalError, ValidationError
from portal.profile import EXACT_ROWS, Profile, column_profile
from portal.spec import DATE_FORMATS, MAX_DECIMAL_DIGITS, ROW_ID, DatasetSpec, editor_columns
from portal.ui import current_actor, exports, md_escape, md_text, notices, require
from portal.ui.column_config import EMPTY_CELL, column_config, counts, rules_config
from portal.ui.db_retry import show_error, show_refusal, show_write_error
from portal.ui.index_note import index_note
from portal.ui.navigation import history_links, no_datasets, upload_link
from portal.ui.picker import renamed_select
from portal.wording import counted

actor = require("viewer")

OPEN = "datasets.open"
FLASH = "datasets.flash"
SETTING = "datasets.setting"  # (dataset id, the reason setting asked for): its dialog is open
REMOVING = "datasets.removing"  # (dataset id, spec version, column name): its dialog is open
RULES_RESETS = "datasets.rules_resets"  # bumped when a malformed rules grid is dropped
DESCRIBE = "datasets.describe"  # .<dataset id>: the name and description form
PREPARED = "datasets.prepared"  # (ExportKey, the prepared CsvExport)
PROFILE_REFUSED = "datasets.profile_refused"  # (dataset id, column, newest change), message


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


st.title("Datasets")
with notices():
    if flash := st.session_state.pop(FLASH, None):
        st.success(flash, icon=":material/check_circle:")

try:
    with session_scope() as session:
        listing = browse.list_datasets(session=session)
except PortalError as exc:
    show_error(exc)
    st.stop()

if not listing:
    st.session_state.pop(PREPARED, None)
    no_datasets(actor, "No datasets yet.")
    st.stop()

st.dataframe(
    pd.DataFrame(
        [
            {
                "Name": d.name,
                "Description": d.description,
                "Rows": d.row_count,
                "Columns": d.columns,
                "Owner": d.owner_display_name,
                "Last change": when(d.last_change_at),
                "By": d.last_change_by or "—",
            }
            for d in listing
        ]
    ),
    hide_index=True,
    width="stretch",
    column_config=counts("Rows", "Columns"),
)
if actor.can("editor"):
    upload_link()

by_id = {d.id: d for d in listing}
chosen = renamed_select(
    "Open a dataset",
    {i: d.name for i, d in by_id.items()},
    index=None,
    placeholder="Choose a dataset to see its rows",
    key=OPEN,
)
if chosen is None:
    st.session_state.pop(PREPARED, None)
    st.stop()

try:
    with session_scope() as session:
        dataset = browse.open_dataset(session=session, dataset_id=chosen)
except PortalError as exc:
    show_error(exc)
    st.stop()
spec = dataset.spec
labels = browse.shown_labels(spec)  # a column labelled "Row id" is "Row id (column)"

st.subheader(md_escape(dataset.name))
if dataset.description:
    st.caption(md_escape(dataset.description))
st.caption(
    "Every change needs a reason."
    if dataset.reason_required
    else "Changes may be made without a reason."
)


def close_setting() -> None:
    st.session_state.pop(SETTING, None)


@st.dialog("Change whether changes need a reason?", on_dismiss=close_setting)
def confirm_reason_setting(dataset_id: int, name: str, required: bool) -> None:
    """Why, then the change: itself a changeset in the audit log. The actor is read again (a
    click in a dialog does not rerun the page's ``require``)."""
    st.write(
        f"From now on, changes to “{md_escape(name)}” "
        + ("need a reason." if required else "may be made without a reason.")
    )
    why = st.text_input(
        "Reason (required)",
        key=f"datasets.{dataset_id}.setting.reason",
    )

    def change() -> None:
        with session_scope() as session:
            datasets.set_reason_required(
                session=session,
                actor=current_actor("admin"),
                dataset_id=dataset_id,
                required=required,
                expected=not required,
                reason=why,
            )

    done = f"Changes to “{md_escape(name)}” now " + (
        "need a reason." if required else "may be made without a reason."
    )
    dialog_buttons("Change it", change, close_setting, done)


def dialog_buttons(
    label: str, act: Callable[[], None], close: Callable[[], None], done: str
) -> None:
    """A confirmation dialog's two buttons: ``label`` does ``act`` (a refusal, a missing reason
    say, is shown under the buttons, the dialog staying open), then closes the dialog, with
    ``done`` as the page's message; Cancel closes it. Neither waits for a reason to be typed:
    a field takes what is typed when it loses focus, and the click that does so would be lost
    on a button still disabled."""
    go, cancel = st.columns(2)
    clicked = go.button(label, type="primary", width="stretch")
    if cancel.button("Cancel", width="stretch"):
        close()
        st.rerun()
    if not clicked:
        return
    try:
        act()
    except PortalError as exc:
        show_refusal(exc)
        return
    close()
    st.session_state[FLASH] = done
    st.rerun()


def describe_form(dataset_id: int, name: str, description: str) -> None:
    """Rename the dataset or change its description, with a reason: itself a changeset.

    The fields are filled from the dataset when first drawn (and again after a save, or once
    the page is left), and what they were filled with is what the save expects to find: a
    change someone else made meanwhile is refused, not overwritten, and the fields then show
    it."""
    key = f"{DESCRIBE}.{dataset_id}"
    fields = {f"{key}.name": name, f"{key}.description": description, f"{key}.reason": ""}
    if st.session_state.pop(f"{key}.refill", False) or not fields.keys() <= st.session_state.keys():
        st.session_state.update(fields)
        st.session_state[f"{key}.seen"] = (name, description)
    with st.form(key, border=False, enter_to_submit=False):
        new_name = st.text_input("Name", key=f"{key}.name")
        new_description = st.text_area(
            "Description",
            placeholder="What the dataset holds, where it comes from, who keeps it",
            key=f"{key}.description",
        )
        why = st.text_input("Reason (required)", key=f"{key}.reason")
        saved = st.form_submit_button("Save name and description")
    if not saved:
        return
    try:
        with session_scope() as session:
            datasets.describe_dataset(
                session=session,
                actor=current_actor("admin"),
                dataset_id=dataset_id,
                name=new_name,
                description=new_description,
                expected=st.session_state[f"{key}.seen"],
                reason=why,
            )
    except datasets.ChangedMeanwhile as exc:
        show_refusal(exc)
        st.session_state[f"{key}.refill"] = True  # shown as it is now, at the next click
        return
    except PortalError as exc:
        show_write_error(exc, kept="What you typed is kept", again="save it again")
        return
    st.session_state[f"{key}.refill"] = True
    st.session_state[FLASH] = "Saved: the dataset's name and description are in the audit log."
    st.rerun()


def rules_editor(info: browse.DatasetInfo) -> None:
    """The column rules of the dataset as a grid (the Upload page's, types fixed), saved with a
    reason as a ``schema`` changeset. Rows that break a new rule are named, nothing changed."""
    resets = st.session_state.get(RULES_RESETS, 0)
    # The rules as they were when the grid was first drawn, kept while it holds edits: the save
    # expects to find them (a change someone made meanwhile is refused, not overwritten), and a
    # click that saves is never lost to a grid redrawn under new rules.
    seen_key = f"datasets.{info.id}.rules.seen"
    seen: tuple[int, DatasetSpec] | None = st.session_state.get(seen_key)
    if seen is None or not has_edits(
        st.session_state.get(f"datasets.{info.id}.rules.{seen[0]}.{resets}")
    ):
        seen = st.session_state[seen_key] = (info.spec_version, info.spec)
    version, shown = seen
    rules = pd.DataFrame(uploads.spec_rows(shown))
    key = f"datasets.{info.id}.rules.{version}.{resets}"
    # A state that does not fit the grid would break the grid itself (as on the Upload page).
    if diffs.grid_problems(
        st.session_state.get(key), rows=len(rules), columns=set(rules.columns), fixed_rows=True
    ):
        st.session_state.pop(key)
        st.session_state[RULES_RESETS] = resets + 1
        key = f"datasets.{info.id}.rules.{version}.{resets + 1}"
        st.warning(
            "The column rules grid arrived from your browser malformed (a row or column it "
            "does not have, or rows added or deleted), so it was reset to the dataset's rules. "
            "Enter your changes again; nothing has been changed.",
            icon=":material/warning:",
        )
    edited = st.data_editor(
        rules,
        key=key,
        hide_index=True,
        num_rows="fixed",
        disabled=["type", "format", "scale"],
        placeholder=EMPTY_CELL,
        alt="Rules of each column of the dataset",
        column_config=rules_config(),
    )
    # Under the grid: above it, the grid's hover toolbar covered its end.
    st.caption(
        "A stricter rule is checked against every row first; the types of the columns (with"
        " their date formats and decimal places) cannot change here. Options are separated by"
        f" “{uploads.OPTION_SEPARATOR}”."
    )
    why = st.text_input("Reason (required)", key=f"{key}.reason")
    if not st.button("Save column rules", key=f"{key}.save"):
        return
    try:
        spec = uploads.spec_from_rows(edited.to_dict("records"), base=shown)
        with st.spinner("Checking the rows against the new rules…"), session_scope() as session:
            rule_changes.change_rules(
                session=session,
                actor=current_actor("admin"),
                dataset_id=info.id,
                spec=spec,
                expected_version=version,
                reason=why,
            )
    except rule_changes.RulesBroken as exc:
        st.error(
            "\n".join([md_text(exc.INTRO), *(f"- {md_text(p)}" for p in exc.problems)]),
            icon=":material/error:",
        )
        return
    except datasets.ChangedMeanwhile as exc:
        show_refusal(exc)
        st.session_state.pop(seen_key)  # the next run draws the rules as they are now
        st.session_state[RULES_RESETS] = resets + 1
        return
    except PortalError as exc:
        show_write_error(exc, kept="Your changes to the rules are kept", again="save them again")
        return
    st.session_state.pop(seen_key)
    st.session_state[FLASH] = "Saved: the new column rules are in force and in the audit log."
    st.rerun()


def has_edits(state: object) -> bool:
    """Whether a grid's state (``st.data_editor``'s) holds any change."""
    return isinstance(state, dict) and any(
        state.get(part) for part in ("edited_rows", "added_rows", "deleted_rows")
    )


TYPE_WORDS = {
    "text": "text",
    "integer": "integer (whole numbers)",
    "decimal": "decimal",
    "boolean": "yes / no",
    "date": "date",
    "datetime": "date and time",
    "category": "category (one of a list of options)",
}


def add_column_form(info: browse.DatasetInfo) -> None:
    """A new column at the end of the table, with a reason: a ``schema`` changeset. Its other
    rules are set afterwards in the rules grid (checked against the rows first)."""
    rounds = f"datasets.{info.id}.add_column.round"
    key = f"datasets.{info.id}.add_column.{st.session_state.get(rounds, 0)}"  # afresh once added
    # The version of the columns when the form was filled in: the add expects to find it (a
    # change someone made meanwhile is refused, not lost with the click that adds).
    typed = any(st.session_state.get(f"{key}.{f}") for f in ("label", "options", "fill"))
    if not typed or f"{key}.seen" not in st.session_state:
        st.session_state[f"{key}.seen"] = info.spec_version
    rows = counted(info.row_count, "row")
    with st.form(key, border=False, enter_to_submit=False):
        label = st.text_input("Label of the new column", key=f"{key}.label")
        kind = st.selectbox(
            "Type", list(TYPE_WORDS), format_func=TYPE_WORDS.__getitem__, key=f"{key}.type"
        )
        options = st.text_input(
            "Options (a category only)",
            placeholder=f"low {uploads.OPTION_SEPARATOR} medium {uploads.OPTION_SEPARATOR} high",
            key=f"{key}.options",
        )
        # Fixed once the column is added, as its type is (they decide how values are read).
        places_col, format_col = st.columns(2)
        places = places_col.number_input(
            "Decimal places (a decimal only)",
            min_value=0,
            max_value=MAX_DECIMAL_DIGITS,
            value=None,
            step=1,
            placeholder="as many as each value has",
            key=f"{key}.scale",
        )
        date_format = format_col.selectbox(
            "Date format (a date only)",
            DATE_FORMATS,
            help="How its values are written where they are typed as text (a file, the value"
            " below); YYYY-MM-DD is always read too.",
            key=f"{key}.format",
        )
        fill = st.text_input(
            f"Value for the {rows} it has now (optional)",
            help="Every row the dataset has now gets this value; rows added later get what "
            "they are given. Leave it empty to leave the column empty in those rows.",
            key=f"{key}.fill",
        )
        required = st.checkbox("Required", key=f"{key}.required")
        why = st.text_input("Reason (required)", key=f"{key}.reason")
        added = st.form_submit_button("Add column")
    if not added:
        return
    try:
        with st.spinner("Adding the column…"), session_scope() as session:
            column_changes.add_column(
                session=session,
                actor=current_actor("admin"),
                dataset_id=info.id,
                label=label,
                column_type=kind,
                required=required,
                options=options.split(uploads.OPTION_SEPARATOR) if options.strip() else None,
                scale=int(places) if kind == "decimal" and places is not None else None,
                date_format=date_format if kind == "date" else None,
                fill=fill,
                expected_version=st.session_state[f"{key}.seen"],
                reason=why,
            )
    except datasets.ChangedMeanwhile as exc:
        show_refusal(exc)
        st.session_state[f"{key}.seen"] = info.spec_version  # looked at, the next click adds
        return
    except PortalError as exc:
        show_write_error(exc, kept="What you typed is kept", again="add it again")
        return
    st.session_state[rounds] = st.session_state.get(rounds, 0) + 1
    st.session_state[FLASH] = (
        f"Added the column “{md_escape(label.strip())}”: it is in the audit log, and on the "
        "Edit page."
    )
    st.rerun()


def remove_column_form(info: browse.DatasetInfo) -> None:
    """Choose a column to remove; the removal itself is asked for in ``confirm_removal``."""
    if len(info.spec.columns) == 1:
        st.caption("The dataset has one column only, which it needs.")
        return
    key = f"datasets.{info.id}.remove_column"  # the choice stays while others change columns
    name = renamed_select(
        "Column to remove",
        {c.name: c.label for c in info.spec.columns},
        index=None,
        placeholder="Choose a column",
        key=key,
    )
    if st.button("Remove column…", disabled=name is None, key=f"{key}.ask"):
        st.session_state[REMOVING] = (info.id, info.spec_version, name)


def close_removal() -> None:
    st.session_state.pop(REMOVING, None)


@st.dialog("Remove this column?", on_dismiss=close_removal)
def confirm_removal(info: browse.DatasetInfo, version: int, name: str) -> None:
    """What removing the column loses and what the log keeps, a reason, then the removal,
    expecting the columns as they were when it was asked for (``version``)."""
    label = next((c.label for c in info.spec.columns if c.name == name), None)
    if label is None:
        st.info("That column is no longer in the dataset: someone removed it meanwhile.")
        if st.button("Close", key=f"datasets.{info.id}.remove_column.close"):
            close_removal()
            st.rerun()
        return
    st.write(
        f"“{md_escape(label)}” leaves “{md_escape(info.name)}” with every value it holds and "
        "its rules. The audit log keeps every value it held: History shows the table as of "
        "any earlier changeset with the column. Edits to it not yet committed, on the Edit "
        "page, are dropped. This cannot be undone here."
    )
    why = st.text_input(
        "Reason (required)",
        key=f"datasets.{info.id}.remove_column.reason",
    )

    def remove() -> None:
        try:
            with st.spinner("Removing the column…"), session_scope() as session:
                column_changes.remove_column(
                    session=session,
                    actor=current_actor("admin"),
                    dataset_id=info.id,
                    name=name,
                    expected_version=version,
                    reason=why,
                )
        except datasets.ChangedMeanwhile:
            # Said in the dialog; once read, the next click removes from the columns as
            # they are now.
            st.session_state[REMOVING] = (info.id, info.spec_version, name)
            raise

    done = (
        f"Removed the column “{md_escape(label)}”: the audit log keeps its values, who removed "
        "it and why."
    )
    dialog_buttons("Remove column", remove, close_removal, done)


if actor.can("admin"):
    with st.expander("Settings", key=f"datasets.{dataset.id}.settings"):
        st.markdown("**A reason for every change**")
        label = (
            "Let changes be made without a reason"
            if dataset.reason_required
            else "Require a reason for every change"
        )
        if st.button(label, key=f"datasets.{dataset.id}.setting"):
            # Asked against the value shown now: set_reason_required refuses it if someone
            # changed it since.
            st.session_state[SETTING] = (dataset.id, not dataset.reason_required)
        st.markdown("**Name and description**")
        describe_form(dataset.id, dataset.name, dataset.description)
        st.markdown("**Column rules**")
        rules_editor(dataset)
        st.markdown("**Add a column**")
        add_column_form(dataset)
        st.markdown("**Remove a column**")
        remove_column_form(dataset)
    if (setting := st.session_state.get(SETTING)) and setting[0] == dataset.id:
        confirm_reason_setting(dataset.id, dataset.name, setting[1])
    removing = st.session_state.get(REMOVING)
    if removing and removing[0] == dataset.id:
        confirm_removal(dataset, removing[1], removing[2])


# -- filter, sort, page -----------------------------------------------------------------------

key = f"datasets.{dataset.id}"
PAGE = f"{key}.page"


def first_page() -> None:
    st.session_state[PAGE] = 1


column_col, op_col, value_col, upper_col = st.columns([2, 1, 2, 2], vertical_alignment="bottom")
with column_col:  # each of these keeps its column when an admin relabels it meanwhile
    filter_column = renamed_select(
        "Filter on",
        labels,
        index=None,
        placeholder="No filter",
        key=f"{key}.filter.column",
        on_change=first_page,
    )
filter_op: FilterOp = op_col.selectbox(
    "Match", FILTER_OPS, key=f"{key}.filter.op", on_change=first_page, help=FILTER_HELP
)
filter_value = value_col.text_input(
    "Value (or from)",
    key=f"{key}.filter.value",
    on_change=first_page,
    disabled=filter_op == "empty",
)
filter_upper = upper_col.text_input(
    "To (range only)",
    key=f"{key}.filter.upper",
    on_change=first_page,
    disabled=filter_op != "range",
)
# A column with no text to match filters nothing: no filter, for the download too.
row_filter = RowFilter.asked(filter_column, filter_op, filter_value, filter_upper)

sort_col, order_col, size_col = st.columns([2, 1, 1], vertical_alignment="bottom")
with sort_col:
    sort_column = renamed_select("Sort by", labels, key=f"{key}.sort", on_change=first_page)
descending = (
    order_col.radio(
        "Order",
        ["Ascending", "Descending"],
        horizontal=True,
        key=f"{key}.order",
        on_change=first_page,
    )
    == "Descending"
)
page_size = size_col.selectbox(
    "Rows per page",
    PAGE_SIZES,
    index=PAGE_SIZES.index(100),
    key=f"{key}.page_size",
    on_change=first_page,
)

shown_order = Sort(sort_column, descending)  # the download's order too
try:
    with session_scope() as session:
        rows_page = browse.read_page(
            session=session,
            dataset_id=dataset.id,
            page=int(st.session_state.get(PAGE, 1)),
            page_size=page_size,
            sort=shown_order,
            row_filter=row_filter,
        )
except PortalError as exc:
    show_error(exc)
    st.stop()
st.session_state[PAGE] = rows_page.page  # a page past the end (rows went away) is the last one

page_col, position_col = st.columns([1, 4], vertical_alignment="bottom")
# No maximum past an estimate: it may run low, and a page past the end shows the last one.
page_col.number_input(
    "Page",
    min_value=1,
    max_value=rows_page.pages if rows_page.total_is_exact else None,
    step=1,
    key=PAGE,
)
shown_filter = row_filter.describe(spec) if row_filter else "no filter"
if rows_page.total:
    position_col.caption(
        f"Rows {rows_page.first_row:,}–{rows_page.last_row:,} of {rows_page.total_text} "
        f"({md_escape(shown_filter)}) · page {rows_page.page:,} of {rows_page.pages_text}"
    )
elif row_filter:
    position_col.caption(
        f"No rows match ({md_escape(shown_filter)}): change or clear the filter to see rows."
    )
else:
    position_col.caption(
        "The dataset has no rows yet."
        + (
            " Add rows on the Edit page, or append a CSV file on the Upload page."
            if actor.can("editor")
            else ""
        )
    )
index_note(labels, rows_page.indexing)

st.dataframe(
    rows_page.rows,
    hide_index=True,
    width="stretch",
    placeholder=EMPTY_CELL,
    alt=f"Rows of {dataset.name}",
    column_config={
        ROW_ID: st.column_config.NumberColumn(
            labels[ROW_ID], format="%d", help="The row's permanent id (_row_id)."
        ),
        **column_config(
            [replace(c, label=labels[c.name]) for c in editor_columns(spec)],
            as_text=rows_page.as_text,
        ),
    },
)
if rows_page.as_text:
    st.caption(
        ", ".join(f"“{md_escape(labels[n])}”" for n in spec.names if n in rows_page.as_text)
        + ": shown as text, exactly as stored; a browser would show numbers this long rounded."
    )
history_links(dataset.id, [int(i) for i in rows_page.rows[ROW_ID]], key=f"{key}.history_row")


# -- column profile ---------------------------------------------------------------------------


@st.cache_data(max_entries=32, ttl=900, show_spinner="Profiling the column…")
def profile_of(dataset_id: int, column: str, changed_at: datetime | None) -> Profile:
    """A profile changes only with the dataset (``changed_at``: its newest change), so one read
    serves every rerun and every person until then (any role may read any dataset)."""
    with session_scope() as session:
        return column_profile(session=session, dataset_id=dataset_id, column=column)


def show_profile(found: Profile, filtered: bool) -> None:
    """``filtered``: the page shows the rows of a filter, which the profile does not follow."""
    if filtered:
        st.caption("Of the whole dataset: the filter above chooses the rows shown, not these.")
    if found.sampled:
        st.caption(
            f"From a sample of {found.rows:,} of about {found.total:,} rows (a table of "
            f"more than {EXACT_ROWS:,} rows is sampled): counts are the sample's."
        )
    elif not found.rows:
        st.info("There are no rows to profile.", icon=":material/bar_chart:")
        return
    else:
        st.caption(
            "The dataset's one row."
            if found.rows == 1
            else f"Every one of the {found.rows:,} rows."
        )
    share = f" ({found.empty / found.rows:.0%})" if found.rows else ""
    cols = st.columns(2)
    cols[0].metric("Empty cells", f"{found.empty:,}{share}")
    cols[1].metric("Distinct values", f"{found.distinct:,}")
    if found.top.empty:
        st.info("Every cell of this column is empty.", icon=":material/bar_chart:")
        return
    if found.distinct == found.rows - found.empty:
        st.caption("No value is there twice.")
    elif found.distinct == 1:  # one bar, one range: said in words instead
        value, rows = found.top["value"].iloc[0], int(found.top["rows"].iloc[0])
        st.caption(f"Its only value is “{md_escape(str(value))}”, in {counted(rows, 'row')}.")
        return
    else:
        st.caption(f"The {len(found.top)} most frequent values")
        st.bar_chart(found.top, x="value", y="rows", horizontal=True, sort="-rows")
    if found.spread is not None:
        first, last = found.spread["from"].iloc[0], found.spread["to"].iloc[-1]
        st.caption(
            f"How the values spread, from the smallest ({md_escape(first)}) to the largest "
            f"({md_escape(last)}): ranges of equal width, each labelled by where it starts"
        )
        st.bar_chart(found.spread, x="from", y="rows", sort=False, x_label="")
    elif found.note:
        st.caption(found.note)


with st.expander("Column profile", icon=":material/bar_chart:", key=f"{key}.profile_open"):
    profiled = renamed_select(
        "Column",
        {name: labels[name] for name in spec.names},
        index=None,
        placeholder="Choose a column: its empty cells, distinct and most frequent values",
        key=f"{key}.profile",
    )
    profile_key = (dataset.id, profiled, by_id[dataset.id].last_change_at)
    refused: tuple[tuple[object, ...], str] | None = st.session_state.get(PROFILE_REFUSED)
    if refused is not None and refused[0] == profile_key:
        # Said again, not run again: a profile stopped at its time limit would take that long
        # on every click of the page (paging, a filter) while the column stays chosen.
        show_refusal(ValidationError(refused[1]))
        if st.button("Try again", key=f"{key}.profile_again"):
            st.session_state.pop(PROFILE_REFUSED, None)
            st.rerun()
    elif profiled is not None:
        try:
            found = profile_of(dataset.id, profiled, by_id[dataset.id].last_change_at)
            show_profile(found, filtered=row_filter is not None)
        except ValidationError as exc:
            st.session_state[PROFILE_REFUSED] = (profile_key, str(exc))
            show_refusal(exc)
        except PortalError as exc:
            show_error(exc)


# -- download ---------------------------------------------------------------------------------

st.subheader("Download")
export_key = ExportKey(dataset.id, row_filter, shown_order, by_id[dataset.id].last_change_at)
before = exports.asked_before(PREPARED)
export: CsvExport | None = exports.kept(PREPARED, export_key)
if export is None and isinstance(before, ExportKey) and before.same_rows(export_key):
    st.info(
        "The dataset has changed since the file was prepared: prepare it again to download "
        "its rows as they are now.",
        icon=":material/update:",
    )
if row_filter and not rows_page.total:
    # A file of no rows, offered and recorded as a download, for nothing.
    st.caption("No rows match the filter, so there is nothing to download: change or clear it.")
    st.stop()
what = "the rows matching the filter" if row_filter else "every row"
st.caption(
    f"A CSV file of {what}, in the order chosen above, with the column names as the header. "
    "Cells a spreadsheet could run as a formula (starting with =, +, -, @, a tab or a carriage "
    "return) get a ' in front. Preparing the file records the download in the audit log."
)
export = (
    exports.prepare(
        PREPARED,
        export_key,
        lambda session: browse.export_csv(
            session=session,
            actor=actor,
            dataset_id=dataset.id,
            row_filter=row_filter,
            sort=shown_order,
        ),
        label="Prepare download",
        key=f"{key}.prepare",
        spinner="Preparing the CSV file…",
        icon=":material/file_export:",
    )
    or export
)
if export is not None:
    exports.offer(export, noun="row", key=f"{key}.download")
