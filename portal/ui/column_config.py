"""``st.column_config`` objects from the spec's Streamlit-free ``EditorColumn`` descriptions.

These settings only shape the grid in the browser; the server re-checks every value
(``portal.spec.validate_value``) because a forged widget state arrives intact. Required,
bounds, maximum lengths and patterns are left out on purpose (``portal.spec.EditorColumn``):
the browser would alter, drop or hold back an offending value silently, where the server says
what is wrong.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

import streamlit as st

from portal.spec import COLUMN_TYPES, DATE_FORMATS, MAX_DECIMAL_DIGITS, EditorColumn

EMPTY_CELL = ""
"""The grids' ``placeholder``: a missing value shows as an empty cell, as in a spreadsheet,
rather than as the grid's default "None" (words a user might take for a value)."""


def column_config(columns: list[EditorColumn], *, as_text: Collection[str] = ()) -> dict[str, Any]:
    """``{physical name: st.column_config.*}`` for ``st.data_editor`` / ``st.dataframe``.

    The number and date-time columns named in ``as_text`` are text columns (their values given
    as text): a browser's grid holds numbers as 64-bit floats, and would show and take longer
    ones rounded; it shows date-times to the second.
    """
    return {
        c.name: _as_text(c) if c.name in as_text and c.kind in _AS_TEXT_HELP else _config(c)
        for c in columns
    }


def counts(*labels: str) -> dict[str, Any]:
    """Column configs for a summary table's count columns (``labels``): shown with the
    browser's thousands separators (2,500 rows, not 2500), as the pages' metrics are."""
    return {label: st.column_config.NumberColumn(label, format="localized") for label in labels}


# The grid sizes a column to its first ten rows or so, and leaves out a value twice as wide as
# the others: a longer reason further down was cut off ("Correct quantity and price aft"). The
# trail's columns whose values vary most get widths of their own (on the Audit and History
# pages): a reason or an event's details about 60 characters ("large"), a kind or a target its
# longest label. Dataset and Who keep the grid's sizing: their values are short and alike, and
# wider they would push the reason out of view on a laptop's screen.
KIND_WIDTH: Final = 120  # px: "⚠ OUT OF BAND"
EVENT_KIND_WIDTH: Final = 150  # "User account changed"
TARGET_WIDTH: Final = 250  # "Check of every dataset against the log"


def text_widths(**widths: Any) -> dict[str, Any]:
    """Column configs giving a table's text columns a width of their own (by label)."""
    return {label: st.column_config.TextColumn(label, width=w) for label, w in widths.items()}


def rules_config() -> dict[str, Any]:
    """Column configs of a grid of column rules (``portal.uploads.spec_rows``): the Upload
    page's for a new dataset, the Datasets page's for an existing one."""
    return {
        "label": st.column_config.TextColumn("Label", required=True),
        "type": st.column_config.SelectboxColumn("Type", options=COLUMN_TYPES, required=True),
        "format": st.column_config.SelectboxColumn(
            "Date format",
            options=DATE_FORMATS,
            help="Date columns: how the file writes its dates (YYYY-MM-DD is always read too).",
        ),
        "scale": st.column_config.NumberColumn(
            "Decimal places",
            min_value=0,
            max_value=MAX_DECIMAL_DIGITS,
            step=1,
            help="Decimal columns: the most digits after the point a value may have; stored"
            " with exactly that many. Empty: as many as each value has.",
        ),
        "required": st.column_config.CheckboxColumn("Required"),
        "unique": st.column_config.CheckboxColumn("Unique"),
        "min": st.column_config.TextColumn("Min"),
        "max": st.column_config.TextColumn("Max"),
        "max_length": st.column_config.NumberColumn("Max length", min_value=1, step=1),
        "regex": st.column_config.TextColumn("Pattern (regex)"),
        "options": st.column_config.TextColumn("Options"),
    }


_AS_TEXT_HELP = {
    "number": " Typed as text and read as a file's cell is: exactly what you type or paste.",
    "datetime": " Shown as text, to the microsecond: a browser would show times to the second.",
}


def _as_text(c: EditorColumn) -> Any:
    return st.column_config.TextColumn(
        label=c.label,
        help=c.help + _AS_TEXT_HELP[c.kind],
        disabled=c.disabled,
        alignment="right" if c.kind == "number" else None,  # numbers line up as in a sheet
    )


def _config(c: EditorColumn) -> Any:
    common: dict[str, Any] = {
        "label": c.label,
        "help": c.help,
        "disabled": c.disabled,
    }
    if c.kind == "number":
        return st.column_config.NumberColumn(**common, step=c.step, format=c.format)
    if c.kind == "checkbox":
        return st.column_config.CheckboxColumn(**common)
    if c.kind == "date":
        return st.column_config.DateColumn(**common, format=c.format or "YYYY-MM-DD")
    if c.kind == "datetime":
        return st.column_config.DatetimeColumn(**common, format=c.format, timezone=c.timezone)
    if c.kind == "selectbox":
        return st.column_config.SelectboxColumn(**common, options=list(c.options or ()))
    return st.column_config.TextColumn(**common)
