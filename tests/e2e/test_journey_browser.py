"""The whole journey (issue #8) in a real browser through the real nginx with the repo's config.

An editor signs in, uploads a CSV file, sets a rule the file breaks and sees (and downloads) the
error report; fixes the file, uploads it again, confirms the rules and creates the dataset. On the
Edit page, with the mouse and keyboard in the grid, they change a cell, add a row and delete one;
the review shows each; they commit with a reason through the confirm dialog. An admin, in another
browser, finds that changeset on the Audit page with each cell before and after. The table and
the audit log hold exactly that change. Every step leaves a screenshot in
``test-artifacts/e2e/<test name>/``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal.spec import DatasetSpec
from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_edit_browser import (
    ATTEMPTS,
    GRID,
    SLOW,
    Shots,
    click_until_visible,
    commit_with_reason,
    confirm_commit,
    download_button,
    edit_cell,
    grid_cells,
    idle,
    metric,
    select_row,
    sign_in_here,
    table_rows,
)
from tests.e2e.test_upload_browser import choose_file
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BAD = b"Name,Qty,Price,Note\nann,1,1.50,first\nbob,-5,2.00,\ncy,3,3.25,third\ndee,4,,\n"
GOOD = BAD.replace(b"bob,-5,", b"bob,2,")
NAME = "Stock journey"
REASON = "stock count, March"
TABLES = '[data-testid="stDataFrame"]'  # each grid's container, with its toolbar
SPEC_X = 20  # px into the upload page's rules grid: inside "Label" (it has no selection column)


def rows_of(content: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content)))


def pick_radio(
    page: Page,
    label: str,
    role: Literal["radio", "checkbox"] = "radio",
    name: str | None = None,
) -> None:
    """Choose a radio option (or tick a checkbox) by its label as shown, again if a rerun in
    flight swallowed the click. ``name``: its accessible name, if not the label (Streamlit gives
    a widget its label's Markdown source as its name: escaped data keeps the backslashes)."""
    option = page.get_by_role(role, name=name or label)
    for _ in range(ATTEMPTS):
        idle(page)
        page.get_by_text(label, exact=True).click()
        try:
            expect(option).to_be_checked(timeout=SLOW // 3)
        except AssertionError:
            continue
        idle(page)
        return
    raise AssertionError(f"the {role} {label!r} was never chosen")


def upload_and_create(page: Page, shot: Shots) -> None:
    # .first: during the sign-in rerun the page can hold the old copy and the new for a moment
    expect(page.get_by_text("Choose a CSV file.").first).to_be_visible(timeout=SLOW)
    shot(page, "signed-in")

    # The rules inferred from the file fit every cell; the editor asks for Qty >= 0, typing 0
    # into Qty's "Min" in the rules grid (label, type, date format, decimal places, required,
    # unique, min): bob's -5 breaks it.
    choose_file(page, "stock.csv", BAD)
    expect(page.get_by_text("All 4 rows are valid.")).to_be_visible(timeout=SLOW)
    shot(page, "rules-inferred")
    rules = page.locator(GRID).first
    broken = page.get_by_text(
        re.compile(r"^1 cells? breaks? the rules, so nothing has been stored")
    )

    def qty_min_zero(done: Callable[[], None]) -> None:
        """Type 0 into Qty's "Min" in the rules grid (Min is the sixth column after Label)."""
        edit_cell(
            page,
            rules,
            row=1,
            anchor="Qty",
            right=6,
            kind="text",
            before="",
            value="0",
            x=SPEC_X,
            column=0,
            done=done,
        )

    qty_min_zero(lambda: expect(broken).to_be_visible(timeout=SLOW))
    expect(page.get_by_role("button", name="Create the dataset")).to_have_count(0)
    shot(page, "error-report")
    report = rows_of(download_button(page, "Download the error report (CSV)"))
    idle(page)
    assert report[0] == ["line", "column", "value", "rule", "problem"]
    assert len(report) == 2, report
    assert report[1][:4] == ["3", "Qty", "-5", "min"], report  # line 3; a number, no quote
    annotated = rows_of(download_button(page, "Download the file with an errors column"))
    idle(page)
    assert annotated[0] == ["Name", "Qty", "Price", "Note", "errors"]
    assert annotated[2][:4] == ["bob", "-5", "2.00", ""], annotated
    assert "below the minimum 0" in annotated[2][4], annotated
    assert [row[4] for row in annotated[1:] if row[0] != "bob"] == ["", "", ""], annotated

    # The fixed file: its rules are inferred afresh, so Qty >= 0 is asked for again; the rules
    # grid's own CSV shows it took.
    choose_file(page, "stock.csv", GOOD)
    expect(page.get_by_text("All 4 rows are valid.")).to_be_visible(timeout=SLOW)
    expect(broken).to_have_count(0)

    def min_is_zero() -> None:
        shown = grid_cells(page, page.locator(TABLES).first)
        qty = dict(zip(shown[0], shown[2], strict=True))
        assert (qty.get("Label"), qty.get("Min")) == ("Qty", "0"), shown

    qty_min_zero(min_is_zero)
    expect(page.get_by_text("All 4 rows are valid.")).to_be_visible(timeout=SLOW)
    shot(page, "rules-confirmed")

    page.get_by_role("textbox", name="Dataset name").fill(NAME)
    page.get_by_role("textbox", name="Reason (kept in the audit log)").fill("first load")
    idle(page)
    page.get_by_role("button", name="Create the dataset").click()
    expect(page.get_by_text(f"4 rows loaded into “{NAME}” (changeset #1).")).to_be_visible(
        timeout=SLOW
    )
    shot(page, "created")


def open_in_edit(page: Page) -> None:
    """From the sidebar (this browser session, no cookie needed) to the Edit page's grid."""
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name="Edit", exact=True)
    heading = page.get_by_role("heading", name="Edit", exact=True)
    click_until_visible(page, link, heading)
    idle(page)
    choose(page, "Dataset", NAME)
    expect(page.get_by_text("Rows 1–4 of 4").first).to_be_visible(timeout=SLOW)
    idle(page)


def edit_in_the_grid(page: Page, shot: Shots) -> None:
    grid = page.locator(GRID).first
    shot(page, "edit-grid")

    # A cell: ann's Qty 1 -> 7 (click "Row id" of row 1, two cells right, Enter, type, Enter).
    edit_cell(
        page,
        grid,
        row=0,
        anchor="1",
        right=2,
        kind="text",
        before="1",
        value="7",
        done=lambda: expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW),
    )
    shot(page, "cell-changed")

    # A row: the toolbar's "Add row" appends an empty one (the grid then shows five rows).
    # Name and Qty are required: with only the name typed, the half-filled row reaches the
    # server (the grid is not told the rule, or it would keep the row out of the review
    # without a word), which names the empty cell.
    problems = page.get_by_text(re.compile(r"^\d+ of your edits? breaks? the dataset's rules"))
    container = page.locator(TABLES).first

    def name_typed_qty_asked_for(row_id: str = "") -> None:
        shown = grid_cells(page, container)
        assert shown[5] == [row_id, "eve", "", "", ""], shown
        expect(problems).to_have_text(re.compile(r"^1 of your edits breaks"), timeout=SLOW)
        assert grid_cells(page, page.locator(TABLES).nth(1)) == [
            ["Where", "Column", "Value", "Problem"],
            ["new row 1", "Qty", "", "A value is required here: fill it in."],
        ]

    for _ in range(ATTEMPTS):
        idle(page)
        if len(grid_cells(page, container)) == 1 + 5:
            break
        container.hover()
        page.get_by_role("button", name="Add row").click()
    assert len(grid_cells(page, container)) == 1 + 5
    shot(page, "row-added-empty")
    edit_cell(
        page,
        grid,
        row=0,
        anchor="1",
        right=1,
        down=4,
        kind="text",
        before="",
        value="eve",
        done=name_typed_qty_asked_for,
    )
    shot(page, "row-half-filled")
    # Leaving the page with the row half filled (a rule broken) lost the row: it comes back
    # with the other edits, numbered as a new row kept from before, still asking for its Qty.
    nav = page.get_by_test_id("stSidebarNav")
    nav.get_by_role("link", name="History", exact=True).click()
    expect(page.get_by_role("heading", name="History")).to_be_visible(timeout=SLOW)
    idle(page)
    nav.get_by_role("link", name="Edit", exact=True).click()
    expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW)
    name_typed_qty_asked_for("-1")
    expect(page.get_by_text("could not be kept")).to_have_count(0)
    shot(page, "row-half-filled-kept")
    edit_cell(
        page,
        grid,
        row=0,
        anchor="1",
        right=2,
        down=4,
        kind="text",
        before="",
        value="5",
        done=lambda: expect(metric(page, "Rows added")).to_have_text("1", timeout=SLOW),
    )
    expect(problems).to_have_count(0)
    shot(page, "row-added")

    # A row deleted: tick bob's row-selection checkbox with the mouse, press Delete (the
    # toolbar's "Delete row(s)" if the key went elsewhere).
    select_row(page, grid, 1)
    shot(page, "row-selected")
    page.keyboard.press("Delete")
    deleted = metric(page, "Rows deleted")
    try:
        expect(deleted).to_have_text("1", timeout=SLOW // 2)
    except AssertionError:
        select_row(page, grid, 1)
        page.get_by_role("button", name="Delete row(s)").click()
        expect(deleted).to_have_text("1", timeout=SLOW)
    idle(page)
    shot(page, "row-deleted")


def review_and_commit(page: Page, shot: Shots) -> None:
    for label, shown in (
        ("Cells changed", "1"),
        ("Rows changed", "1"),
        ("Rows added", "1"),
        ("Rows deleted", "1"),
    ):
        expect(metric(page, label)).to_have_text(shown, timeout=SLOW)
    tables = page.locator(TABLES)
    expect(tables).to_have_count(4, timeout=SLOW)  # the grid, then the three review tables
    assert grid_cells(page, tables.nth(1)) == [
        ["Row id", "Column", "Before", "After"],
        ["1", "Qty", "1", "7"],
    ]
    assert grid_cells(page, tables.nth(2)) == [
        ["Name", "Qty", "Price", "Note"],
        ["eve", "5", "", ""],
    ]
    assert grid_cells(page, tables.nth(3)) == [
        ["Row id", "Name", "Qty", "Price", "Note"],
        ["2", "bob", "2", "2.00", ""],
    ]
    page.get_by_role("heading", name="Review").scroll_into_view_if_needed()
    shot(page, "review")

    commit_with_reason(page, REASON)
    expect(
        page.get_by_role("dialog").get_by_text(
            "1 cell in 1 row changed, 1 row added, 1 row deleted."
        )
    ).to_be_visible()
    shot(page, "confirm-dialog")
    confirm_commit(page)
    expect(page.locator('[data-testid="stAlertContentSuccess"]')).to_contain_text(
        "1 cell in 1 row changed, 1 row added, 1 row deleted"
    )
    idle(page)
    shot(page, "committed")


def see_it_on_the_audit_page(page: Page, shot: Shots, base: str, password: str, seq: int) -> None:
    page.goto(base + "/audit")
    sign_in_here(page, "boss", password)
    expect(page.get_by_role("heading", name="Audit", exact=True)).to_be_visible(timeout=SLOW)
    expect(page.get_by_text(re.compile("^Chain heads: changeset #"))).to_be_visible(timeout=SLOW)
    idle(page)
    shot(page, "audit")
    choose(page, "Open a changeset", f"#{seq} · Edit · {NAME} · Eddie Editor")
    expect(page.get_by_role("heading", name=f"Changeset #{seq}")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text(f"Reason: {REASON}")).to_be_visible(timeout=SLOW)
    expect(page.get_by_text("1 inserted · 1 updated · 1 deleted")).to_be_visible()
    idle(page)
    rows = page.locator(TABLES).nth(1)  # the trail, then the changeset's rows
    pick_radio(page, "Updated (1)")
    shown = grid_cells(page, rows)
    assert [row[:3] for row in shown] == [
        ["Row id", "State", "Qty"],
        ["1", "before", "1"],
        ["1", "after", "7"],
    ], shown
    shot(page, "audit-updated")
    pick_radio(page, "Inserted (1)")
    shown = grid_cells(page, rows)
    assert len(shown) == 2, shown
    assert {"eve", "5"} <= set(shown[1]), shown
    shot(page, "audit-inserted")
    pick_radio(page, "Deleted (1)")
    shown = grid_cells(page, rows)
    assert len(shown) == 2, shown
    assert {"bob", "2"} <= set(shown[1]), shown
    shot(page, "audit-deleted")


def test_upload_edit_commit_and_audit_in_the_browser(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    shot = Shots(request.node.name)
    with Session(portal_server.db.app) as s, s.begin():
        _, password = make_user(s, username="eddie", role="editor", display_name="Eddie Editor")

    editor = browser.new_context()
    editor.set_default_timeout(SLOW)
    try:
        page = editor.new_page()
        page.add_init_script("delete window.showSaveFilePicker")
        page.goto(proxied + "/upload")
        sign_in_here(page, "eddie", password)
        upload_and_create(page, shot)
        with portal_server.db.owner.connect() as conn:
            dataset_id, spec = conn.execute(
                text("SELECT id, spec FROM portal.datasets WHERE name = :n"), {"n": NAME}
            ).one()
        qty = DatasetSpec.from_json(spec).columns[1]
        assert (qty.label, qty.type, qty.min) == ("Qty", "integer", Decimal(0))
        assert table_rows(portal_server, dataset_id) == [
            (1, "ann", 1, "first"),
            (2, "bob", 2, None),
            (3, "cy", 3, "third"),
            (4, "dee", 4, None),
        ]
        open_in_edit(page)
        edit_in_the_grid(page, shot)
        review_and_commit(page, shot)
    except (AssertionError, PlaywrightTimeout):
        shot(page, "failed")
        raise
    finally:
        editor.close()

    # Exactly the change, in the table and in the audit log.
    assert table_rows(portal_server, dataset_id) == [
        (1, "ann", 7, "first"),
        (3, "cy", 3, "third"),
        (4, "dee", 4, None),
        (5, "eve", 5, None),
    ]
    with portal_server.db.owner.connect() as conn:
        changesets = conn.execute(
            text(
                "SELECT id, seq, kind, actor_username, actor_display_name, reason"
                " FROM audit.changeset ORDER BY seq"
            )
        ).all()
        assert [tuple(c)[2:] for c in changesets] == [
            ("upload", "eddie", "Eddie Editor", "first load"),
            ("edit", "eddie", "Eddie Editor", REASON),
        ]
        edit_id, seq = changesets[1][0], changesets[1][1]
        changes = conn.execute(
            text(
                "SELECT row_id, op, before, after FROM audit.row_change"
                " WHERE changeset_id = :c ORDER BY op, row_id"
            ),
            {"c": edit_id},
        ).all()
    assert [tuple(c) for c in changes] == [
        (2, "delete", {"name": "bob", "qty": 2, "price": 2.0, "note": None}, None),
        (5, "insert", None, {"name": "eve", "qty": 5, "price": None, "note": None}),
        (1, "update", {"qty": 1}, {"qty": 7}),
    ]

    admin = browser.new_context()
    admin.set_default_timeout(SLOW)
    try:
        page = admin.new_page()
        page.add_init_script("delete window.showSaveFilePicker")
        see_it_on_the_audit_page(page, shot, proxied, portal_server.users["boss"], seq)
    except (AssertionError, PlaywrightTimeout):
        shot(page, "failed")
        raise
    finally:
        admin.close()
