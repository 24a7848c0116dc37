"""An admin adds a column to a dataset and removes another on the Datasets page, in a real
browser through the real nginx: the added column shows in the rows with the value given to
every row, the removal asks first, and both are schema changesets in the audit log."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, expect
from sqlalchemy import text

from portal.ui.markdown import WORD_JOINER
from tests.db.test_browse import ROWS, seed_people
from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_datasets_browser import on_datasets_page
from tests.e2e.test_edit_browser import Shots, idle

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SLOW = 15_000  # ms


def test_an_admin_adds_and_removes_a_column_in_the_browser(
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
    label = page.get_by_role("textbox", name="Label of the new column")
    expect(label).to_be_visible(timeout=SLOW)
    label.fill("Team")
    choose(page, "Type", "category (one of a list of options)")
    page.get_by_role("textbox", name="Options (a category only)").fill("red | blue")
    page.get_by_role("textbox", name=f"Value for the {ROWS} rows it has now (optional)").fill(
        "blue"
    )
    page.get_by_role("textbox", name="Reason (required)").nth(2).fill("teams")
    label.scroll_into_view_if_needed()
    shot(page, "add")
    page.get_by_role("button", name="Add column").click()
    idle(page)
    expect(page.get_by_text("Added the column “Team”")).to_be_visible(timeout=SLOW)
    grid = page.get_by_test_id("stDataFrame").last
    # The grid draws on a canvas; its accessible table names the columns.
    expect(grid.locator("th", has_text="Team")).to_be_attached(timeout=SLOW)
    shot(page, "added")

    # Settings stays open after the rerun the save made (its message shifted the page).
    choose(page, "Column to remove", "Note")
    idle(page)
    ask = page.get_by_role("button", name="Remove column…")
    expect(ask).to_be_enabled(timeout=SLOW)
    ask.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("“Note” leaves “People”")).to_be_visible(timeout=SLOW)
    remove = dialog.get_by_role("button", name="Remove column")
    remove.click()  # without a reason
    expect(dialog.get_by_text("Say why you are removing the column")).to_be_visible(timeout=SLOW)
    # Typed and clicked at once: the click that takes the typing is not lost.
    dialog.get_by_role("textbox", name="Reason (required)").fill("never used")
    shot(page, "confirm")
    remove.click()
    expect(page.get_by_text("Removed the column “Note”")).to_be_visible(timeout=SLOW)
    shot(page, "removed")
    with portal_server.db.app.connect() as conn:
        done = conn.execute(
            text(
                "SELECT detail->>'action', reason FROM audit.changeset"
                " WHERE kind = 'schema' AND dataset_id = :i ORDER BY seq"
            ),
            {"i": dataset_id},
        ).all()
        spec_version = conn.scalar(
            text("SELECT spec_version FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
        )
    assert done == [("add_column", "teams"), ("remove_column", "never used")]
    assert spec_version == 3


def test_a_dataset_renamed_on_the_page_stays_open_at_the_next_click(
    portal_server: PortalServer,
    proxied: str,
    context: BrowserContext,
    request: pytest.FixtureRequest,
) -> None:
    """The browser names the chosen dataset by the name it showed; after a rename, Streamlit
    read the old name as the choice itself, and the next click closed the dataset (and was
    lost)."""
    shot = Shots(request.node.name)
    seed_people(portal_server.db)
    page = on_datasets_page(context, proxied, "boss", portal_server.users["boss"])
    choose(page, "Open a dataset", "People")
    page.get_by_text("Settings").click()
    name = page.get_by_role("textbox", name="Name", exact=True)
    expect(name).to_be_visible(timeout=SLOW)
    name.fill("Staff")
    page.get_by_role("textbox", name="Reason (required)").first.fill("clearer")
    page.get_by_role("button", name="Save name and description").click()
    expect(page.get_by_text("name and description are in the audit log")).to_be_visible(
        timeout=SLOW
    )
    idle(page)
    page.get_by_text("Descending").click()  # any click that reruns: the picker's label is sent
    idle(page)
    shot(page, "after-click")
    expect(page.get_by_role("heading", name="Staff")).to_be_visible(timeout=SLOW)
    expect(page.get_by_role("combobox", name="Open a dataset")).to_have_value("Staff")


def test_a_column_label_of_markup_is_shown_as_written(
    portal_server: PortalServer,
    proxied: str,
    context: BrowserContext,
) -> None:
    """Streamlit read ":red[…]" even with "[" escaped, and dropped ":red": the label is shown
    as typed, with no colour, no bold and no link (a bare URL was made one, its escaped dots
    shown: GFM's autolinks run on the text after its escapes; a word joiner stops them)."""
    seed_people(portal_server.db)
    page = on_datasets_page(context, proxied, "boss", portal_server.users["boss"])
    choose(page, "Open a dataset", "People")
    page.get_by_text("Settings").click()
    label = ":red[hi] http://127.0.0.1:9/x **b**"
    page.get_by_role("textbox", name="Label of the new column").fill(label)
    page.get_by_role("textbox", name="Reason (required)").nth(2).fill("markup")
    page.get_by_role("button", name="Add column").click()
    done = page.locator('[data-testid="stAlertContentSuccess"]')
    expect(done).to_contain_text(
        f"Added the column “:red[hi] http{WORD_JOINER}://127.0.0.1:9/x **b**”", timeout=SLOW
    )
    assert done.locator("strong").count() == 0
    assert done.locator("a").count() == 0
