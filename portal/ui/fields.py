"""Fields whose browser copy must follow the value the page gives them on the server.

The browser keeps what a field showed: dropping the field's state on the server empties only
the server's copy, and the next click sends the old value back. A value set in the state before
the field is drawn is sent to the browser too; these two helpers set one when it is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

RUNS = "portal.runs"
"""How many runs this session has had: counted by app.py, at the start of each."""


def count_run() -> None:
    """Count this run (app.py, first thing)."""
    st.session_state[RUNS] = st.session_state.get(RUNS, 0) + 1


def show_kept(key: str) -> None:
    """Before drawing the widget ``key``: if the last run did not draw it and its state holds a
    value, give that value again, so that the browser shows it.

    A widget drawn again after runs without it starts from its default in the browser, even
    while its state (set by the page, so kept) still holds a value: the field showed empty, and
    the next click sent the empty value back. Only then: giving a value in every run would
    overwrite what is being typed whenever a run comes from something else."""
    drawn_in = f"{key}.drawn_in"
    runs = st.session_state.get(RUNS, 0)
    if key in st.session_state and st.session_state.get(drawn_in) != runs - 1:
        st.session_state[key] = st.session_state[key]
    st.session_state[drawn_in] = runs


def start_afresh(flag: str, fields: Mapping[str, object]) -> None:
    """Before drawing a form's fields: if ``flag`` is set (by the click that used what they
    held), give each field in ``fields`` its empty value, and clear the flag.

    Set, not removed (a removed key left the browser showing what was typed, and sending it
    again); and set before the fields are drawn, since a widget's value cannot be set once it
    is drawn in the run."""
    if st.session_state.pop(flag, False):
        for key, empty in fields.items():
            st.session_state[key] = empty
