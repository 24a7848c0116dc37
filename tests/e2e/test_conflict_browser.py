"""Two editors change the same dataset at once, each in their own browser, through the real nginx.

Alice and Bert both open People's Edit page. Alice changes ann's Qty (1 -> 5), deletes bob's row
and commits. Bert, still on the rows he loaded before that, types another Qty for ann (9), a Note
for ann (a cell Alice did not touch) and a Note for bob, and commits: he sees the conflict view
naming Alice, with her reason and the rows as she left them, and nothing of his is written. He
reloads and re-applies his edits: ann's Note re-applies by itself, ann's Qty is shown side by side
(theirs 5, mine 9) and he keeps his; bob's row, deleted by Alice, is offered back to him and he
re-creates it with his Note. He reviews and commits with a reason: the table holds exactly the
merge, and the audit log both changesets with their actors, reasons and each cell before and
after. Every step leaves a screenshot in ``test-artifacts/e2e/<test name>/``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal.actor import Actor
from portal.ui import md_escape
from tests.db.test_writes import CSV, SPEC
from tests.e2e.conftest import PortalServer
from tests.e2e.test_edit_browser import (
    SLOW,
    Shots,
    click_until_visible,
    commit_with_reason,
    confirm_commit,
    edit_cell,
    grid_cells,
    idle,
    metric,
    open_edit,
    select_row,
)
from tests.e2e.test_journey_browser import pick_radio
from tests.factories import dataset_rows, make_user, upload_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TABLES = '[data-testid="stDataFrame"]'  # each grid's container, with its toolbar
A_REASON = "stock count, Alice"
B_REASON = "Bert's recount, merged"
CONFLICT = "changed by someone else since you loaded them, so nothing was written"


def new_context(browser: Browser) -> BrowserContext:
    ctx = browser.new_context()
    ctx.set_default_timeout(SLOW)
    return ctx


def new_page(ctx: BrowserContext) -> Page:
    page = ctx.new_page()
    return page


def rows(server: PortalServer, dataset_id: int) -> list[tuple[object, ...]]:
    return dataset_rows(server.db.owner, dataset_id, "_row_id, name, qty, price, note")


def edits(server: PortalServer) -> list[tuple[object, ...]]:
    """Each ``edit`` changeset in order: (actor, display name, reason, its row changes sorted
    by op and row id, each as (row id, op, before, after))."""
    with server.db.owner.connect() as conn:
        changesets = conn.execute(
            text(
                "SELECT id, actor_username, actor_display_name, reason FROM audit.changeset"
                " WHERE kind = 'edit' ORDER BY seq"
            )
        ).all()
        return [
            (
                username,
                display,
                reason,
                [
                    tuple(r)
                    for r in conn.execute(
                        text(
                            "SELECT row_id, op, before, after FROM audit.row_change"
                            " WHERE changeset_id = :c ORDER BY op, row_id"
                        ),
                        {"c": changeset_id},
                    )
                ],
            )
            for changeset_id, username, display, reason in changesets
        ]


ORIGINAL = [
    (1, "ann", 1, Decimal("1.50"), "first"),
    (2, "bob", 2, Decimal("2.00"), None),
    (3, "cy", 3, Decimal("3.25"), "third"),
    (4, "dee", 4, None, None),
]
AFTER_ALICE = [(1, "ann", 5, Decimal("1.50"), "first"), *ORIGINAL[2:]]
ALICE_CHANGESET = (
    "alice",
    "Alice A.",
    A_REASON,
    [
        (2, "delete", {"name": "bob", "qty": 2, "price": 2.0, "note": None}, None),
        (1, "update", {"qty": 1}, {"qty": 5}),
    ],
)


def alice_commits(page: Page, grid: Locator, shot: Shots) -> None:
    """ann's Qty 1 -> 5 and bob's row deleted, committed with a reason."""
    edit_cell(
        page,
        grid,
        row=0,
        anchor="1",
        right=2,
        kind="text",
        before="1",
        value="5",
        done=lambda: expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW),
    )
    select_row(page, grid, 1)
    page.keyboard.press("Delete")
    deleted = metric(page, "Rows deleted")
    try:
        expect(deleted).to_have_text("1", timeout=SLOW // 2)
    except AssertionError:  # the key went elsewhere: the toolbar's button
        select_row(page, grid, 1)
        page.get_by_role("button", name="Delete row(s)").click()
        expect(deleted).to_have_text("1", timeout=SLOW)
    idle(page)
    shot(page, "alice-review")
    commit_with_reason(page, A_REASON)
    expect(
        page.get_by_role("dialog").get_by_text("1 cell in 1 row changed, 1 row deleted.")
    ).to_be_visible()
    confirm_commit(page)
    idle(page)
    shot(page, "alice-committed")


def bert_edits_the_old_rows(page: Page, grid: Locator, shot: Shots) -> None:
    """On the rows loaded before Alice's commit: ann's Qty 1 -> 9 (Alice made it 5), ann's
    Note (Alice left it), bob's Note (Alice deleted bob)."""
    cells = metric(page, "Cells changed")
    typed = [  # row, its Row id, columns right of Row id, kind, before, after
        (0, "1", 2, "text", "1", "9"),
        (0, "1", 4, "text", "first", "checked by Bert"),
        (1, "2", 4, "text", "", "bob moved"),
    ]
    for n, (row, anchor, right, kind, before, value) in enumerate(typed, start=1):
        edit_cell(
            page,
            grid,
            row=row,
            anchor=anchor,
            right=right,
            kind=kind,
            before=before,
            value=value,
            done=lambda n=n: expect(cells).to_have_text(str(n), timeout=SLOW),
        )
    expect(metric(page, "Rows changed")).to_have_text("2")
    review = page.locator(TABLES).nth(1)
    assert grid_cells(page, review) == [
        ["Row id", "Column", "Before", "After"],
        ["1", "Qty", "1", "9"],
        ["1", "Note", "first", "checked by Bert"],
        ["2", "Note", "", "bob moved"],
    ]
    shot(page, "bert-review-on-old-rows")


def bert_meets_the_conflict(page: Page, shot: Shots) -> None:
    commit_with_reason(page, "Bert's recount")
    shot(page, "bert-confirm")
    page.get_by_role("dialog").get_by_role("button", name="Commit").click()
    expect(page.get_by_text(f"2 rows you changed were {CONFLICT}")).to_be_visible(timeout=SLOW)
    expect(page.get_by_role("dialog")).to_have_count(0, timeout=SLOW)
    expect(page.locator('[data-testid="stAlertContentSuccess"]')).to_have_count(0)
    idle(page)
    # The grid, the conflict table (who changed what, when, why, the row now), then the review.
    shown = grid_cells(page, page.locator(TABLES).nth(1))
    assert shown[0] == ["Row id", "You", "They", "Their change", "By", "When", "Why", "Now"]
    when = [row.pop(5) for row in shown[1:]]
    assert all(w.endswith(" UTC") for w in when), when
    assert shown[1:] == [
        [
            "1",
            "edited it",
            "changed it",
            "Qty: 1 → 5",
            "Alice A.",
            A_REASON,
            "Name: ann, Qty: 5, Price: 1.50, Note: first",
        ],
        ["2", "edited it", "deleted it", "", "Alice A.", A_REASON, "(row deleted)"],
    ], shown
    shot(page, "bert-conflict")


def bert_reloads_and_chooses(page: Page, shot: Shots) -> None:
    click_until_visible(
        page,
        page.get_by_role("button", name="Reload and re-apply my edits"),
        page.get_by_role("heading", name="Choose what to keep"),
    )
    idle(page)
    expect(page.get_by_text(CONFLICT)).to_have_count(0)  # the conflict view is gone
    # ann's Note (only Bert changed it) re-applied by itself; ann's Qty side by side.
    expect(
        page.get_by_text("1 cell of yours was re-applied by itself, on the latest rows.")
    ).to_be_visible()
    expect(page.get_by_text("Row 1, Qty — it was “1”")).to_be_visible()
    expect(page.get_by_role("radio")).to_have_count(2)
    # Neither side is taken for Bert, and the choices wait until each cell has one.
    expect(page.get_by_role("radio", name="theirs: 5")).not_to_be_checked()
    expect(page.get_by_role("radio", name="mine: 9")).not_to_be_checked()
    expect(page.get_by_role("button", name="Apply my choices")).to_be_disabled()
    # The rows as they were before are not shown under the choices: they come back after.
    expect(page.locator(TABLES)).to_have_count(0)
    # bob's row, which Alice deleted, is offered back with Bert's edit to it: not lost.
    values, edits = "Name: bob, Qty: 2, Price: 2.00, Note: bob moved", "Note: bob moved"
    offer = "Row 2 was deleted by someone else; re-create it as a new row: {} (your edits: {})"
    lost = offer.format(values, edits)
    # The values are escaped in the label (shown as text, not Markdown), and Streamlit gives
    # the checkbox the label's Markdown source as its accessible name.
    lost_name = offer.format(md_escape(values), md_escape(edits))
    expect(page.get_by_role("checkbox")).to_have_count(1)
    expect(page.get_by_text(lost, exact=True)).to_be_visible()
    expect(page.get_by_role("checkbox", name=lost_name)).not_to_be_checked()
    shot(page, "bert-choose")
    pick_radio(page, "mine: 9")
    pick_radio(page, lost, "checkbox", name=lost_name)
    shot(page, "bert-chose")
    click_until_visible(
        page,
        page.get_by_role("button", name="Apply my choices"),
        page.get_by_role("heading", name="Review"),
    )
    idle(page)
    expect(page.get_by_role("heading", name="Choose what to keep")).to_have_count(0)


def bert_reviews_the_merge_and_commits(page: Page, shot: Shots) -> None:
    for label, shown in (
        ("Cells changed", "2"),
        ("Rows changed", "1"),
        ("Rows added", "1"),
        ("Rows deleted", "0"),
    ):
        expect(metric(page, label)).to_have_text(shown, timeout=SLOW)
    # The grid shows the rows as they are now (bob gone), Bert's edits on top.
    expect(page.get_by_text("Rows 1–3 of 3").first).to_be_visible()
    tables = page.locator(TABLES)
    expect(tables).to_have_count(3, timeout=SLOW)  # the grid, the changed cells, the new row
    assert grid_cells(page, tables.nth(1)) == [
        ["Row id", "Column", "Before", "After"],
        ["1", "Qty", "5", "9"],
        ["1", "Note", "first", "checked by Bert"],
    ]
    assert grid_cells(page, tables.nth(2)) == [
        ["Name", "Qty", "Price", "Note"],
        ["bob", "2", "2.00", "bob moved"],
    ]
    page.get_by_role("heading", name="Review").scroll_into_view_if_needed()
    shot(page, "bert-merged-review")
    # The reason he gave for the commit that met the conflict is still there, to keep or edit.
    expect(page.get_by_label("Reason (required)")).to_have_value("Bert's recount")
    commit_with_reason(page, B_REASON)
    expect(
        page.get_by_role("dialog").get_by_text("2 cells in 1 row changed, 1 row added.")
    ).to_be_visible()
    confirm_commit(page)
    idle(page)
    shot(page, "bert-committed")


def test_two_editors_conflict_and_the_second_merges_in_the_browser(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    shot = Shots(request.node.name)
    with Session(portal_server.db.app) as s, s.begin():
        _, alice_pw = make_user(s, username="alice", role="editor", display_name="Alice A.")
        _, bert_pw = make_user(s, username="bert", role="editor", display_name="Bert B.")
    dataset_id = upload_dataset(Actor("boss", "Boss", "admin"), CSV, spec=SPEC, name="People")
    assert rows(portal_server, dataset_id) == ORIGINAL

    alice_ctx, bert_ctx = new_context(browser), new_context(browser)
    page = None
    try:
        # Both open the dataset: Bert first, so his rows predate Alice's commit.
        page = bert = new_page(bert_ctx)
        bert_grid = open_edit(bert, proxied, dataset_id, "bert", bert_pw)
        shot(bert, "bert-opened")
        page = alice = new_page(alice_ctx)
        alice_grid = open_edit(alice, proxied, dataset_id, "alice", alice_pw)
        shot(alice, "alice-opened")

        alice_commits(alice, alice_grid, shot)
        assert rows(portal_server, dataset_id) == AFTER_ALICE
        assert edits(portal_server) == [ALICE_CHANGESET]

        page = bert
        bert_edits_the_old_rows(bert, bert_grid, shot)
        bert_meets_the_conflict(bert, shot)
        # Nothing of Bert's was written: the rows are Alice's, the log has her changeset only.
        assert rows(portal_server, dataset_id) == AFTER_ALICE
        assert edits(portal_server) == [ALICE_CHANGESET]

        bert_reloads_and_chooses(bert, shot)
        assert rows(portal_server, dataset_id) == AFTER_ALICE  # choosing writes nothing
        bert_reviews_the_merge_and_commits(bert, shot)
    except (AssertionError, PlaywrightTimeout):
        if page is not None:
            shot(page, "failed")
        raise
    finally:
        alice_ctx.close()
        bert_ctx.close()

    # Exactly the merge: ann with Bert's Qty (his choice) and Note (re-applied), bob re-created
    # as a new row with Bert's Note; the log has both changesets, each cell before and after.
    assert rows(portal_server, dataset_id) == [
        (1, "ann", 9, Decimal("1.50"), "checked by Bert"),
        *ORIGINAL[2:],
        (5, "bob", 2, Decimal("2.00"), "bob moved"),
    ]
    assert edits(portal_server) == [
        ALICE_CHANGESET,
        (
            "bert",
            "Bert B.",
            B_REASON,
            [
                (5, "insert", None, {"name": "bob", "qty": 2, "price": 2.0, "note": "bob moved"}),
                (1, "update", {"qty": 5, "note": "first"}, {"qty": 9, "note": "checked by Bert"}),
            ],
        ),
    ]
