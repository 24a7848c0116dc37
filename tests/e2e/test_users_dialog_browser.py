"""A click inside ``st.dialog`` reruns only the dialog, not the page's guard; AppTest always reruns
the whole script, so only a real browser shows that a write from a dialog re-checks the actor."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal.actor import cli_actor
from portal.users import set_role
from tests.e2e.conftest import PortalServer, choose
from tests.e2e.test_sign_in_browser import sign_in, sign_in_form
from tests.factories import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def open_disable_dialog(page: Page, portal_server: PortalServer) -> None:
    # "/" first, so app.py's st.navigation has run and /users goes through it (the other e2e
    # tests cover a page URL on a server no session has used yet).
    page.goto(portal_server.url + "/")
    sign_in_form(page)
    page.goto(portal_server.url + "/users")
    sign_in_form(page)
    sign_in(page, "boss", portal_server.users["boss"])
    expect(page.get_by_role("heading", name="Manage a user")).to_be_visible()
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_text("Users")).to_be_visible()  # the admin's navigation, not pages/ files
    expect(nav.get_by_text("app")).to_have_count(0)
    choose(page, "User", "vee — Vee")
    expect(page.get_by_text("Vee is viewer, active")).to_be_visible()
    # Until the rerun finishes, the previous user's (disabled) button can still be on the page.
    disable = page.get_by_role("button", name="Disable…")
    expect(disable).to_have_count(1)
    expect(disable).to_be_enabled()
    disable.click()
    expect(page.get_by_role("dialog")).to_be_visible()


def vee_state(portal_server: PortalServer) -> tuple[bool, int]:
    with portal_server.db.owner.connect() as conn:
        active = conn.execute(
            text("SELECT active FROM portal.users WHERE username = 'vee'")
        ).scalar_one()
        actions = conn.execute(
            text("SELECT count(*) FROM audit.event WHERE kind = 'user_admin' AND target = 'vee'")
        ).scalar_one()
    return active, actions


def test_disable_confirmed_in_the_dialog(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    page = context.new_page()
    open_disable_dialog(page, portal_server)
    page.get_by_role("dialog").get_by_role("button", name="Disable", exact=True).click()
    expect(page.get_by_text("vee has been disabled.")).to_be_visible()
    assert vee_state(portal_server) == (False, 1)


def test_an_admin_demoted_while_the_dialog_is_open_cannot_confirm(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    with Session(portal_server.db.app) as s, s.begin():
        make_user(s, username="other-admin", role="admin")
    page = context.new_page()
    open_disable_dialog(page, portal_server)
    with Session(portal_server.db.app) as s, s.begin():
        set_role(session=s, actor=cli_actor(), username="boss", role="viewer")
    page.get_by_role("dialog").get_by_role("button", name="Disable", exact=True).click()
    refusal = "This is for admins, and your role is now viewer; nothing was changed."
    expect(page.get_by_role("dialog").get_by_text(refusal)).to_be_visible()
    assert vee_state(portal_server) == (True, 0)
