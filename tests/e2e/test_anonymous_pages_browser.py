"""An anonymous browser, through the repo's nginx, opening the URL of every file in pages/ sees
the sign-in form and nothing else, and no list of the portal's pages: on a fresh server (where,
left to itself, Streamlit would run a page URL's file alone and list every file of pages/ in
the sidebar until some session had run app.py's navigation) and again after a visit to "/"."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.e2e.conftest import PortalServer
from tests.e2e.test_sign_in_browser import sign_in_form

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
# pages/4_edit.py is served at /edit: Streamlit drops the number prefix.
PAGE_PATHS = sorted(
    "/" + re.sub(r"^\d+_", "", page.stem) for page in (ROOT / "pages").glob("[0-9]*_*.py")
)
WARM_UP = 60_000  # ms: the first run of a fresh server imports the whole portal


def main_text(page: Page) -> str:
    return page.get_by_test_id("stMain").inner_text().strip()


def test_the_page_list_covers_every_page_file() -> None:
    assert {"/edit", "/history", "/audit", "/upload", "/users"} <= set(PAGE_PATHS)
    assert len(PAGE_PATHS) == len(list((ROOT / "pages").glob("*.py")))


def test_every_page_shows_only_the_sign_in_form(
    portal_server: PortalServer, proxied: str, context: BrowserContext
) -> None:
    page = context.new_page()
    seen: dict[str, str] = {}
    listed: dict[str, int] = {}
    # A page first (the fresh server has not run app.py yet), then "/" (app.py's navigation
    # from then on), then every page again.
    for round_, paths in enumerate((PAGE_PATHS, ["/", *PAGE_PATHS]), start=1):
        for path in paths:
            page.goto(proxied + path)
            page.get_by_role("button", name="Sign in").wait_for(timeout=WARM_UP)
            sign_in_form(page)
            seen[f"{path} (round {round_})"] = main_text(page)
            listed[f"{path} (round {round_})"] = page.get_by_test_id("stSidebarNav").count()

    form = seen[f"{PAGE_PATHS[0]} (round 1)"]
    assert "Sign in" in form
    assert "Username" in form
    differing = {where: text for where, text in seen.items() if text != form}
    assert not differing, (form, differing, portal_server.log_tail())
    assert not any(listed.values()), listed  # no page list, not even "app", "audit", "users"
