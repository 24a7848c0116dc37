"""A select box whose options are shown by names that can change while it is on screen: a
dataset renamed, a column relabelled.

The browser sends back the *label* of the chosen option. After a rename, the next click anywhere
on the page came back with the old name, which the box no longer has, so Streamlit dropped the
choice: a dataset closed, the click itself was lost, and unsaved edits went with the page that
held them. ``renamed_select`` remembers the labels it last drew. Before the box is drawn, its
value is read as the box last drawn understands it (by its old labels); if that option's label
has changed since, the value is set again explicitly, which the box then shows under its new
label.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T", bound=Hashable)


def renamed_select(label: str, options: Mapping[T, str], *, key: str, **kwargs: Any) -> T | None:
    """``st.selectbox(label, list(options), format_func=options.__getitem__, key=key, ...)``,
    whose choice survives a change of its label."""
    drawn = f"{key}.labels"
    before: Mapping[T, str] = st.session_state.get(drawn, {})
    chosen: Any = st.session_state.get(key)  # read by the box as last drawn: by its old labels
    if chosen in options and before.get(chosen, options[chosen]) != options[chosen]:
        st.session_state[key] = chosen
    st.session_state[drawn] = dict(options)
    value: T | None = st.selectbox(
        label, list(options), format_func=options.__getitem__, key=key, **kwargs
    )
    return value
