"""The portal's pages and who may use them; ``app.py`` builds ``st.navigation`` from this.

Listing a page here only decides whether it appears in a role's navigation (every page is
registered; those a role may not use are hidden): every page file also checks sign-in and role
itself (``portal.ui.require``), because a file under ``pages/`` can be opened by URL, hidden or
not, even before any session has run ``st.navigation``.

Left to itself, Streamlit would treat ``pages/`` the old way until some session had run app.py
(a page URL running that file alone, the sidebar listing every file); ``portal serve`` starts it
through ``portal.streamlit_server``, which puts this navigation in charge from the start.

A new page: add a ``PageSpec`` below, and start the file with ``require(role)``
(``tests/unit/test_page_guards.py`` checks that). A write made from inside ``st.dialog`` or a
fragment re-reads the actor with ``portal.ui.current_actor(role)``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import streamlit as st
from streamlit.errors import StreamlitAPIException
from streamlit.navigation.page import StreamlitPage
from streamlit.runtime.scriptrunner import get_script_run_ctx

from portal.actor import Actor
from portal.signin import SignedIn


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    icon: str
    role: str  # the least role that may use the page (portal.actor.ROLE_RANK)
    default: bool = False


HOME = PageSpec("pages/1_home.py", "Home", ":material/home:", "viewer", default=True)
DATASETS = PageSpec("pages/3_datasets.py", "Datasets", ":material/table_view:", "viewer")
UPLOAD = PageSpec("pages/2_upload.py", "Upload", ":material/upload_file:", "editor")
EDIT = PageSpec("pages/4_edit.py", "Edit", ":material/edit_square:", "viewer")
HISTORY = PageSpec("pages/5_history.py", "History", ":material/history:", "viewer")
AUDIT = PageSpec("pages/7_audit.py", "Audit", ":material/policy:", "admin")
ACCOUNT = PageSpec("pages/8_account.py", "Account", ":material/person:", "viewer")
USERS = PageSpec("pages/9_users.py", "Users", ":material/group:", "admin")

# The menu's order, which Home's list of pages follows too: the flow of the work (find a dataset,
# upload one, edit it, read its history), then the admin's, then one's own account.
PAGES: tuple[PageSpec, ...] = (HOME, DATASETS, UPLOAD, EDIT, HISTORY, AUDIT, ACCOUNT, USERS)


def pages_for(signed: SignedIn | None) -> list[PageSpec]:
    """The pages to register for this person.

    Nobody signed in: every page, with the navigation hidden, so a link to any page opens that
    page's sign-in prompt and lands there after signing in. Someone who must change their
    password: only Account (``navigation`` takes them there). Otherwise: the pages their role
    may use.
    """
    if signed is None:
        return list(PAGES)
    if signed.must_change_password:
        return [ACCOUNT]
    return [page for page in PAGES if signed.actor.can(page.role)]


HOME_NAME: Final = "home"
"""Home's name as an address: Streamlit reserves it for the default page (inferred from
``pages/1_home.py``) yet serves that page only at "/"."""


def _home_by_name() -> None:
    """Have "/home" (a bookmark of Home, or the address every other page's suggests) run Home
    as "/" does: Streamlit answered it with "Page not found" drawn over Home. A page of its own
    at that address cannot be registered (the name is reserved), and giving Home another name
    changes every page's identity, so the request is read as one for "/" before the pages are
    resolved (``PagesManager``, as Streamlit 1.67 has it)."""
    ctx = get_script_run_ctx()
    manager = ctx.pages_manager if ctx is not None else None
    if (
        manager is not None
        and not manager.intended_page_script_hash
        and manager.intended_page_name == HOME_NAME
    ):
        manager.set_script_intent("", "")


def navigation(signed: SignedIn | None) -> StreamlitPage:
    """Register every page, listing in the menu those ``pages_for`` this person, and return the
    one to run.

    The others are registered hidden: a page this person may not use (their role changed while
    they were on it, a bookmarked link) then runs its own guard, which says why, where an
    unregistered page would have put them on Home without a word."""
    listed = {spec.path for spec in pages_for(signed)}
    pages = {
        spec.path: st.Page(
            spec.path,
            title=spec.title,
            icon=spec.icon,
            default=spec.default,  # Home, at "/": every other page keeps its own URL
            visibility="visible" if spec.path in listed else "hidden",
        )
        for spec in PAGES
    }
    _home_by_name()
    asked = st.navigation(
        list(pages.values()), position="sidebar" if signed is not None else "hidden"
    )
    account = pages[ACCOUNT.path]
    if signed is not None and signed.must_change_password and asked.url_path != account.url_path:
        # Straight to the one page they may use, at its own URL. (As the default page Account
        # was at "/", and a bookmark of /account opened Streamlit's "Page not found".)
        st.switch_page(account)
    return asked


def upload_link() -> None:
    """A link to the Upload page (a page run on its own, not through app.py's navigation, cannot
    link to other pages: then a pointer to the menu)."""
    try:
        st.page_link(UPLOAD.path, label="Upload a CSV file", icon=UPLOAD.icon)
    except StreamlitAPIException:
        st.caption("Open the Upload page from the menu to add one.")


def no_datasets(actor: Actor, message: str, icon: str = ":material/table_view:") -> None:
    """The empty state of a page about datasets when there are none: ``message``, then what to
    do — a link to Upload for editors and admins, and who can for a viewer, who cannot upload."""
    st.info(message, icon=icon)
    if actor.can("editor"):
        st.caption("A dataset is created by uploading a CSV file.")
        upload_link()
    else:
        st.caption("Editors create datasets by uploading CSV files.")


_LINKED_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and at most a bigint's


def linked_id(value: str | None) -> int | None:
    """A dataset or row id from a link's query parameter, or None if it is not one (a link is
    anyone's to write: "²" passes ``str.isdigit`` and 5,000 digits pass it too, but ``int``
    refuses both)."""
    if value is None or not _LINKED_ID.fullmatch(value):
        return None
    return int(value) or None


def history_links(dataset_id: int, row_ids: Sequence[int], key: str) -> None:
    """Links to the History page: the dataset's changesets, and every version of a row picked
    from ``row_ids`` (the rows the page shows). A page run on its own, not through app.py's
    navigation, cannot link to other pages: then nothing is shown."""
    cols = st.columns([1, 2, 2], vertical_alignment="bottom")
    with contextlib.suppress(StreamlitAPIException):
        cols[2].page_link(
            HISTORY.path,
            label="History of this dataset",
            icon=HISTORY.icon,
            query_params={"dataset": str(dataset_id)},
        )
        if row_ids:
            row = cols[0].selectbox("Row id", row_ids, key=key)
            cols[1].page_link(
                HISTORY.path,
                label=f"Every version of row {row}",
                icon=":material/manage_history:",
                query_params={"dataset": str(dataset_id), "row": str(row)},
            )
