"""An admin restores a row to an earlier version from its history, in a real browser through the
real nginx: the link opens the row's versions, choosing one shows the cells now and then, the
click without a reason is refused, and with one the row is back and a ``revert`` changeset
names the version."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, expect
from sqlalchemy import text

from portal import writes
from portal.db import session_scope
from portal.diffs import ChangeSet, RowUpdate
from tests.db.test_browse import seed_people
from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_datasets_browser import on_datasets_page
from tests.e2e.test_edit_browser import Shots, idle
from tests.factories import data_table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SLOW = 15_000  # ms


def test_an_admin_restores_a_row_to_an_earlier_version_in_the_browser(
    portal_server: PortalServer,
    proxied: str,
    context: BrowserContext,
    request: pytest.FixtureRequest,
) -> None:
    shot = Shots(request.node.name)
    dataset_id, editor = seed_people(portal_server.db)
    with session_scope() as s:  # Eddie changes row 1's quantity from 1 to 6
        read = writes.read_window(session=s, dataset_id=dataset_id, limit=10)
        writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=ChangeSet(updates=(RowUpdate(1, read.versions[1], {"qty": 1}, {"qty": 6}),)),
            reason="a count",
        )
    page = on_datasets_page(context, proxied, "boss", portal_server.users["boss"])
    page.goto(f"{proxied}/history?dataset={dataset_id}&row=1")
    expect(page.get_by_text("Every version of row 1")).to_be_visible(timeout=SLOW)
    choose(page, "Restore row 1 to version", "Version 1: #1 · Eddie Editor")
    idle(page)
    expect(page.get_by_text("Cells put back")).to_be_visible(timeout=SLOW)
    cells = page.get_by_test_id("stDataFrame").last  # its accessible table names the cells
    expect(cells.locator("th", has_text="Version 1")).to_be_attached(timeout=SLOW)
    expect(cells.locator("td", has_text="Qty")).to_be_attached(timeout=SLOW)
    shot(page, "chosen")
    restore = page.get_by_role("button", name="Restore row 1 to version 1")
    restore.click()  # without a reason
    expect(page.get_by_text("a reason is required")).to_be_visible(timeout=SLOW)
    # Typed and clicked at once: the click that takes the typing is not lost.
    page.get_by_role("textbox", name="Reason (required)").fill("the count was right")
    shot(page, "restore")
    restore.click()
    expect(
        page.get_by_text("Restored row 1 to version 1 as changeset #3: 1 cell restored.").first
    ).to_be_visible(timeout=SLOW)
    expect(page.get_by_text("Cells put back")).to_have_count(0)  # the choice is done with
    shot(page, "restored")
    # and the picker says so: it shows no version any more, in the browser too.
    picker = page.get_by_test_id("stSelectbox").filter(has_text="Restore row 1 to version")
    expect(picker).not_to_contain_text("Version 1:")
    with portal_server.db.app.connect() as conn:
        table = data_table(portal_server.db.app, dataset_id)
        qty = conn.scalar(text(f"SELECT qty FROM {table} WHERE _row_id = 1"))
        done = conn.execute(
            text(
                "SELECT kind, reason, detail->'restores' FROM audit.changeset"
                " WHERE dataset_id = :i ORDER BY seq DESC LIMIT 1"
            ),
            {"i": dataset_id},
        ).one()
    assert qty == 1
    assert done == ("revert", "the count was right", {"row_id": 1, "version": 1, "seq": 1})
