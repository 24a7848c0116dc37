"""The Edit page's grid in a real browser through the real nginx: an editor pastes a block from
the clipboard and types into cells with the keyboard; a pasted value that breaks a rule is
refused per cell and nothing is written until it is corrected; the corrected edit is reviewed
and committed with a reason, and lands in the table and the audit log exactly. A viewer gets the
same grid read-only: typing and pasting change nothing, there is no commit, nothing is written.

The helpers here (``idle``, ``edit_cell``, ``select_row``, ``grid_cells``, ``metric``,
``Shots``) drive the canvas-drawn Glide grid; the journey test uses them too.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import text

from portal.actor import Actor
from portal.spec import ColumnSpec, DatasetSpec
from tests.db.test_writes import CSV, SPEC
from tests.e2e.conftest import ROOT, PortalServer, choose
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form
from tests.factories import add_column, dataset_rows, upload_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SLOW = 15_000  # ms, per expectation: a rerun on a loaded 2-core machine can take seconds
STATUS = '[data-testid="stStatusWidget"]'
GRID = '[data-testid="stDataFrameResizable"]'
CELL_EDITOR = "#portal input, #portal textarea"  # Glide's overlay editor, over the canvas
HEADER_H = ROW_H = 35  # px, Streamlit's grid header and row heights
ROW_ID_X = 65  # px into the Edit grid: past the row-selection column, inside "Row id"
MARKER_X = 15  # px into the Edit grid: the row-selection checkbox column
ATTEMPTS = 4


# -- helpers for the grid ------------------------------------------------------------------------


class Shots:
    """Numbered screenshots under ``test-artifacts/e2e/<test name>/`` (git-ignored)."""

    def __init__(self, test_name: str) -> None:
        self.dir = ROOT / "test-artifacts" / "e2e" / re.sub(r"[^\w.-]+", "_", test_name)
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.png"):
            old.unlink()
        self.n = 0

    def __call__(self, page: Page, step: str) -> None:
        self.n += 1
        page.screenshot(path=str(self.dir / f"{self.n:02d}-{step}.png"))


def idle(page: Page) -> None:
    """Wait until no run is in flight (the status widget shows while the script runs)."""
    page.wait_for_timeout(200)  # a click's rerun shows the widget only after a moment
    page.locator(STATUS).wait_for(state="hidden", timeout=SLOW)


def cell_y(grid_box: dict[str, float], row: int) -> float:
    return grid_box["y"] + HEADER_H + ROW_H * row + ROW_H / 2


def grid_box(grid: Locator) -> dict[str, float]:
    """Where the grid is once scrolled into view: read until two reads 50 ms apart agree (the
    page may still be scrolling, and a click at a box read mid-scroll lands beside the cell
    meant)."""
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    for _ in range(40):
        grid.page.wait_for_timeout(50)
        again = grid.bounding_box()
        if again == box:
            break
        box = again
    assert box is not None, "the grid is not on the page"
    return box


def open_editor(
    page: Page, row_y: float, *, shows: tuple[str, ...], tag: str | None = None
) -> Locator:
    """Enter on the selected cell; its editor (an input or textarea over the canvas) must sit on
    the row at ``row_y``, be a ``tag`` and show one of ``shows``, or the keys went to another
    cell (raises AssertionError, or PlaywrightTimeout when no editor opened)."""
    page.keyboard.press("Enter")
    editor = page.locator(CELL_EDITOR).first
    editor.wait_for(state="visible", timeout=SLOW // 5)
    where = editor.bounding_box()
    if where is None or abs(where["y"] + where["height"] / 2 - row_y) > ROW_H / 3:
        raise AssertionError(f"the editor opened on another row: {where}")
    opened = editor.evaluate("e => e.tagName.toLowerCase()")
    if tag is not None and opened != tag:
        raise AssertionError(f"the editor is a {opened}, not a {tag}: another column")
    if editor.input_value() not in shows:
        raise AssertionError(f"the editor shows {editor.input_value()!r}, not one of {shows}")
    return editor


def check_cell(page: Page, row_y: float, *, shows: tuple[str, ...]) -> None:
    """The selected cell is the one meant: its editor opens on the row at ``row_y`` showing one
    of ``shows`` (``open_editor``); close it and give the grid the keys back."""
    open_editor(page, row_y, shows=shows)
    page.keyboard.press("Escape")
    page.locator(CELL_EDITOR).first.wait_for(state="hidden", timeout=SLOW // 3)
    page.wait_for_timeout(100)  # the grid takes the keys back


def selected(grid: Locator, column: int, row: int) -> None:
    """Wait until the grid reports the cell at ``column``, ``row`` selected (0-based; the Edit
    grid's row-selection column is column 0), from the accessible table it keeps beside its
    canvas (a moment behind the keys); raise AssertionError if it reports another. Checked
    before each Enter: on the "add a row" line under the last row, Enter would add a row."""
    cell = grid.locator(f'td#glide-cell-{column}-{row}[aria-selected="true"]')
    try:
        cell.wait_for(state="attached", timeout=SLOW // 5)
    except PlaywrightTimeout:
        shown = grid.locator('td[aria-selected="true"]').evaluate_all("cs => cs.map(c => c.id)")
        raise AssertionError(f"cell {column}, {row} is not selected; selected: {shown}") from None


def missed(page: Page, what: str, attempt: int, exc: Exception) -> None:
    """After a failed attempt at ``what``: keep a screenshot of it (``test-artifacts/e2e/
    missed/``); re-raise on the last one, else close any cell editor left open so the next
    attempt starts clean."""
    print(f"{what}: attempt {attempt + 1} missed: {str(exc)[:300]}")
    missed_dir = ROOT / "test-artifacts" / "e2e" / "missed"
    missed_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", f"{time.strftime('%H%M%S')}-{what}-{attempt + 1}")
    page.screenshot(path=str(missed_dir / f"{name}.png"), full_page=True)
    print(
        "tables shown:",
        page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=\"stDataFrame\"] table')].map("
            "t => [...t.querySelectorAll('tr')].map("
            "r => [...r.querySelectorAll('th, td')].map(c => c.textContent).join(' | ')))"
        ),
    )
    if attempt == ATTEMPTS - 1:
        raise exc
    if page.locator(CELL_EDITOR).first.is_visible():
        page.keyboard.press("Escape")


def edit_cell(
    page: Page,
    grid: Locator,
    *,
    row: int,
    anchor: str,
    right: int,
    down: int = 0,
    kind: str,
    before: str,
    value: str,
    done: Callable[[], None],
    x: float = ROW_ID_X,
    column: int = 1,
) -> None:
    """Type ``value`` into a cell with the mouse and keyboard.

    Click the cell ``x`` px into the grid on ``row`` (0 = the first data row), the grid's
    ``column`` (``selected``: the Edit grid's "Row id" is 1), and check it is the one meant:
    Enter opens its editor, which must show ``anchor`` (Escape closes it). Then walk ``right``
    and ``down`` cells with the arrow keys; once the grid reports that cell selected, Enter
    opens its editor, which must be on the row expected, of the column's ``kind`` ("text": a
    textarea, "number": an input) and show ``before``; type; Tab (unlike Enter, it never walks
    into the grid's "add a row" line under the last row). A click a rerun redrew the grid
    under, or that only gave the grid focus, is found out before any Enter and tried again.
    ``done`` expects what the edit should show (it raises when not seen); a retry finding
    ``value`` typed already just checks again."""
    tag = {"text": "textarea", "number": "input"}[kind]
    for attempt in range(ATTEMPTS):
        idle(page)
        box = grid_box(grid)
        try:
            # Hover first: after a download the grid took the first click without selecting
            # the cell under it (every time), as if it had not seen the pointer arrive.
            page.mouse.move(box["x"] + x, cell_y(box, row))
            page.wait_for_timeout(100)
            page.mouse.click(box["x"] + x, cell_y(box, row))
            selected(grid, column, row)
            check_cell(page, cell_y(box, row), shows=(anchor,))
            for _ in range(right):
                page.keyboard.press("ArrowRight")
            for _ in range(down):
                page.keyboard.press("ArrowDown")
            selected(grid, column + right, row + down)
            target_y = cell_y(box, row + down)
            editor = open_editor(page, target_y, shows=(before, value), tag=tag)
            if editor.input_value() == value != before:  # typed by an earlier attempt
                page.keyboard.press("Escape")
                done()
                return
            editor.fill(value)
            editor.press("Tab")
            idle(page)
            done()
        except (PlaywrightTimeout, AssertionError) as exc:
            missed(page, f"edit_cell {value!r}", attempt, exc)
            continue
        return


def select_row(page: Page, grid: Locator, row: int) -> None:
    """Tick a row's checkbox in the row-selection column with the mouse (once: a second click
    would untick it), until the toolbar offers "Delete row(s)"."""
    delete = page.get_by_role("button", name="Delete row(s)")
    for _ in range(ATTEMPTS):
        idle(page)
        box = grid_box(grid)
        page.mouse.move(box["x"] + MARKER_X, cell_y(box, row))
        if not delete.is_visible():
            page.mouse.click(box["x"] + MARKER_X, cell_y(box, row))
        try:
            expect(delete).to_be_visible(timeout=SLOW // 3)
        except AssertionError:
            continue
        return
    raise AssertionError(f"row {row} could not be selected")


def grid_cells(page: Page, grid: Locator) -> list[list[str]]:
    """What a canvas-drawn grid shows: its header, then each row's cells as displayed, read from
    the accessible table the grid keeps beside its canvas (the grids offer no download of their
    own: ``client.disableDataExport``). ``grid`` is the ``stDataFrame`` element; the table
    holds the rows drawn, so a grid read whole must fit its frame.

    Read until two reads a second apart agree: after a rerun the table can show the rows it
    had before for a moment."""
    idle(page)
    grid.evaluate("e => e.scrollIntoView({block: 'center'})")
    table = grid.locator("table").first
    table.wait_for(state="attached", timeout=SLOW)

    def read() -> list[list[str]]:
        rows: list[list[str]] = table.evaluate(
            "t => [...t.querySelectorAll('tr')].map("
            "r => [...r.querySelectorAll('th, td')].map(c => c.textContent))"
        )
        return rows

    shown, deadline = read(), time.monotonic() + SLOW / 1000
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        again = read()
        if again == shown:
            break
        shown = again
    return shown


def metric(page: Page, label: str) -> Locator:
    return (
        page.locator('[data-testid="stMetric"]')
        .filter(has=page.get_by_text(label, exact=True))
        .locator('[data-testid="stMetricValue"]')
    )


def download_button(page: Page, name: str) -> str:
    """Click a ``st.download_button`` and return the file's text (BOM dropped)."""
    with page.expect_download(timeout=SLOW) as download:
        page.get_by_role("button", name=name).click()
    return Path(download.value.path()).read_text("utf-8-sig")


def click_until_visible(page: Page, target: Locator, shown: Locator) -> None:
    """Click ``target`` once the app is idle until ``shown`` appears: a rerun still in flight
    may swallow a click."""
    for _ in range(ATTEMPTS):
        idle(page)
        target.click()
        try:
            expect(shown).to_be_visible(timeout=SLOW // 3)
        except AssertionError:
            continue
        return
    expect(shown).to_be_visible(timeout=SLOW)


def commit_with_reason(page: Page, reason: str) -> None:
    """Give the reason, open the confirm dialog, Commit; wait for the success message. The
    reason is typed and the button clicked at once, as a person does: the click that makes the
    field send what was typed is not lost (the button does not wait for a reason)."""
    idle(page)
    page.get_by_label("Reason (required)").fill(reason)
    page.get_by_role("button", name="Review and commit…").click()  # once
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Reason: {reason}")).to_be_visible(timeout=SLOW)


def confirm_commit(page: Page) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Commit").click()
    done = page.locator('[data-testid="stAlertContentSuccess"]')
    expect(done).to_contain_text("Committed as changeset", timeout=SLOW)


def sign_in_here(page: Page, username: str, password: str) -> None:
    """Sign in on the form the page shows, again if a run still in flight swallowed the click.
    (Not waiting for the cookie: later steps stay in this browser session.)"""
    signed_in = page.get_by_text("Signed in as")
    for attempt in range(ATTEMPTS):
        sign_in_form(page)
        idle(page)
        sign_in(page, username, password)
        try:
            expect(signed_in).to_be_visible(timeout=SLOW)
        except AssertionError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        idle(page)
        return


def open_edit(page: Page, base: str, dataset_id: int, username: str, password: str) -> Locator:
    """Sign in on the Edit page of a dataset; the grid, once its first run is over."""
    page.goto(f"{base}/edit?dataset={dataset_id}")
    sign_in_here(page, username, password)
    expect(page.get_by_text("Rows 1–4 of 4").first).to_be_visible(timeout=SLOW)
    idle(page)
    grid = page.locator(GRID).first
    expect(grid).to_be_visible(timeout=SLOW)
    return grid


def table_rows(server: PortalServer, dataset_id: int) -> list[tuple[object, ...]]:
    return dataset_rows(server.db.owner, dataset_id, "_row_id, name, qty, note")


def edit_changes(server: PortalServer) -> list[tuple[object, ...]]:
    """Every row change of every ``edit`` changeset, with its actor and reason."""
    with server.db.owner.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT c.actor_username, c.reason, r.row_id, r.op, r.before, r.after"
                    " FROM audit.row_change r JOIN audit.changeset c ON c.id = r.changeset_id"
                    " WHERE c.kind = 'edit' ORDER BY r.id"
                )
            )
        ]


PEOPLE_ROWS = [
    (1, "ann", 1, "first"),
    (2, "bob", 2, None),
    (3, "cy", 3, "third"),
    (4, "dee", 4, None),
]


# -- the tests -----------------------------------------------------------------------------------


def test_an_editor_pastes_and_types_in_the_grid_and_a_broken_rule_is_refused_per_cell(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    shot = Shots(request.node.name)
    dataset_id = upload_dataset(Actor("boss", "Boss", "admin"), CSV, spec=SPEC, name="People")
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()
        page.add_init_script("delete window.showSaveFilePicker")
        grid = open_edit(page, proxied, dataset_id, "boss", portal_server.users["boss"])
        shot(page, "grid")

        # A block of two rows, as a spreadsheet puts it on the clipboard, pasted over Name and
        # Qty of rows 1 and 2: "cy" is already row 3's name (Name is unique, which only the
        # server can check); "1,5" is no whole number (a number cell made it 15 without a word:
        # number columns are text to the grid, read by the server); -3 is below Qty's minimum
        # 0, which the grid is not told (it would drop the value without a word): the server
        # refuses each, saying why.
        problems = page.get_by_text(re.compile("of your edits breaks? the dataset's rules"))
        for attempt in range(ATTEMPTS):
            idle(page)
            page.evaluate("t => navigator.clipboard.writeText(t)", "cy\t1,5\nbob\t-3")
            box = grid_box(grid)
            try:
                # Onto row 1's Name, each step seen in the cell's editor before the paste: on
                # a loaded machine a key pressed right after the click can go nowhere, and the
                # block then lands a column to the left.
                page.mouse.click(box["x"] + ROW_ID_X, cell_y(box, 0))
                check_cell(page, cell_y(box, 0), shows=("1",))
                page.keyboard.press("ArrowRight")
                check_cell(page, cell_y(box, 0), shows=("ann", "cy"))
                page.keyboard.press("Control+V")
                expect(problems).to_be_visible(timeout=SLOW // 2)
            except (PlaywrightTimeout, AssertionError) as exc:
                missed(page, "paste", attempt, exc)
                continue
            break
        idle(page)
        expect(page.get_by_text("3 of your edits break the dataset's rules")).to_be_visible()
        expect(page.get_by_role("button", name="Review and commit…")).to_have_count(0)
        shot(page, "pasted-problem")
        report = list(csv.reader(io.StringIO(download_button(page, "Download the problems (CSV)"))))
        idle(page)
        assert report[0] == ["Where", "Column", "Value", "Problem"]
        assert len(report) == 4, report
        by_value = {value: (where, column, problem) for where, column, value, problem in report[1:]}
        where, column, problem = by_value["cy"]
        # The clash is on the cell pasted into (row 1), naming the row that holds the name.
        assert column == "Name", report
        assert (where, re.sub(r".*already in (row \d+).*", r"\1", problem)) == ("row 1", "row 3")
        assert "must be unique" in problem, report
        where, column, problem = by_value["-3"]  # a plain number: no formula, no quote
        assert (where, column) == ("row 2", "Qty"), report
        assert "below the minimum 0" in problem, report
        where, column, problem = by_value["1,5"]
        assert (where, column) == ("row 1", "Qty"), report
        assert "is not a whole number" in problem, report
        assert table_rows(portal_server, dataset_id) == PEOPLE_ROWS
        assert edit_changes(portal_server) == []

        # Correct the refused cells with the keyboard: each problem goes, and the review shows
        # exactly the three cells changed.
        edit_cell(
            page,
            grid,
            row=0,
            anchor="1",
            right=2,
            kind="text",
            before="1,5",
            value="10",
            done=lambda: expect(
                page.get_by_text("2 of your edits break the dataset's rules")
            ).to_be_visible(timeout=SLOW),
        )
        edit_cell(
            page,
            grid,
            row=0,
            anchor="1",
            right=1,
            kind="text",
            before="cy",
            value="zoe",
            done=lambda: expect(
                page.get_by_text("1 of your edits breaks the dataset's rules")
            ).to_be_visible(timeout=SLOW),
        )
        edit_cell(
            page,
            grid,
            row=1,
            anchor="2",
            right=2,
            kind="text",
            before="-3",
            value="5",
            done=lambda: expect(metric(page, "Cells changed")).to_have_text("3", timeout=SLOW),
        )
        expect(problems).to_have_count(0)
        expect(metric(page, "Rows changed")).to_have_text("2")
        expect(metric(page, "Rows added")).to_have_text("0")
        expect(metric(page, "Rows deleted")).to_have_text("0")
        review = page.locator('[data-testid="stDataFrame"]').last
        assert grid_cells(page, review) == [
            ["Row id", "Column", "Before", "After"],
            ["1", "Name", "ann", "zoe"],
            ["1", "Qty", "1", "10"],
            ["2", "Qty", "2", "5"],
        ]
        shot(page, "review")

        commit_with_reason(page, "renamed from a spreadsheet")
        shot(page, "confirm")
        confirm_commit(page)
        shot(page, "committed")
    finally:
        context.close()

    assert table_rows(portal_server, dataset_id) == [
        (1, "zoe", 10, "first"),
        (2, "bob", 5, None),
        *PEOPLE_ROWS[2:],
    ]
    assert edit_changes(portal_server) == [
        (
            "boss",
            "renamed from a spreadsheet",
            1,
            "update",
            {"name": "ann", "qty": 1},
            {"name": "zoe", "qty": 10},
        ),
        ("boss", "renamed from a spreadsheet", 2, "update", {"qty": 2}, {"qty": 5}),
    ]


def test_a_viewer_s_browser_cannot_change_or_commit(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    shot = Shots(request.node.name)
    dataset_id = upload_dataset(Actor("boss", "Boss", "admin"), CSV, spec=SPEC, name="People")
    context: BrowserContext = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()
        page.add_init_script("delete window.showSaveFilePicker")
        grid = open_edit(page, proxied, dataset_id, "vee", portal_server.users["vee"])
        read_only = page.get_by_text("You can view this dataset; editors and admins can change")
        expect(read_only).to_have_count(1)  # a rerun may show a stale copy for a moment
        expect(read_only).to_be_visible()
        shot(page, "read-only-grid")

        # Type into Qty of the first row: Enter opens no editor, the keys go nowhere. (No
        # row-selection column in a fixed grid: "Row id" is the first.)
        box = grid_box(grid)
        page.mouse.click(box["x"] + 20, cell_y(box, 0))
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        page.wait_for_timeout(500)
        overlay = page.locator(CELL_EDITOR)
        if overlay.count():  # Glide shows a read-only cell's value in a disabled input
            expect(overlay.first).to_be_disabled()
            # Row 1's Qty, or its Name or Row id when a key pressed right after the click went
            # nowhere (seen on a loaded machine): read-only whichever cell it is.
            expect(overlay.first).to_have_value(re.compile(r"^(1|ann)$"))
        page.keyboard.type("42")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        # Paste a block over Name and Qty, and try the Delete key on a cell.
        page.evaluate("t => navigator.clipboard.writeText(t)", "mallory\t99")
        page.mouse.click(box["x"] + 20, cell_y(box, 1))
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Control+V")
        page.keyboard.press("Delete")
        idle(page)
        grid.hover()
        expect(page.get_by_role("button", name="Add row")).to_have_count(0)
        expect(page.get_by_role("button", name="Delete row(s)")).to_have_count(0)
        expect(page.get_by_role("heading", name="Review")).to_have_count(0)
        expect(page.get_by_role("button", name="Review and commit…")).to_have_count(0)
        expect(page.get_by_text("break the dataset's rules")).to_have_count(0)
        shot(page, "after-typing-and-pasting")
        shown = grid_cells(page, page.locator('[data-testid="stDataFrame"]').first)
        assert [row[:3] for row in shown[1:]] == [
            [str(i), name, str(qty)] for i, name, qty, _ in PEOPLE_ROWS
        ]
    finally:
        context.close()

    assert table_rows(portal_server, dataset_id) == PEOPLE_ROWS
    assert edit_changes(portal_server) == []
    with portal_server.db.owner.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 1  # the upload


LONG_SPEC = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text", required=True),
        ColumnSpec("Big", "big", "integer"),
        ColumnSpec("Rate", "rate", "decimal"),
    )
)
LONG_CSV = b"Name,Big,Rate\nann,9223372036854775807,1\nbob,-3,2\ncy,5,3\ndee,6,4\n"


def test_long_numbers_are_shown_typed_and_kept_exactly(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    """A browser holds numbers as 64-bit floats: a number cell showed 9223372036854775807
    rounded, and sent 0.12345678901234567 typed into it as 0.12345678901234566. Number columns
    are text to the grid: every digit is shown, and what is typed is stored as typed."""
    shot = Shots(request.node.name)
    dataset_id = upload_dataset(
        Actor("boss", "Boss", "admin"), LONG_CSV, spec=LONG_SPEC, name="Long numbers"
    )
    context = browser.new_context()
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()
        page.add_init_script("delete window.showSaveFilePicker")
        grid = open_edit(page, proxied, dataset_id, "boss", portal_server.users["boss"])
        shown = grid_cells(page, page.locator('[data-testid="stDataFrame"]').first)
        assert [row[1:3] for row in shown[1:3]] == [["ann", "9223372036854775807"], ["bob", "-3"]]
        shot(page, "grid")

        edit_cell(
            page,
            grid,
            row=1,
            anchor="2",
            right=3,
            kind="text",
            before="2",
            value="0.12345678901234567",
            done=lambda: expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW),
        )
        edit_cell(
            page,
            grid,
            row=1,
            anchor="2",
            right=2,
            kind="text",
            before="-3",
            value="9007199254740993",
            done=lambda: expect(metric(page, "Cells changed")).to_have_text("2", timeout=SLOW),
        )
        review = page.locator('[data-testid="stDataFrame"]').last
        assert grid_cells(page, review) == [
            ["Row id", "Column", "Before", "After"],
            ["2", "Big", "-3", "9007199254740993"],
            ["2", "Rate", "2", "0.12345678901234567"],
        ]
        commit_with_reason(page, "exact")
        confirm_commit(page)
        shot(page, "committed")
    finally:
        context.close()

    rows = dataset_rows(portal_server.db.owner, dataset_id, "_row_id, name, big, rate")
    assert rows[:2] == [
        (1, "ann", 9223372036854775807, Decimal(1)),
        (2, "bob", 9007199254740993, Decimal("0.12345678901234567")),
    ]


def reload_asks(page: Page) -> bool:
    """Reload the page; whether the browser asked first ("Leave site?"), which is then
    dismissed (the page stays, as a person who chose to stay sees it)."""
    asked: list[str] = []

    def stay(dialog: Any) -> None:
        asked.append(dialog.type)
        dialog.dismiss()

    page.once("dialog", stay)
    with contextlib.suppress(PlaywrightTimeout):  # a dismissed dialog cancels the reload
        page.reload(timeout=3_000)
    if not asked:
        page.remove_listener("dialog", stay)
    return asked == ["beforeunload"]


def test_a_reload_with_unsaved_edits_asks_first(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    """Unsaved edits live in the session, which a reload or a closed tab ends: they went
    without a word. The browser now asks first while there are any, and not once they are
    committed."""
    shot = Shots(request.node.name)
    dataset_id = upload_dataset(Actor("boss", "Boss", "admin"), CSV, spec=SPEC, name="People")
    context = browser.new_context()
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()
        grid = open_edit(page, proxied, dataset_id, "boss", portal_server.users["boss"])
        assert not reload_asks(page)  # nothing unsaved: reloads as ever
        expect(page.get_by_text("Rows 1–4 of 4").first).to_be_visible(timeout=SLOW)
        edit_cell(
            page,
            grid,
            row=0,
            anchor="1",
            right=1,
            kind="text",
            before="ann",
            value="zoe",
            done=lambda: expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW),
        )
        assert reload_asks(page)
        expect(metric(page, "Cells changed")).to_have_text("1")  # stayed: the edit is there
        shot(page, "stayed")
        commit_with_reason(page, "renamed")
        confirm_commit(page)
        idle(page)
        edit_cell(  # the next edit, in the same session: its reason field starts empty
            page,
            grid,
            row=1,
            anchor="2",
            right=1,
            kind="text",
            before="bob",
            value="bo",
            done=lambda: expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW),
        )
        expect(page.get_by_label("Reason (required)")).to_have_value("")
        commit_with_reason(page, "shortened")
        confirm_commit(page)
        idle(page)
        assert not reload_asks(page)
    finally:
        context.close()


def test_an_applied_filter_s_fields_start_afresh_and_it_is_not_added_twice(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    """The fields kept what was typed after Apply in the browser (dropping their state on the
    server left them filled), so the next Apply, of another sort say, added the same filter
    again. They are now emptied, and an Apply of a filter already there adds nothing."""
    shot = Shots(request.node.name)
    dataset_id = upload_dataset(Actor("boss", "Boss", "admin"), CSV, spec=SPEC, name="People")
    context = browser.new_context()
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()
        open_edit(page, proxied, dataset_id, "boss", portal_server.users["boss"])
        page.get_by_text("Filter and sort").click()
        choose(page, "Column", "Qty")
        choose(page, "Match", "equals")
        page.get_by_label("Value (or from)").fill("2")
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_text("Rows 1–1 of 1").first).to_be_visible(timeout=SLOW)
        idle(page)
        expect(page.get_by_text("Filter and sort — 1 filter")).to_be_visible()
        expect(page.get_by_label("Value (or from)")).to_have_value("")
        shot(page, "filtered")
        page.get_by_text("Descending").click()
        page.get_by_role("button", name="Apply").click()
        idle(page)
        expect(page.get_by_text("Filter and sort — 1 filter")).to_be_visible()
        expect(page.get_by_text("Rows 1–1 of 1").first).to_be_visible()
    finally:
        context.close()


def test_a_column_added_while_edits_wait_is_shown_at_the_next_click_with_the_edits(
    portal_server: PortalServer,
    proxied: str,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    """An admin adds a column while an edit waits in the browser's grid: the editor's next
    click (here "Review and commit…") opens no review of edits read under the old columns; the
    page says what changed and draws the grid again, with the new column and the edit typed
    before still on it, and the edit commits."""
    shot = Shots(request.node.name)
    boss = Actor("boss", "Boss", "admin")
    dataset_id = upload_dataset(boss, CSV, spec=SPEC, name="People")
    context = browser.new_context()
    context.set_default_timeout(SLOW)
    try:
        page = context.new_page()
        grid = open_edit(page, proxied, dataset_id, "boss", portal_server.users["boss"])
        edit_cell(
            page,
            grid,
            row=0,
            anchor="1",
            right=1,
            kind="text",
            before="ann",
            value="zoe",
            done=lambda: expect(metric(page, "Cells changed")).to_have_text("1", timeout=SLOW),
        )
        add_column(boss, dataset_id, "Shelf", fill="A1")
        page.get_by_label("Reason (required)").fill("renamed")
        page.get_by_role("button", name="Review and commit…").click()
        expect(page.get_by_text("An admin changed the columns of “People”")).to_be_visible(
            timeout=SLOW
        )
        expect(page.get_by_role("dialog")).to_have_count(0)
        idle(page)
        shot(page, "read-again")
        header, *rows = grid_cells(page, page.locator(GRID).first)
        assert "Shelf" in header
        assert rows[0][header.index("Shelf")] == "A1"
        assert rows[0][header.index("Name")] == "zoe"
        expect(metric(page, "Cells changed")).to_have_text("1")
        commit_with_reason(page, "renamed")
        confirm_commit(page)
    finally:
        context.close()
    assert dataset_rows(portal_server.db.owner, dataset_id, "name, shelf")[0] == ("zoe", "A1")
