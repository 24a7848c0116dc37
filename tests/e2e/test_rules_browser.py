"""An admin changes a dataset's column rules in the Datasets page's rules grid, in a real
browser through the real nginx: a stricter maximum the rows break is refused, naming them, and
a looser one is saved, audited and enforced by the table."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect
from sqlalchemy import text

from tests.db.test_browse import seed_people
from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_datasets_browser import on_datasets_page
from tests.e2e.test_edit_browser import Shots, edit_cell, idle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SLOW = 15_000  # ms
QTY = 2  # the rules grid's row of the Qty column (Name, Code, Qty, …)
MAX = 7  # its column of the maximum (Label, Type, Date format, Decimal places, Required, Unique,
# Min, Max, …)
LABEL_X = 40  # px into the grid: on the Label column (the grid has no row-selection column)


def type_max(page: Page, grid: Locator, value: str, before: str) -> None:
    edit_cell(
        page,
        grid,
        row=QTY,
        anchor="Qty",
        right=MAX,
        kind="text",
        before=before,
        value=value,
        done=lambda: page.wait_for_timeout(300),
        x=LABEL_X,
        column=0,
    )


def save(page: Page, reason: str) -> None:
    # Settings has three: the name and description's, the rules', a new column's.
    reason_field = page.get_by_role("textbox", name="Reason (required)").nth(1)
    reason_field.fill(reason)
    reason_field.press("Tab")
    idle(page)
    page.get_by_role("button", name="Save column rules").click()
    idle(page)


def test_an_admin_changes_a_column_rule_in_the_browser(
    portal_server: PortalServer,
    proxied: str,
    context: BrowserContext,
    request: pytest.FixtureRequest,
) -> None:
    shot = Shots(request.node.name)
    dataset_id, _ = seed_people(portal_server.db)
    page = on_datasets_page(context, proxied, "boss", portal_server.users["boss"])
    choose(page, "Open a dataset", "People")
    page.get_by_text("Settings").click()
    grid = page.get_by_test_id("stDataFrame").filter(has=page.get_by_text("Pattern (regex)"))
    expect(grid).to_be_visible(timeout=SLOW)
    page.get_by_text("Settings").scroll_into_view_if_needed()
    shot(page, "settings")

    type_max(page, grid, "3", before="")
    save(page, "orders come in threes")
    expect(page.get_by_text("Rows of the dataset break the new rules")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text("“Qty”, max: 96 rows break it — row 4 (4)")).to_be_visible()
    shot(page, "refused")

    type_max(page, grid, "6", before="3")
    save(page, "orders come in sixes")
    expect(page.get_by_text("the new column rules are in force")).to_be_visible(timeout=SLOW)
    shot(page, "saved")
    with portal_server.db.app.connect() as conn:
        kind, reason, detail = conn.execute(
            text("SELECT kind, reason, detail FROM audit.changeset ORDER BY id DESC LIMIT 1")
        ).one()
        assert (kind, reason) == ("schema", "orders come in sixes")
        assert [(c["rule"], c["after"]) for c in detail["changes"]] == [("max", 6)]
        spec_version = conn.scalar(
            text("SELECT spec_version FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
        )
    assert spec_version == 2
