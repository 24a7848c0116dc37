"""The note a page shows while a large dataset's column index is still being built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import streamlit as st

from portal.ui.markdown import md_escape


def index_note(labels: Mapping[str, str], building: Sequence[str]) -> None:
    """Say which columns (physical names, shown by ``labels``) are being indexed, if any: the
    read was slower than the next ones will be (``portal.indexes``)."""
    if not building:
        return
    st.caption(
        "This is a large table: an index on "
        + ", ".join(f"“{md_escape(labels[n])}”" for n in building)
        + " is being built in the background, so sorting and filtering by it will be faster "
        "in a minute or two.",
        help="Large datasets get an index on a column the first time it is sorted or filtered.",
    )
