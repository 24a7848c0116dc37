"""What a page shows while PostgreSQL is away, and how it comes back by itself.

``wait_for_database(exc)`` replaces the rest of the run with "The database is unavailable —
retrying…" and a small fragment that asks the database every ``RETRY_SECONDS``
(``st.fragment(run_every=…)``: the browser's timer reruns only the fragment, so no server thread
sleeps); once ``SELECT 1`` answers it reruns the whole page. The run ends with ``st.stop()``, which
Streamlit treats as a premature stop: widget state of widgets this run did not draw (the Edit
page's grid, a reason typed) is kept, not cleaned up, so nothing typed is lost while waiting.

``show_error(exc)`` is what a page's ``except PortalError`` calls: the wait above for
``DatabaseUnavailable``, else ``st.error``. ``outages()`` counts the waits of this session, so a
page that must redraw a widget after one (the Edit page's grid) can tell.

The retry is for reading: a commit is never retried by itself. A click's trigger is spent by the
run that failed, so the person commits again, and sees why (``ConnectionLost``'s message).
"""

from __future__ import annotations

import time
from typing import Final, NoReturn

import streamlit as st

from portal.db import database_answers
from portal.errors import CommitOutcomeUnknown, DatabaseUnavailable, PortalError
from portal.ui.markdown import md_text

RETRY_SECONDS: Final = 3.0
NOTICE: Final = "The database is unavailable — retrying…"
_OUTAGES: Final = "portal.db_retry.outages"
_NEXT_CHECK: Final = "portal.db_retry.next_check"


def outages() -> int:
    """How many runs of this session stopped because the database was unavailable."""
    count: int = st.session_state.get(_OUTAGES, 0)
    return count


def wait_for_database(exc: DatabaseUnavailable) -> NoReturn:
    """Show that the database is unavailable, check again every ``RETRY_SECONDS`` and rerun the
    page when it answers; stop this run."""
    st.session_state[_OUTAGES] = outages() + 1
    st.session_state[_NEXT_CHECK] = time.monotonic() + RETRY_SECONDS
    st.warning(NOTICE, icon=":material/cloud_off:")
    st.caption(
        f"{exc} The page comes back by itself when the database answers; anything you typed "
        "or edited on it is kept."
    )
    _check_again()
    st.stop()


@st.fragment(run_every=RETRY_SECONDS)
def _check_again() -> None:
    # The first call is part of the failed run: only the timer's reruns ask the database, so a
    # database that fails the page but answers SELECT 1 cannot make the page rerun in a loop.
    if time.monotonic() >= st.session_state.get(_NEXT_CHECK, 0.0):
        if database_answers():
            st.rerun()  # from a fragment: the whole page
        st.session_state[_NEXT_CHECK] = time.monotonic() + RETRY_SECONDS
    st.caption(f"Last checked {time.strftime('%H:%M:%S')}; checking every {RETRY_SECONDS:g} s.")


def show_refusal(exc: PortalError, *, icon: str = ":material/error:") -> None:
    """``st.error`` of the message, shown as written, not as Markdown (``md_text``: the values
    and names it quotes are data)."""
    st.error(md_text(str(exc)), icon=icon)


def show_error(exc: PortalError, *, icon: str = ":material/error:") -> None:
    """``show_refusal``, or, when the database is unavailable, ``wait_for_database``."""
    if isinstance(exc, DatabaseUnavailable):
        wait_for_database(exc)
    show_refusal(exc, icon=icon)


def show_write_error(exc: PortalError, *, kept: str, again: str) -> None:
    """A failed write's error, never retried by itself: the person decides, knowing what is
    kept (``kept``: "Your edits are kept") and what to do (``again``: "commit again")."""
    if isinstance(exc, CommitOutcomeUnknown):
        st.error(md_text(f"{exc} {kept} meanwhile."), icon=":material/cloud_off:")
    elif isinstance(exc, DatabaseUnavailable):
        st.error(
            md_text(f"{exc} {kept} — {again} once the database answers."),
            icon=":material/cloud_off:",
        )
    else:
        show_refusal(exc)
