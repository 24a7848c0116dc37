"""The Datasets page in a real browser through the real nginx: a viewer opens a dataset, prepares
and downloads its CSV, and gets every row with formula cells neutralised; the export is audited.
The grid offers no download of its own."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import text

from tests.db.test_browse import NEUTRALISED, ROWS, SPECIAL_NOTES, seed_people
from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form, wait_for_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SLOW = 15_000  # ms


def on_datasets_page(context: BrowserContext, proxied: str, username: str, password: str) -> Page:
    """A new page of ``context``, signed in as ``username`` on the Datasets page."""
    page = context.new_page()
    page.goto(proxied + "/datasets")
    sign_in_form(page)
    sign_in(page, username, password)
    wait_for_cookie(page.context, present=True)
    expect(page.get_by_role("heading", name="Datasets")).to_be_visible(timeout=SLOW)
    page.wait_for_timeout(500)  # the run after signing in writes the cookie; let it finish
    return page


def test_a_viewer_downloads_a_dataset_as_formula_safe_csv(
    portal_server: PortalServer, proxied: str, context: BrowserContext
) -> None:
    started = time.monotonic()
    dataset_id, _ = seed_people(portal_server.db)
    page = on_datasets_page(context, proxied, "vee", portal_server.users["vee"])

    choose(page, "Open a dataset", "People")
    expect(page.get_by_text("Rows 1–100 of 250")).to_be_visible(timeout=SLOW)
    expect(page.get_by_role("link", name="Upload a CSV file")).to_have_count(0)  # a viewer

    # The grid's own toolbar keeps search and full screen, but not Streamlit's "Download as
    # CSV": that file would be unaudited and not formula-safe (client.disableDataExport).
    page.get_by_test_id("stDataFrame").first.hover()
    toolbar = page.get_by_test_id("stElementToolbar").first
    expect(toolbar.get_by_role("button", name="Search")).to_be_visible(timeout=SLOW)
    expect(toolbar.get_by_role("button", name="Download as CSV")).to_have_count(0)

    page.get_by_role("button", name="Prepare download").click()
    download_button = page.get_by_role("button", name=f"Download People.csv ({ROWS} rows)")
    expect(download_button).to_be_visible(timeout=SLOW)
    with page.expect_download() as download:
        download_button.click()
    assert download.value.suggested_filename == "People.csv"
    raw = Path(download.value.path()).read_bytes()

    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert table[0] == ["Name", "Code", "Qty", "Price", "Joined", "Note"]
    assert len(table) == ROWS + 1
    notes = {int(row[0].split()[1]): row[5] for row in table[1:]}
    assert notes[1] == "'=1+1"
    assert {i: notes[i] for i in NEUTRALISED} == NEUTRALISED
    assert notes[7] == SPECIAL_NOTES[7]  # HTML kept as it was written

    with portal_server.db.owner.connect() as conn:
        exports = conn.execute(
            text("SELECT actor_username, target, detail FROM audit.event WHERE kind = 'export'")
        ).all()
    assert [(e.actor_username, e.target, e.detail["rows"]) for e in exports] == [
        ("vee", f"dataset:{dataset_id}", ROWS)
    ]
    assert time.monotonic() - started < 30
