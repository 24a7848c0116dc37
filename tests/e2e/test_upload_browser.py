"""Uploading in a real browser through the real nginx: a valid file becomes a dataset with its
audit trail; an invalid one is reported and stores nothing; a disguised binary is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import text

from tests.e2e.conftest import PortalServer
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form, wait_for_cookie

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PEOPLE = (
    b"Name,Code,Qty,Joined\n"
    b"Ann,007,3,2024-01-05\n"
    b"Bob,012,,2024-02-29\n"
    b'"<b>Cy</b>, Jr.",099,7,2023-12-31\n'
)
SLOW = 20_000  # ms: reading, checking and storing a file is a few reruns on a busy 2-core machine
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)


def open_upload(page: Page, server: PortalServer, base: str) -> None:
    page.goto(base + "/upload")
    sign_in_form(page)
    sign_in(page, "boss", server.users["boss"])
    # Signing in ends with one more run that writes the cookie; choose the file after it, or
    # the uploader it re-renders may drop the file.
    wait_for_cookie(page.context, present=True)
    expect(page.get_by_text("Choose a CSV file.")).to_be_visible(timeout=SLOW)
    page.wait_for_timeout(500)


def choose_file(page: Page, name: str, content: bytes) -> None:
    """Give the uploader the file, again if it never showed it: set while the page was between
    runs or reconnecting (its widgets disabled), the file is lost without a word."""
    chooser = page.locator('input[type="file"]')
    shown = page.get_by_test_id("stFileChipName").filter(has_text=name)
    for _ in range(3):
        expect(chooser).to_be_enabled(timeout=SLOW)
        chooser.set_input_files(files=[{"name": name, "mimeType": "text/csv", "buffer": content}])
        try:
            expect(shown).to_be_visible(timeout=SLOW // 2)
        except AssertionError:
            continue
        return
    raise AssertionError(f"the uploader never took {name}")


def _count(server: PortalServer, sql: str) -> int:
    with server.db.app.connect() as conn:
        return int(conn.scalar(text(sql)) or 0)


def create_from_people(page: Page, name: str, reason: str = "") -> None:
    choose_file(page, "people.csv", PEOPLE)
    expect(page.get_by_text("All 3 rows are valid.")).to_be_visible(timeout=SLOW)
    page.get_by_role("textbox", name="Dataset name").fill(name)
    page.get_by_role("textbox", name="Reason (kept in the audit log)").fill(reason)
    page.get_by_role("button", name="Create the dataset").click()


def test_a_valid_file_becomes_a_dataset(
    portal_server: PortalServer, proxied: str, context: BrowserContext
) -> None:
    page = context.new_page()
    open_upload(page, portal_server, proxied)
    create_from_people(page, "People e2e", reason="first load")
    expect(page.get_by_text("3 rows loaded into “People e2e” (changeset #1).")).to_be_visible(
        timeout=SLOW
    )
    assert page.locator("b", has_text="Cy").count() == 0  # HTML in a cell is shown as text
    with portal_server.db.app.connect() as conn:
        name, rows, table = conn.execute(
            text("SELECT name, row_count, table_name FROM portal.datasets")
        ).one()
        codes = conn.scalars(text(f'SELECT code FROM data."{table}" ORDER BY _row_id')).all()
        reason = conn.scalar(text("SELECT reason FROM audit.changeset WHERE kind = 'upload'"))
    assert (name, rows, codes, reason) == ("People e2e", 3, ["007", "012", "099"], "first load")
    assert _count(portal_server, "SELECT count(*) FROM audit.upload") == 1


def test_an_invalid_file_is_reported_and_nothing_is_stored(
    portal_server: PortalServer, proxied: str, context: BrowserContext
) -> None:
    page = context.new_page()
    open_upload(page, portal_server, proxied)
    create_from_people(page, "People")
    expect(page.get_by_text("(changeset #1)")).to_be_visible(timeout=SLOW)

    page.wait_for_timeout(500)  # let the run after the import settle
    page.get_by_role("radiogroup", name="Load the file into").get_by_text(
        "An existing dataset"
    ).click()
    expect(page.get_by_text("Add the rows (append)")).to_be_visible(timeout=SLOW)
    # The run the click started redraws the page: until it ends, the previous run's file
    # chooser can stand beside the new one (two of it, on a slow machine).
    expect(page.get_by_text("Choose a CSV file.")).to_have_count(1, timeout=SLOW)
    expect(page.get_by_text("Choose a CSV file.")).to_be_visible(timeout=SLOW)
    choose_file(page, "more.csv", b"Name,Code,Qty,Joined\nDee,100,many,2024-13-01\n")
    expect(page.get_by_text("2 cells break the rules, so nothing has been stored.")).to_be_visible(
        timeout=SLOW
    )
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the error report (CSV)").click()
    report = Path(download.value.path()).read_text(encoding="utf-8-sig")  # BOM for Excel
    assert report.splitlines()[0] == "line,column,value,rule,problem"
    assert "2,Qty,many,type," in report
    assert "2,Joined,2024-13-01,type," in report
    assert _count(portal_server, "SELECT count(*) FROM audit.upload") == 1
    assert _count(portal_server, "SELECT row_count FROM portal.datasets") == 3

    choose_file(page, "photo.csv", PNG)
    expect(page.get_by_text("not a CSV", exact=False)).to_be_visible(timeout=SLOW)
    assert _count(portal_server, "SELECT count(*) FROM audit.upload") == 1
