"""Prepare, then download: the exports of the Datasets, History and Audit pages.

A file is built, and its ``export`` event recorded in the audit log, only when the person asks
(``prepare``); building it on every rerun would record exports nobody made. It is kept in
session state with what it was asked for, and ``kept`` hands it back while the page still asks
for the same (the same rows, filters, changeset…); asked for anything else, it is dropped, so a
download never serves a file for what the page no longer shows. ``offer`` draws its download
button, named for the file and its count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import streamlit as st
from sqlalchemy.orm import Session

from portal.db import session_scope
from portal.errors import PortalError
from portal.ui.db_retry import show_refusal
from portal.ui.markdown import md_text
from portal.wording import counted


class Prepared(Protocol):
    """A prepared file: ``portal.browse.CsvExport``, ``portal.trail_views.Export``."""

    @property
    def data(self) -> bytes: ...

    @property
    def file_name(self) -> str: ...

    @property
    def rows(self) -> int: ...


File = TypeVar("File", bound=Prepared)


def asked_before(state_key: str) -> object | None:
    """What the file kept under ``state_key`` was asked for, or None when none is kept."""
    kept_pair: tuple[object, Prepared] | None = st.session_state.get(state_key)
    return None if kept_pair is None else kept_pair[0]


def kept(state_key: str, asked: object) -> Any:
    """The file kept under ``state_key`` if it was prepared for ``asked`` (compared with ``==``);
    else None, and a file kept for anything else is dropped."""
    kept_pair: tuple[object, Prepared] | None = st.session_state.get(state_key)
    if kept_pair is None:
        return None
    if kept_pair[0] != asked:
        del st.session_state[state_key]
        return None
    return kept_pair[1]


def prepare(
    state_key: str,
    asked: object,
    build: Callable[[Session], File],
    *,
    label: str,
    key: str,
    spinner: str,
    where: Any = st,
    icon: str | None = None,
) -> File | None:
    """A ``label`` button (drawn in ``where``, a column say); when clicked, ``build`` the file in
    one database session under ``spinner`` and keep it for ``asked``. Returns the new file, or
    None when the button was not clicked or the portal refused (its message is shown)."""
    if not where.button(label, key=key, icon=icon):
        return None
    try:
        with st.spinner(spinner), session_scope() as session:
            file = build(session)
    except PortalError as exc:
        show_refusal(exc)
        return None
    st.session_state[state_key] = (asked, file)
    return file


def offer(file: Prepared, *, noun: str, key: str, mime: str = "text/csv") -> None:
    """The primary download button of a prepared ``file``: "Download <name> (<rows> <noun>s)".
    Clicking it downloads without a rerun (``on_click="ignore"``)."""
    st.download_button(
        f"Download {md_text(file.file_name)} ({counted(file.rows, noun)})",
        file.data,
        file_name=file.file_name,
        mime=mime,
        on_click="ignore",
        type="primary",
        icon=":material/download:",
        key=key,
    )
