"""A database restart under a real browser: a page says "The database is unavailable —
retrying…" (no traceback) and comes back by itself once PostgreSQL answers (the notice's
``st.fragment(run_every=…)`` timer; nobody clicks). That edits survive it is shown by
``tests/app/test_faults_pages.py`` (the grid cannot be typed into from here yet)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from portal.actor import Actor
from portal.ui.db_retry import NOTICE
from tests.db import test_faults
from tests.db.test_faults import Restartable
from tests.db.test_writes import CSV, SPEC
from tests.e2e.conftest import streamlit_server
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form, wait_for_cookie
from tests.factories import make_user, upload_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

own_cluster = test_faults.own_cluster
restartable = test_faults.restartable
SLOW = 20_000  # ms


@pytest.fixture
def served(restartable: Restartable, tmp_path: Path) -> Iterator[tuple[str, str, str, int]]:
    """Streamlit on the restartable database: (url, editor, password, dataset id)."""
    from sqlalchemy.orm import Session

    with Session(restartable.handle.app) as s, s.begin():
        name, password = make_user(s, role="editor", display_name="Eddie E.")
    dataset = upload_dataset(Actor(name, "Eddie E.", "editor"), CSV, spec=SPEC, name="People")
    key = secrets.token_urlsafe(48)
    with streamlit_server(restartable.handle.url("app"), key, tmp_path) as (url, _):
        yield url, name, password, dataset


def test_a_page_comes_back_by_itself_after_a_database_restart(
    restartable: Restartable,
    served: tuple[str, str, str, int],
    context: BrowserContext,
) -> None:
    url, name, password, dataset = served
    page = context.new_page()
    page.goto(f"{url}/edit?dataset={dataset}")
    sign_in_form(page)
    sign_in(page, name, password)
    expect(page.get_by_text("Rows 1–4 of 4")).to_be_visible(timeout=SLOW)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=SLOW)

    wait_for_cookie(context, present=True)
    restartable.stop()
    page.reload()  # a new run that needs the database (the sign-in is re-read from the cookie)
    expect(page.get_by_text(NOTICE)).to_be_visible(timeout=SLOW)
    assert "Traceback" not in page.locator("body").inner_text()
    page.wait_for_timeout(4_000)  # at least one check by the notice's timer, still down
    expect(page.get_by_text(NOTICE)).to_be_visible()

    restartable.start()
    # Nobody clicks: the notice asks the database every few seconds and reruns the page.
    expect(page.get_by_text("Rows 1–4 of 4")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text(NOTICE)).to_have_count(0)
