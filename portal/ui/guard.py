"""The guard at the top of every page: sign-in first, then the role, then the sidebar."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from portal import auth
from portal.actor import ROLE_RANK, Actor
from portal.errors import AuthError, PermissionDenied, PortalError
from portal.signin import SignedIn
from portal.ui.db_retry import show_error
from portal.ui.markdown import md_escape
from portal.ui.navigation import ACCOUNT

NOT_CHOSEN = (
    "You did not choose your password (an admin set it, or the portal generated it when it "
    "created your account)."
)
"""The start of the notice to someone who must choose their own password (here and Account)."""


def who_may(role: str) -> str:
    """Who may use what needs ``role``, in words: "admins", "editors and admins" (every role
    at or above it: an admin may do all an editor may)."""
    *others, last = [f"{r}s" for r, rank in ROLE_RANK.items() if rank >= ROLE_RANK[role]]
    return f"{', '.join(others)} and {last}" if others else last


def require_session(role: str = "viewer", *, password_change_page: bool = False) -> SignedIn:
    """Stop the page unless someone with at least ``role`` is signed in; return who it is.

    Not signed in: the sign-in form. Wrong role: a refusal. Must change their password: a pointer
    to the Account page (unless this is it). The database unavailable: a notice, and the page
    again by itself once it answers (``portal.ui.db_retry``). Nothing of the page renders in
    those cases.
    """
    try:
        signed = auth.current()
    except PortalError as exc:
        show_error(exc)
        st.stop()
    if signed is None:
        auth.login_form()
        st.stop()
    _sidebar(signed)
    if signed.must_change_password and not password_change_page:
        st.warning(
            f"{NOT_CHOSEN} Choose your own password on the Account page before going on.",
            icon=":material/key:",
        )
        _link(ACCOUNT.path, ACCOUNT.title, ACCOUNT.icon)
        st.stop()
    if not signed.actor.can(role):
        st.error(
            f"This page is for {who_may(role)}; you are signed in as {signed.role}. "
            "Ask an admin if you need access.",
            icon=":material/block:",
        )
        st.stop()
    return signed


def require(role: str = "viewer") -> Actor:
    """``require_session(role).actor``: the actor for the page's writes."""
    return require_session(role).actor


def current_actor(role: str) -> Actor:
    """The actor re-read from PostgreSQL now, for a write made from a dialog or fragment.

    A click inside ``st.dialog`` reruns only the dialog, not the page's ``require()``, so a
    person disabled or demoted while the dialog was open would otherwise still act as before.

    Raises:
        AuthError: nobody is signed in any more (disabled, locked, signed out...).
        PermissionDenied: the role is now below ``role``.
    """
    signed = auth.current()
    if signed is None:
        raise AuthError("You are no longer signed in; nothing was changed. Sign in again.")
    if not signed.actor.can(role):
        raise PermissionDenied(
            f"This is for {who_may(role)}, and your role is now {signed.role}; nothing was changed."
        )
    return signed.actor


def _sidebar(signed: SignedIn) -> None:
    with st.sidebar:
        st.caption(
            f"Signed in as **{md_escape(signed.display_name)}** "
            f"({md_escape(signed.username)}) · {signed.role} role"
        )
        st.button(
            "Sign out",
            key="portal.sign_out",
            icon=":material/logout:",
            on_click=auth.sign_out,
            width="stretch",
        )


def _link(path: str, label: str, icon: str) -> None:
    # A page run on its own (not through app.py's navigation) cannot link to other pages.
    try:
        st.page_link(path, label=label, icon=icon)
    except StreamlitAPIException:
        st.caption(f"Open the {label} page from the menu.")
