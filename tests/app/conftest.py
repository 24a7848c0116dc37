"""AppTest helpers: a cookie key, the app or a page under test, signing in through the form, and
reading what the app wrote to the audit log."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from sqlalchemy.orm import Session
from streamlit.components.v2 import manifest_scanner
from streamlit.testing.v1 import AppTest

from portal.config import get_settings
from tests.conftest import DatabaseHandle
from tests.factories import audit_events, make_user

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30


@pytest.fixture(autouse=True, scope="session")
def _component_scan_once() -> Iterator[None]:
    """Streamlit scans every installed package's metadata for components each time an AppTest
    starts its runtime (about 0.5 s here, for the same answer every time): scanned once."""
    real = manifest_scanner.scan_component_manifests
    found = real()
    manifest_scanner.scan_component_manifests = lambda max_workers=None: list(found)
    try:
        yield
    finally:
        manifest_scanner.scan_component_manifests = real


@pytest.fixture(autouse=True)
def _cookie_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_COOKIE_KEY", secrets.token_urlsafe(48))
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _empty_page_caches() -> None:
    """Each test has a database of its own, whose ids start over; the pages cache what they
    read by id (the History page's table as of a changeset, say), so no test may meet what
    another cached."""
    st.cache_data.clear()
    st.cache_resource.clear()


def app_test(script: str = "app.py") -> AppTest:
    """The app (or one page file run on its own, as a URL on a fresh server would run it)."""
    return AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT)


def new_user(db: DatabaseHandle, **kwargs: Any) -> tuple[str, str]:
    with Session(db.app) as s, s.begin():
        return make_user(s, **kwargs)


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="sign_in.username").input(username)
    at.text_input(key="sign_in.password").input(password)
    at.button(key="sign_in.submit").click()
    return at.run()


def shows_sign_in(at: AppTest) -> bool:
    return any(b.key == "sign_in.submit" for b in at.button)


TEXT_ELEMENTS = (
    "markdown",
    "caption",
    "title",
    "subheader",
    "header",
    "info",
    "success",
    "warning",
    "error",
    "metric",
    "text",
)


def texts(at: AppTest, *, main_only: bool = False) -> str:
    """Everything the run put on screen as text (Markdown escapes removed), for 'is this shown'
    checks; ``main_only`` leaves out the sidebar."""
    root = at.main if main_only else at
    parts: list[str] = []
    for kind in TEXT_ELEMENTS:
        for element in getattr(root, kind):
            parts.append(str(getattr(element, "value", "")))
            parts.append(str(getattr(element, "label", "")))
    for frame in root.dataframe:
        parts.append(frame.value.to_csv())
    return "\n".join(parts).replace("\\", "")


def shows_missing_as_empty(frame: Any) -> bool:
    """A grid (``st.dataframe`` or ``st.data_editor``) shows a missing value as an empty cell,
    not as the browser's default "None"."""
    return bool(frame.proto.HasField("placeholder") and frame.proto.placeholder == "")


def localized(frame: Any) -> list[str]:
    """The columns of a shown dataframe given the browser's number format (thousands
    separators: 2,500 rather than 2500)."""
    config = json.loads(frame.proto.columns or "{}")
    return [
        name for name, c in config.items() if c.get("type_config", {}).get("format") == "localized"
    ]


_MENU: list[str] = []


@pytest.fixture(autouse=True)
def _record_menu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the page files the latest ``st.navigation`` call listed in its menu, for
    ``listed_pages``: every page is registered, those a role may not use hidden, and AppTest
    keeps no page's visibility."""
    real = st.navigation

    def recording(pages: Any, **kwargs: Any) -> Any:
        _MENU[:] = [Path(str(p._page)).name for p in pages if p.visibility == "visible"]
        return real(pages, **kwargs)

    _MENU.clear()
    monkeypatch.setattr(st, "navigation", recording)


def listed_pages(at: AppTest) -> set[str]:
    """The page files the last run's st.navigation listed in its menu (``at``'s last run must
    be the latest run of app.py in the test)."""
    return set(menu(at))


def menu(at: AppTest) -> list[str]:
    """``listed_pages`` in the menu's order."""
    assert at._registered_pages, "app.py has not run"
    return list(_MENU)


def events(db: DatabaseHandle, *kinds: str) -> list[dict[str, Any]]:
    return audit_events(db.owner, *kinds)


def show_app(at: AppTest) -> AppTest:
    """Run app.py itself (navigation and all).

    With a ``pages/`` folder AppTest reruns the last page file on its own, as a fresh server does
    for a page URL, so app.py's ``st.navigation`` is asked for explicitly here.
    """
    return at.switch_page("app.py").run()


def signed_in(db: DatabaseHandle, role: str = "viewer", **kwargs: Any) -> tuple[AppTest, str]:
    """A session signed in through the form as a new user with ``role``; returns it and the name."""
    name, password = new_user(db, role=role, **kwargs)
    at = sign_in(app_test().run(), name, password)
    assert not at.exception
    assert not shows_sign_in(at)
    return at, name
