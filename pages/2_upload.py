"""Upload (editors and admins): a CSV file checked end to end — type, encoding, delimiter, shape,
every value against the spec — then stored as a new dataset, or appended to or replacing an
existing one. A file with any invalid cell is not stored; its report can be downloaded.

The database away: reading the targets shows "The database is unavailable — retrying…" and the
page comes back by itself (``portal.ui.db_retry``) with the file still chosen; storing that loses
its connection was rolled back whole, and the page says so and keeps the file for another try.
"""

import contextlib
import dataclasses
import hashlib
import json
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from portal import diffs, uploads
from portal.csv_import import (
    DELIMITER_NAMES,
    EncodingNotConfirmed,
    ImportRefused,
    ParsedCSV,
    annotated_original_csv,
    encoding_label,
    error_report_csv,
    preview,
)
from portal.csv_safe import csv_bytes
from portal.errors import PortalError
from portal.spec import DatasetSpec, ValidationResult, editor_columns
from portal.trail_views import when, who
from portal.ui import current_actor, md_escape, md_text, notices, require
from portal.ui.column_config import EMPTY_CELL, column_config, rules_config
from portal.ui.db_retry import show_error, show_refusal, show_write_error
from portal.ui.navigation import EDIT, HISTORY
from portal.ui.picker import renamed_select
from portal.wording import agreeing, counted

actor = require("editor")

UPLOADER = "upload.uploader"  # a counter in the key resets the uploader after an import
CONFIRMED_ENCODING = "upload.encoding"
FLASH = "upload.flash"
STORED = "upload.stored"  # (dataset id, name) of the rows just stored, linked under FLASH
CONFIRM_REPLACE = "upload.confirm_replace"  # (dataset id, file digest): its dialog is open
SHAPE_PROBLEMS_LISTED = 10  # up to this many problems of a file's shape are listed as text
REPLACE_SHOWN = "upload.replace_shown"  # (dataset id, file digest, rows its dialog said)
DECIMAL_COMMA = "upload.decimal_comma"  # the reading option's tick box
SPEC_RESETS = "upload.spec_resets"  # a counter in the key draws the rules grid afresh
PREVIEW_ROWS = 50
ERRORS_SHOWN = 1_000

st.title("Upload a CSV file")
with notices():
    if FLASH in st.session_state:
        st.success(st.session_state.pop(FLASH), icon=":material/check_circle:")
    if STORED in st.session_state:
        stored_id, stored_name = st.session_state.pop(STORED)
        # A page run on its own, not through app.py's navigation, cannot link to other pages.
        with contextlib.suppress(StreamlitAPIException):
            st.page_link(
                EDIT.path,
                label=f"Open “{md_escape(stored_name)}” on the Edit page",
                icon=EDIT.icon,
                query_params={"dataset": str(stored_id)},
            )
            st.page_link(
                HISTORY.path,
                label=f"History of “{md_escape(stored_name)}”",
                icon=HISTORY.icon,
                query_params={"dataset": str(stored_id)},
            )


# -- where the rows go ------------------------------------------------------------------------

try:
    choices = dict(uploads.dataset_choices())
except PortalError as exc:
    show_error(exc)
    st.stop()
into_new = (
    st.radio(
        "Load the file into",
        ["A new dataset", "An existing dataset"],
        horizontal=True,
        disabled=not choices,
        help=None if choices else "There are no datasets yet: the first upload creates one.",
    )
    == "A new dataset"
)
target: uploads.NewDataset | uploads.ExistingDataset
name_refused: str | None = None  # what is wrong with a new dataset's name
if into_new:
    target = uploads.NewDataset(name="")
else:
    # Keyed: an unkeyed picker is another widget once its list changes (a dataset created by
    # anyone), and fell back to the first dataset, which Append then loaded into.
    picked = renamed_select("Dataset", choices, key="upload.dataset")
    replace_rows = (
        st.radio(
            "How",
            ["Add the rows (append)", "Replace all its rows"],
            horizontal=True,
            help="Replacing deletes every current row (recorded in the audit log) first.",
        )
        == "Replace all its rows"
    )
    target = uploads.ExistingDataset(int(picked), "replace" if replace_rows else "append")


# -- the file ---------------------------------------------------------------------------------

upload_round = st.session_state.setdefault(UPLOADER, 0)
file = st.file_uploader(
    "CSV file",
    key=f"{UPLOADER}.{upload_round}",
    help="Comma, semicolon or tab separated, UTF-8 preferred. Nothing is stored until every "
    "check has passed and you confirm.",
)
if file is None:
    st.info(
        "Choose a CSV file. It is checked before anything is stored: its real file type, its "
        "encoding and delimiter, its shape, and every value against the dataset's rules.\n\n"
        f"A file can be at most {st.get_option('server.maxUploadSize')} MB. One shown above with "
        "“status code 413” was refused as too large by the server in front of the portal: "
        "split it, or ask an administrator to raise the limit (PORTAL_MAX_UPLOAD_MB).",
        icon=":material/upload_file:",
    )
    st.stop()

data = file.getvalue()
digest = hashlib.sha256(data).hexdigest()

with st.expander("Reading options"):
    delimiter_names = {"": "Detect", **{d: n.capitalize() for d, n in DELIMITER_NAMES.items()}}
    delimiter = st.selectbox(
        "Delimiter", list(delimiter_names), format_func=lambda d: delimiter_names[d]
    )
    decimal_comma = st.checkbox(
        "Numbers use a decimal comma (1.234,56)",
        help="Only with semicolon- or tab-separated files, where the comma cannot separate fields.",
        key=DECIMAL_COMMA,
    )


def read_decimal_commas() -> None:
    st.session_state[DECIMAL_COMMA] = True


@st.cache_data(max_entries=4, show_spinner="Reading the file…")
def read(digest: str, _data: bytes, encoding: str | None, delimiter: str | None) -> ParsedCSV:
    return uploads.read_file(_data, encoding=encoding, delimiter=delimiter)


@st.cache_data(max_entries=4, show_spinner="Proposing the columns' rules…")
def propose(
    key: tuple[object, ...], _parsed: ParsedCSV, decimal_comma: bool
) -> tuple[DatasetSpec, list[str]]:
    return uploads.propose_spec(_parsed, decimal_comma=decimal_comma)


@st.cache_data(max_entries=4, show_spinner="Checking every value…")
def check(
    key: tuple[object, ...],
    spec_json: str,
    _parsed: ParsedCSV,
    _spec: DatasetSpec,
    decimal_comma: bool,
) -> ValidationResult:
    return uploads.check(_parsed, _spec, decimal_comma=decimal_comma)


@st.cache_data(max_entries=4, ttl=30, show_spinner="Looking for values the dataset has already…")
def clashes(
    key: tuple[object, ...],
    spec_json: str,
    dataset_id: int,
    _result: ValidationResult,
    _parsed: ParsedCSV,
    _spec: DatasetSpec,
) -> ValidationResult:
    # Briefly cached: the dataset changes under it (the table's constraint has the last word).
    return uploads.with_dataset_clashes(_result, _parsed, _spec, dataset_id)


# Inference and the full check take seconds on a large file: done once per file, reading
# options and spec, not again on every rerun (each keystroke in the name or reason fields).
encoding = st.session_state.get(CONFIRMED_ENCODING, {}).get(digest)
file_key = (digest, encoding, delimiter or None)
try:
    parsed = read(digest, data, encoding, delimiter or None)
except EncodingNotConfirmed as exc:
    st.warning(md_text(str(exc)), icon=":material/translate:")
    options = [exc.guess.name, *exc.guess.alternatives]
    chosen = st.selectbox("Encoding", options, format_func=encoding_label)
    st.caption("The first lines, read this way:")
    st.code(preview(data, chosen) or "(empty)", language=None)
    if st.button(f"Convert from {encoding_label(chosen)}", type="primary"):
        st.session_state.setdefault(CONFIRMED_ENCODING, {})[digest] = chosen
        st.rerun()
    st.stop()
except ImportRefused as exc:
    st.error(md_text(str(exc).split("\n", 1)[0]), icon=":material/block:")
    if exc.problems:
        if len(exc.problems) <= SHAPE_PROBLEMS_LISTED:  # whole sentences: read in full
            st.markdown("\n".join(f"- {md_text(p)}" for p in exc.problems))
        else:
            st.dataframe(pd.DataFrame({"problem": exc.problems}), hide_index=True)
        st.download_button(
            "Download the problems (CSV)",
            csv_bytes(["problem"], ([p] for p in exc.problems)),
            file_name=f"{file.name.rsplit('.', 1)[0]}-problems.csv",
            mime="text/csv",
            on_click="ignore",
            icon=":material/download:",
        )
    st.stop()
except PortalError as exc:
    show_refusal(exc, icon=":material/block:")
    st.stop()

st.caption(
    f"{md_escape(file.name)}: {counted(parsed.row_count, 'row')}, "
    f"{counted(len(parsed.header), 'column')} · "
    f"{encoding_label(parsed.encoding)} · {parsed.dialect.name}-separated · {parsed.mime}"
)
if parsed.left_out:
    many = len(parsed.left_out)
    st.info(
        f"{agreeing(many, 'Column', 'Columns')} "
        f"{', '.join(map(str, parsed.left_out[:-1]))}{' and ' if many > 1 else ''}"
        f"{parsed.left_out[-1]} of the file {agreeing(many, 'has', 'have')} no name and no"
        f" value (as spreadsheets export empty columns), so {agreeing(many, 'it is', 'they are')}"
        " left out.",
        icon=":material/info:",
    )
if parsed.empty_rows:
    lines = ", ".join(map(str, parsed.first_empty_lines))
    more = ", …" if parsed.empty_rows > len(parsed.first_empty_lines) else ""
    st.info(
        f"{counted(parsed.empty_rows, 'row')} of the file "
        f"{agreeing(parsed.empty_rows, 'has', 'have')} no value in any column ("
        f"{agreeing(parsed.empty_rows, 'line', 'lines')} {lines}{more}: as spreadsheets export"
        f" blank rows), so {agreeing(parsed.empty_rows, 'it is', 'they are')} left out, as blank"
        " lines are.",
        icon=":material/info:",
    )
if decimal_comma and parsed.dialect.delimiter == ",":
    # As the option's help says: the file's commas separate its fields, and "1,200" quoted in
    # it is a thousands separator as such files write them; read as 1.2 it stored 1.200.
    st.warning(
        "This file is comma-separated, so the decimal-comma option does not apply to it and is "
        "not used: its commas separate fields, and a comma inside a quoted number is a "
        "thousands separator. For decimal commas, save the file separated by semicolons.",
        icon=":material/warning:",
    )
    decimal_comma = False
if encoding is not None and st.button("Choose another encoding", icon=":material/translate:"):
    # The file stays chosen and its digest the same: without this, the encoding confirmed for
    # it could not be changed in this session.
    st.session_state[CONFIRMED_ENCODING].pop(digest, None)
    st.rerun()


# -- the rules --------------------------------------------------------------------------------


def spec_grid_key() -> str:
    # Per reading of the file: another encoding or delimiter gives other columns, whose grid
    # starts from their proposal (the old grid's edits would not fit it).
    reading = hashlib.sha256(repr(file_key).encode()).hexdigest()[:16]
    return f"upload.spec.{reading}.{decimal_comma}.{st.session_state.get(SPEC_RESETS, 0)}"


def edit_spec(parsed: ParsedCSV) -> DatasetSpec:
    proposed, notes = propose(file_key, parsed, decimal_comma)
    st.subheader("Columns")
    st.caption(
        "Check the type and rules of each column; the database will enforce them. Options are "
        f"separated by “{uploads.OPTION_SEPARATOR}”; a date format is used by date columns only,"
        " decimal places by decimal columns only."
    )
    if notes:  # one box, a line per column: a box each buried the grid under them
        st.info("\n".join(f"- {md_text(note)}" for note in notes), icon=":material/lightbulb:")
    rules = pd.DataFrame(uploads.spec_rows(proposed))
    key = spec_grid_key()
    # A state that does not fit the grid (the browser's state arrives unchecked) would break
    # the grid itself: drop it and draw the grid afresh, under a new key so the browser drops
    # it too.
    if diffs.grid_problems(
        st.session_state.get(key), rows=len(rules), columns=set(rules.columns), fixed_rows=True
    ):
        st.session_state.pop(key)
        st.session_state[SPEC_RESETS] = st.session_state.get(SPEC_RESETS, 0) + 1
        key = spec_grid_key()
        st.warning(
            "The column rules grid arrived from your browser malformed (a row or column it "
            "does not have, or rows added or deleted), so it was reset to the proposed rules. "
            "Enter your changes again; nothing has been stored.",
            icon=":material/warning:",
        )
    edited = st.data_editor(
        rules,
        key=key,
        hide_index=True,
        num_rows="fixed",
        placeholder=EMPTY_CELL,
        alt="Rules of each column of the file",
        column_config=rules_config(),
    )
    try:
        return uploads.spec_from_rows(edited.to_dict("records"), base=proposed)
    except PortalError as exc:
        show_refusal(exc)
        st.stop()


if isinstance(target, uploads.NewDataset):
    spec = edit_spec(parsed)
else:
    try:
        spec = uploads.dataset_spec(target.dataset_id)
    except PortalError as exc:
        show_error(exc)
        st.stop()

try:
    spec_json = json.dumps(spec.to_json(), sort_keys=True, default=str)
    result = check(file_key, spec_json, parsed, spec, decimal_comma)
    if isinstance(target, uploads.ExistingDataset) and target.mode == "append":
        result = clashes(
            (*file_key, decimal_comma), spec_json, target.dataset_id, result, parsed, spec
        )
    copies = (
        uploads.earlier_copies(target.dataset_id, digest)
        if isinstance(target, uploads.ExistingDataset) and target.mode == "append"
        else []
    )
except PortalError as exc:
    show_refusal(exc)
    st.stop()


# -- the verdict ------------------------------------------------------------------------------

with st.container():  # drawn every run: a warning that comes and goes moves nothing below it
    if copies:  # the very same bytes, appended again, would add the same rows a second time
        assert isinstance(target, uploads.ExistingDataset)
        said = "; ".join(
            f"changeset #{c.seq} by {who(c.actor_display_name, c.actor_username)}, "
            f"{when(c.committed_at)}, {counted(c.rows, 'row')}"
            for c in copies
        )
        st.warning(
            md_text(
                f"This very file was uploaded into “{choices[target.dataset_id]}” before ({said}"
                "): "
                + (
                    "appending it adds its rows again, a second time. Go on only if that is "
                    "what you mean."
                    if result.ok
                    else "its rows are there already, so values that must be unique are found"
                    " twice below. Choose the file you mean to add."
                )
            ),
            icon=":material/content_copy:",
        )


def suggest_decimal_commas() -> None:
    """A dataset made from a file with decimal commas gets the next such file: "3,25" is no
    number until the option, folded away under Reading options, is ticked again. When the file
    read so has fewer cells that are no number, say so, with a button that ticks it."""
    numeric = {c.label for c in spec.columns if c.type in ("integer", "decimal")}

    def no_numbers(checked: ValidationResult) -> int:
        return sum(e.rule == "type" and e.column in numeric for e in checked.errors)

    as_read = no_numbers(result)
    if as_read and no_numbers(check(file_key, spec_json, parsed, spec, True)) < as_read:
        st.warning(
            "This file's numbers look written with a decimal comma (1.234,56), which the check"
            " below did not read as numbers: read them so (the option “Numbers use a decimal"
            " comma” under Reading options).",
            icon=":material/lightbulb:",
        )
        st.button(
            "Read numbers with a decimal comma",
            on_click=read_decimal_commas,
            key="upload.read_decimal_commas",
        )


with st.container():  # drawn every run: what comes and goes in it moves nothing below
    if not result.ok and not decimal_comma and parsed.dialect.delimiter != ",":
        suggest_decimal_commas()

if not result.ok:
    n = result.error_count
    st.error(
        f"{counted(n, 'cell')} {agreeing(n, 'breaks', 'break')} the rules, so nothing has been "
        f"stored. Fix {agreeing(n, 'it', 'them')} in the file (the report below says where and "
        "why) and upload it again"
        + (
            ", or change the column's rules above if they are not what the data should meet."
            if isinstance(target, uploads.NewDataset)
            else "."
        ),
        icon=":material/error:",
    )
    by_rule = uploads.errors_by_rule(result)
    if len(by_rule) > 1:  # one rule alone is one bar: the list below names it on every line
        chart, counts = st.columns([2, 1])
        chart.bar_chart(pd.Series(by_rule, name="cells"), horizontal=True)
        counts.dataframe(
            pd.DataFrame({"rule": list(by_rule), "cells": list(by_rule.values())}),
            hide_index=True,
        )
    rows: list[dict[str, Any]] = [
        {"line": e.row, "column": e.column, "value": e.value, "rule": e.rule, "problem": e.message}
        for e in result.errors[:ERRORS_SHOWN]
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    if result.error_count > len(result.errors):
        # The check lists the first errors only (by line): the counts by rule above are theirs.
        st.caption(
            f"The first {min(ERRORS_SHOWN, len(result.errors)):,} are shown; the downloads list "
            f"the first {len(result.errors):,} of {result.error_count:,} (the counts by rule "
            "are theirs). Fix those and upload the file again to see the rest."
        )
    elif len(result.errors) > ERRORS_SHOWN:
        st.caption(f"The first {ERRORS_SHOWN:,} are shown; the download lists them all.")
    left, right = st.columns(2)
    left.download_button(
        "Download the error report (CSV)",
        error_report_csv(result.errors, error_count=result.error_count),
        file_name=f"{file.name.rsplit('.', 1)[0]}-errors.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
    )
    right.download_button(
        "Download the file with an errors column",
        annotated_original_csv(parsed, result.errors, error_count=result.error_count),
        file_name=f"{file.name.rsplit('.', 1)[0]}-annotated.csv",
        mime="text/csv",
        on_click="ignore",
        icon=":material/download:",
    )
    st.stop()

st.success(
    "The row is valid." if parsed.row_count == 1 else f"All {parsed.row_count:,} rows are valid.",
    icon=":material/task_alt:",
)
shown, as_text = uploads.preview_rows(result, spec, PREVIEW_ROWS)
labels = {c.name: c.label for c in spec.columns}
st.dataframe(
    shown,
    column_config=column_config(editor_columns(spec), as_text=as_text),
    hide_index=True,
    placeholder=EMPTY_CELL,
    alt="The first rows of the file",
)
if as_text:
    st.caption(
        f"{', '.join(f'“{md_escape(labels[n])}”' for n in as_text)}: shown as text, as they "
        "will be stored; a browser would round numbers this long, and times to the second."
    )
if parsed.row_count > PREVIEW_ROWS:
    st.caption(f"The first {PREVIEW_ROWS} of {parsed.row_count:,} rows.")


# -- storing it -------------------------------------------------------------------------------

if isinstance(target, uploads.NewDataset):
    name = st.text_input("Dataset name", value=file.name.rsplit(".", 1)[0][:120])
    try:
        name_refused = uploads.name_problem(name)  # said now, not after "Creating the table"
    except PortalError as exc:
        show_error(exc)
        st.stop()
    if name_refused:
        st.error(md_text(name_refused), icon=":material/error:")
    description = st.text_input("Description (optional)")
    needs_reasons = st.checkbox(
        "Every change after this upload needs a reason",
        value=True,
        help="Edits and uploads into it then ask why (reverts always do), and the audit log "
        "keeps it. The upload that creates it needs none (the reason below is kept if given). "
        "An admin can change this later on the Datasets page.",
    )
    target = uploads.NewDataset(name=name, description=description, reason_required=needs_reasons)
    action = "Create the dataset"
elif target.mode == "replace":
    action = f"Replace the rows of {choices[target.dataset_id]}"
else:
    action = f"Append to {choices[target.dataset_id]}"
try:
    needs_reason = isinstance(target, uploads.ExistingDataset) and uploads.reason_required(
        target.dataset_id
    )
except PortalError as exc:
    show_error(exc)
    st.stop()
reason = st.text_input(
    "Reason (required; kept in the audit log)"
    if needs_reason
    else "Reason (kept in the audit log)",
    placeholder="e.g. monthly export from X",
)


def store(chosen_target: uploads.NewDataset | uploads.ExistingDataset) -> None:
    try:
        acting = current_actor("editor")  # re-read: a dialog click does not rerun the guard
        with st.status("Storing the file and its rows…", expanded=True) as status:
            try:
                outcome = uploads.import_file(
                    actor=acting,
                    filename=file.name,
                    data=data,
                    parsed=parsed,
                    spec=spec,
                    result=result,
                    target=chosen_target,
                    reason=reason,
                    progress=status.write,
                )
            except PortalError:
                # Not left saying it is storing, over the message that nothing was stored.
                status.update(label="Nothing was stored", state="error", expanded=False)
                raise
            # Kept before the next call into Streamlit: a rerun asked while storing (a click,
            # a keystroke) stops this run there, and the next run must know the rows are stored
            # rather than offer the same file again.
            rows, name = counted(outcome.rows, "row"), md_escape(outcome.dataset_name)
            done = (
                f"The rows of “{name}” were replaced by {rows}"
                if outcome.mode == "replace"
                else f"{rows} loaded into “{name}”"
            )
            st.session_state[FLASH] = f"{done} " + (
                f"(changeset #{outcome.seq})."
                if outcome.seq is not None
                else f"(changeset id {outcome.changeset_id}; its number could not be read "
                "just now: it is listed in the dataset's history once the database "
                "answers). Do not store the file again."
            )
            st.session_state[STORED] = (outcome.dataset_id, outcome.dataset_name)
            if into_new:  # the next file may well go into it: chosen for "An existing dataset"
                st.session_state["upload.dataset"] = outcome.dataset_id
            st.session_state[UPLOADER] = upload_round + 1
            st.session_state.pop(CONFIRM_REPLACE, None)
            st.session_state.pop(REPLACE_SHOWN, None)
            status.update(label="Stored", state="complete")
    except PortalError as exc:
        show_write_error(exc, kept="The file is still here", again="store it again")
        return
    if outcome.seq is None:
        # The database went away right after the COMMIT: a rerun would show only that it is
        # away, so say here that the rows are in (and again over the page once it answers).
        st.success(st.session_state[FLASH], icon=":material/check_circle:")
        return
    st.rerun()


def close_replace() -> None:
    st.session_state.pop(CONFIRM_REPLACE, None)
    st.session_state.pop(REPLACE_SHOWN, None)


@st.dialog("Replace every row?", on_dismiss=close_replace)
def confirm_replace(chosen_target: uploads.ExistingDataset) -> None:
    asked = (chosen_target.dataset_id, digest)
    shown = st.session_state.get(REPLACE_SHOWN)
    try:
        current = uploads.row_count(chosen_target.dataset_id)
    except PortalError as exc:
        show_refusal(exc)
        return
    # A click on Replace confirms the count the run before showed, not the one read now: rows
    # added meanwhile must not be deleted on a confirmation that did not name them.
    confirmed = shown[2] if shown is not None and shown[:2] == asked else current
    st.session_state[REPLACE_SHOWN] = (*asked, current)
    st.write(
        f"“{md_escape(choices[chosen_target.dataset_id])}” has {counted(current, 'row')} "
        "now. All of them will be deleted and replaced by "
        f"the {counted(parsed.row_count, 'row')} of "
        f"{md_escape(file.name)}. The deleted rows stay in the "
        "audit log and can be restored from the dataset's history."
    )
    go, cancel = st.columns(2)
    if go.button("Replace", type="primary"):
        store(dataclasses.replace(chosen_target, expected_rows=confirmed))
    if cancel.button("Cancel"):
        close_replace()
        st.rerun()


replacing = (
    (target.dataset_id, digest)
    if isinstance(target, uploads.ExistingDataset) and target.mode == "replace"
    else None
)
if needs_reason and not reason.strip():
    st.caption("This dataset needs a reason for every change: say why you are uploading.")
# Not disabled until a reason is typed: a field takes what is typed when it loses focus, and
# the click that makes it lose focus would then hit a button still disabled, and be lost.
if st.button(
    action,
    type="primary",
    icon=":material/save:",
    disabled=isinstance(target, uploads.NewDataset) and name_refused is not None,
):
    if needs_reason and not reason.strip():
        st.error(
            "Say why you are uploading, in the reason field above: this dataset needs a reason "
            "for every change. Nothing was stored.",
            icon=":material/error:",
        )
    elif replacing is not None:
        st.session_state[CONFIRM_REPLACE] = replacing
    else:
        store(target)
# Only for the replace it was asked for: once another dataset, file or "append" is chosen, the
# question is dropped, and does not open again by itself.
if st.session_state.get(CONFIRM_REPLACE) is not None:
    if (
        isinstance(target, uploads.ExistingDataset)
        and st.session_state[CONFIRM_REPLACE] == replacing
    ):
        confirm_replace(target)
    else:
        close_replace()
