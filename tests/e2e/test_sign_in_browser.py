"""Sign-in in a real browser against a real server: every page URL asks for sign-in first (also on
a fresh server, before any session ran ``st.navigation``), signing in works and sets a cookie that
signs the next visit in, signing out ends it, forged cookies sign nobody in, and a changed
password leaves the Account page's form empty."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from playwright.sync_api import BrowserContext, Page, WebSocket, expect
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import auth
from portal.actor import cli_actor
from portal.users import set_active, set_role
from tests.e2e.conftest import PortalServer
from tests.factories import audit_events, make_user

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

COOKIE = "portal_auth"
PAGE_PATHS = ["/users", "/account", "/home", "/"]
SECRETS = ("Manage a user", "Welcome,", "Change your password", "Vee")


def sign_in_form(page: Page) -> None:
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.wait_for_timeout(300)  # let the run finish: nothing of the page may follow the form


def body(page: Page) -> str:
    return page.locator("body").inner_text()


def sign_in(page: Page, username: str, password: str) -> None:
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def cookie(context: BrowserContext) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == COOKIE), None)


def wait_for_cookie(context: BrowserContext, present: bool, timeout: float = 30) -> str | None:
    """The browser writes and deletes the cookie from a component's iframe, a few runs after
    the click: on a loaded 2-core machine that can take more than 10 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cookie(context)
        if (value is not None) == present:
            return value
        time.sleep(0.1)
    raise AssertionError(f"cookie {'never set' if present else 'still there'}: {value!r}")


@pytest.mark.parametrize("first_path", ["/users", "/account", "/home", "/"])
def test_every_page_asks_for_sign_in_first(
    portal_server: PortalServer, context: BrowserContext, first_path: str
) -> None:
    """The first request on a fresh server runs the page file alone (no app.py): still guarded."""
    page = context.new_page()
    for path in [first_path, *PAGE_PATHS]:
        page.goto(portal_server.url + path)
        sign_in_form(page)
        shown = body(page)
        leaked = [s for s in SECRETS if s in shown]
        assert not leaked, (path, leaked, portal_server.log_tail())
        assert "Page not found" not in shown, path


def test_admin_signs_in_cookie_resumes_and_sign_out_revokes(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    page = context.new_page()
    page.goto(portal_server.url + "/users")
    sign_in_form(page)
    sign_in(page, "boss", portal_server.users["boss"])
    expect(page.get_by_role("heading", name="Manage a user")).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    token = wait_for_cookie(context, present=True)
    assert token is not None
    claims = auth.decode_token(token, key=portal_server.cookie_key, now=datetime.now(UTC))
    assert claims is not None
    assert claims.username == "boss"

    # A new tab: the cookie signs it in, straight onto the page asked for.
    second = context.new_page()
    second.goto(portal_server.url + "/users")
    expect(second.get_by_role("heading", name="Manage a user")).to_be_visible()
    # Home is at "/"; its name as an address drew Streamlit's "Page not found" over it.
    second.goto(portal_server.url + "/home")
    expect(second.get_by_text("Welcome,")).to_be_visible()
    second.wait_for_timeout(1000)
    assert "Page not found" not in body(second)
    second.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    wait_for_cookie(context, present=False)

    # The old cookie, put back by hand (or kept by an attacker): revoked by the sign-out.
    context.add_cookies([{"name": COOKIE, "value": token, "url": portal_server.url}])
    page.goto(portal_server.url + "/users")
    sign_in_form(page)
    assert "Manage a user" not in body(page)


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")  # some_key is short
def test_forged_and_disabled_cookies_sign_nobody_in(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(days=1)
    forged_with_default_key = jwt.encode(
        {"username": "boss", "exp_date": later.timestamp()}, "some_key", algorithm="HS256"
    )
    forged_portal_format = auth.encode_token("boss", key="some_key", since=now, expires_at=later)
    # A cookie value may be sent in double quotes: the server reads it without them, and the
    # deletion still finds the value the browser holds.
    quoted = f'"{forged_portal_format}"'
    page = context.new_page()
    for forged in (forged_with_default_key, forged_portal_format, quoted):
        context.clear_cookies()
        context.add_cookies([{"name": COOKIE, "value": forged, "url": portal_server.url}])
        page.goto(portal_server.url + "/users")
        sign_in_form(page)
        assert "Manage a user" not in body(page)
        wait_for_cookie(context, present=False)  # the portal deletes a refused cookie

    # The right key: signed in (so the refusals above are about the key, not the cookie path) ...
    for name in ("boss", "vee"):
        good = auth.encode_token(name, key=portal_server.cookie_key, since=now, expires_at=later)
        context.clear_cookies()
        context.add_cookies([{"name": COOKIE, "value": good, "url": portal_server.url}])
        page.goto(portal_server.url + "/account")
        expect(page.get_by_role("heading", name="Change your password")).to_be_visible()

    # ... unless the account is disabled: the database has the last word.
    with Session(portal_server.db.app) as s, s.begin():
        set_active(session=s, actor=cli_actor(), username="vee", active=False)
    page.goto(portal_server.url + "/account")
    sign_in_form(page)
    assert "Change your password" not in body(page)
    # Told why, as an open tab is at its next click (a reloaded one was shown a bare form).
    expect(page.get_by_text("this account is disabled or no longer exists")).to_be_visible()

    # Each refusal is a failed sign-in in the audit log, under the name the cookie claimed
    # (recorded before the run draws the sign-in form).
    assert refused_cookies(portal_server) == [
        ("boss", "bad_cookie"),
        ("boss", "bad_cookie"),
        ("boss", "bad_cookie"),
        ("vee", "revoked_cookie"),
    ]


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")  # some_key is short
def test_a_good_cookie_set_while_a_forged_one_is_refused_is_kept(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    """The browser deletes a refused cookie some time after the refusal. A good cookie set in
    the meantime (pasted, or from a sign-in in another tab) is not the refusal's to delete: here
    the refusal's audit record is held up until the good cookie has replaced the forged one, so
    the deletion, drawn after the record, always comes later. (The library's deletion deleted
    whatever the cookie held, and again each time its iframe was redrawn.)"""
    now = datetime.now(UTC)
    later = now + timedelta(days=1)
    forged = auth.encode_token("boss", key="some_key", since=now, expires_at=later)
    good = auth.encode_token("boss", key=portal_server.cookie_key, since=now, expires_at=later)
    context.add_cookies([{"name": COOKIE, "value": forged, "url": portal_server.url}])
    page = context.new_page()
    sent = frames_sent(page)
    with holding(portal_server, "LOCK TABLE audit.event IN SHARE MODE"):
        page.goto(portal_server.url + "/users")
        wait_until_waiting_for(portal_server, "audit.event")  # the refusal's record
        context.add_cookies([{"name": COOKIE, "value": good, "url": portal_server.url}])
    sign_in_form(page)
    assert "Manage a user" not in body(page)
    # The browser has done the deletion when it reports so: a rerun request carrying the
    # state of the deletion's component (keyed portal.auth.cookie_delete.<nonce>).
    deadline = time.monotonic() + 30
    while not any(b"portal.auth.cookie_delete." in frame for frame in sent):
        assert time.monotonic() < deadline, "the browser never reported the deletion done"
        page.wait_for_timeout(100)  # Playwright delivers the frames while it waits
    assert cookie(context) == good

    page.goto(portal_server.url + "/account")
    expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
    assert refused_cookies(portal_server) == [("boss", "bad_cookie")]


def frames_sent(page: Page) -> list[bytes]:
    """The binary frames the page sends over its WebSockets from now on (Streamlit's BackMsgs)."""
    sent: list[bytes] = []

    def watch(ws: WebSocket) -> None:
        ws.on(
            "framesent",
            lambda payload: sent.append(payload) if isinstance(payload, bytes) else None,
        )

    page.on("websocket", watch)
    return sent


@contextmanager
def holding(server: PortalServer, statement: str) -> Iterator[None]:
    """A superuser transaction holding the lock ``statement`` takes, until the block ends."""
    with server.db.superuser.connect() as conn, conn.begin():
        conn.execute(text(statement))
        yield


def wait_until_waiting_for(server: PortalServer, table: str, timeout: float = 30) -> None:
    """Until a connection waits for a lock on ``table``."""
    query = text("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = to_regclass(:t)")
    deadline = time.monotonic() + timeout
    with server.db.superuser.connect() as conn:
        while time.monotonic() < deadline:
            if conn.scalar(query, {"t": table}):
                return
            time.sleep(0.05)
    raise AssertionError(f"nobody waited for {table}: {server.log_tail()}")


def refused_cookies(server: PortalServer) -> list[tuple[str, str]]:
    """(the username claimed, why) of each refused cookie, oldest first."""
    failed = audit_events(server.db.app, "sign_in_failed")
    return [
        (e["target"], e["detail"]["reason"])
        for e in failed
        if e["detail"].get("method") == "cookie"
    ]


def test_an_admin_demoted_while_on_an_admin_page_is_told_why_at_the_next_click(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    """The page stays registered (hidden from the menu), so its own guard says what changed,
    rather than the person finding themselves on Home with no word why."""
    page = context.new_page()
    page.goto(portal_server.url + "/users")
    sign_in_form(page)
    sign_in(page, "boss", portal_server.users["boss"])
    expect(page.get_by_role("heading", name="Manage a user")).to_be_visible()
    for name, role in (("vee", "admin"), ("boss", "viewer")):
        with Session(portal_server.db.app) as s, s.begin():
            set_role(session=s, actor=cli_actor(), username=name, role=role)
    page.keyboard.press("r")  # rerun, as any click does
    told = page.get_by_text("This page is for admins; you are signed in as viewer.")
    expect(told).to_have_count(1)  # a rerun may show a stale copy for a moment
    expect(told).to_be_visible()
    # Waited for: the admin page's elements stay, stale, until the rerun ends (a clean-clone
    # run read them right after the refusal was drawn).
    expect(page.get_by_role("heading", name="Manage a user")).to_have_count(0)
    assert page.url.endswith("/users")
    # Waited for: the rerun may show the admin's menu for a moment (a clean-clone run read it).
    menu = page.get_by_test_id("stSidebarNav")
    expect(menu).to_contain_text("Datasets")
    expect(menu).not_to_contain_text("Users")
    expect(menu).not_to_contain_text("Audit")


def test_a_changed_password_leaves_the_form_empty(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    """The fields are emptied in the browser, not only on the server: popping their keys left
    them filled, and a second click sent the old password as the current one, a failed
    sign-in. The confirmation stays through the reruns the browser makes storing the cookie."""
    page = context.new_page()
    page.goto(portal_server.url + "/account")
    sign_in_form(page)
    sign_in(page, "vee", portal_server.users["vee"])
    wait_for_cookie(context, present=True)
    # A session signed in by the cookie, which it has no need to write: the component that
    # writes it reports the browser's cookies with some later rerun, which then loses its click.
    page.goto(portal_server.url + "/account")
    names = ("Current password", "New password", "New password again")
    fields = [page.get_by_role("textbox", name=name, exact=True) for name in names]
    typed = (portal_server.users["vee"], "my new password", "my new password")
    for field, value in zip(fields, typed, strict=True):
        field.fill(value)
    page.get_by_role("button", name="Change password").click()
    changed = page.get_by_text("Your password has been changed.")
    expect(changed).to_be_visible()
    for field in fields:
        expect(field).to_have_value("")

    asked = page.get_by_text("Enter your current password and the new one.")
    for _ in range(3):  # the new cookie's writer may take a click (above)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")
        page.get_by_role("button", name="Change password").click()
        with contextlib.suppress(AssertionError):
            expect(asked).to_be_visible(timeout=5_000)
            break
    expect(asked).to_be_visible()
    expect(changed).to_be_visible()
    assert audit_events(portal_server.db.app, "sign_in_failed") == []


def test_someone_who_must_choose_a_password_is_taken_to_account_at_its_own_url(
    portal_server: PortalServer, context: BrowserContext
) -> None:
    """Account was the default page for them, at "/": the link to it from any other page, and
    a bookmark of /account, opened Streamlit's "Page not found" and then the root."""
    with Session(portal_server.db.app) as s, s.begin():
        _, password = make_user(s, username="zed", role="editor", must_change_password=True)
    page = context.new_page()
    page.goto(portal_server.url + "/")
    sign_in_form(page)
    sign_in(page, "zed", password)
    expect(page.get_by_text("Choose your own password to go on.")).to_be_visible()
    expect(page).to_have_url(portal_server.url + "/account")
    wait_for_cookie(context, present=True)
    for path in ("/account", "/", "/datasets"):  # a bookmark, Home, a page not theirs yet
        other = context.new_page()
        other.goto(portal_server.url + path)
        expect(other.get_by_text("Choose your own password to go on.")).to_be_visible()
        expect(other).to_have_url(portal_server.url + "/account")
        assert "Page not found" not in body(other), path
        other.close()
