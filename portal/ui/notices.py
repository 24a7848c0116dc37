"""The place above a page's content for what a run shows only sometimes: the outcome a click
left for the next run ("Committed as changeset #12"), a warning about the last try."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st


@contextmanager
def notices() -> Iterator[None]:
    """A container drawn in every run, to draw the run's notices in (or nothing).

    The elements after it keep their places whether or not it holds anything. A run that drew
    them one place up (or down) left the browser showing the last run's copies beside the new
    ones until each was redrawn: two headings, or two grids, for a moment after each click.
    """
    with st.container():
        yield
