"""Fields whose value the page keeps while they are not drawn."""

from __future__ import annotations

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
