"""The Audit page in a real browser: an admin reads the trail's kinds in words, opens a
changeset from it and sees each updated row's cells before and after; opening it is recorded as
an audit view, which the events list names in words."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, expect
from sqlalchemy import text

from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_edit_browser import grid_cells
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form
from tests.trail_seed import seed_trail

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SLOW = 15_000  # ms


def test_an_admin_sees_a_changeset_s_before_and_after(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    trail = seed_trail(portal_server.db)
    seq = trail.seqs["ann qty"]
    page = context.new_page()
    page.goto(portal_server.url + "/audit")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=2 * SLOW)
    sign_in_form(page)
    sign_in(page, "boss", portal_server.users["boss"])
    expect(page.get_by_role("heading", name="Audit", exact=True)).to_be_visible(timeout=SLOW)
    expect(page.get_by_text(re.compile("^Chain heads: changeset #"))).to_be_visible(timeout=SLOW)

    expect(page.get_by_text("Page 1 (the last)")).to_be_visible(timeout=SLOW)
    header, *rows = grid_cells(page, page.locator('[data-testid="stDataFrame"]').first)
    kinds = {row[header.index("#")]: row[header.index("Kind")] for row in rows}
    assert kinds[str(seq)] == "Edit"  # in words, not the stored kind
    assert kinds[str(trail.seqs["oob"])] == "⚠ OUT OF BAND"
    page.wait_for_timeout(500)  # let the run finish before using its widgets
    choose(page, "Open a changeset", f"#{seq} · Edit · People")
    expect(page.get_by_role("heading", name=f"Changeset #{seq}")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text(re.compile(r"^Edit on People by "))).to_be_visible(timeout=SLOW)
    expect(page.get_by_text("Reason: fix the quantities")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text("Updated rows (2)")).to_be_visible()  # one kind: no radio
    # The grid draws on a canvas: read what it shows from its accessible table.
    grid = page.locator('[data-testid="stDataFrame"]').nth(1)
    expect(grid).to_be_visible(timeout=SLOW)
    shown = grid_cells(page, grid)
    assert shown[0][:3] == ["Row id", "State", "Qty"]
    assert [row[:3] for row in shown[1:]] == [
        ["1", "before", "1"],
        ["1", "after", "99"],
        ["2", "before", "2"],
        ["2", "after", "99"],
    ]

    with portal_server.db.owner.connect() as conn:
        targets = conn.scalars(
            text("SELECT target FROM audit.event WHERE kind = 'audit_view' ORDER BY id")
        ).all()
    assert targets[0] == "audit"
    assert any(t.startswith("changeset:") for t in targets)

    # The events list names what the views were of, in words, not as stored ("changeset:3").
    page.get_by_text("Events", exact=True).click()
    expect(page.get_by_role("combobox", name="Open a changeset")).to_be_hidden(timeout=SLOW)
    header, *rows = grid_cells(page, page.locator('[data-testid="stDataFrame"]').first)
    shown = {(row[header.index("Target")], row[header.index("Detail")]) for row in rows}
    assert ("Audit trail", "filter: none · list: changesets") in shown
    assert any(target == f"Changeset #{seq}" for target, _ in shown)
    assert not any(target.startswith(("changeset:", "audit:", "dataset:")) for target, _ in shown)
