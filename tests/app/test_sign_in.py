"""The sign-in form: success, refusals that say nothing about which usernames exist, lock-out,
sign-out, and the audit events of each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from portal.config import get_settings
from portal.signin import WRONG_CREDENTIALS
from tests.app.conftest import (
    app_test,
    events,
    new_user,
    show_app,
    shows_sign_in,
    sign_in,
    signed_in,
    texts,
)
from tests.app.test_account_page import change
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.app


def test_nothing_but_the_sign_in_form_before_signing_in(fresh_db: DatabaseHandle) -> None:
    at = app_test().run()
    assert not at.exception
    assert shows_sign_in(at)
    assert "Welcome," not in texts(at)  # no Home
    assert not at.metric
    assert not at.sidebar.button  # no sign-out, nothing to navigate


def test_sign_in_shows_home_and_is_recorded(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="editor", display_name="Ann Editor")
    at = sign_in(app_test().run(), name.upper(), password)
    assert not at.exception
    assert not shows_sign_in(at)
    assert "Welcome, Ann Editor." in texts(at)  # Home
    assert "Ann Editor" in texts(at)
    assert [b.key for b in at.sidebar.button] == ["portal.sign_out"]
    assert events(fresh_db, "sign_in") == [
        {
            "kind": "sign_in",
            "actor_username": name,
            "target": name,
            "detail": {"method": "password", "role": "editor"},
        }
    ]
    at.run()  # the next click: still signed in, no new sign-in event
    assert not shows_sign_in(at)
    assert len(events(fresh_db, "sign_in")) == 1


def test_wrong_password_and_unknown_user_are_indistinguishable(fresh_db: DatabaseHandle) -> None:
    name, _ = new_user(fresh_db)
    wrong = sign_in(app_test().run(), name, "not the password")
    unknown = sign_in(app_test().run(), "no-such-person", "not the password")
    for at in (wrong, unknown):
        assert not at.exception
        assert shows_sign_in(at)
        assert [e.value for e in at.error] == [WRONG_CREDENTIALS]
        assert "Welcome," not in texts(at)  # no Home
    assert texts(wrong) == texts(unknown)
    assert [(e["target"], e["detail"]["reason"]) for e in events(fresh_db, "sign_in_failed")] == [
        (name, "bad_password"),
        ("no-such-person", "unknown_user"),
    ]


def test_empty_form_asks_for_both_fields(fresh_db: DatabaseHandle) -> None:
    at = sign_in(app_test().run(), "", "")
    assert [w.value for w in at.warning] == ["Enter your username and password."]
    assert events(fresh_db, "sign_in_failed") == []


def test_lock_out_after_the_limit(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "3")
    monkeypatch.setenv("PORTAL_LOCKOUT_MINUTES", "10")
    name, password = new_user(fresh_db)
    at = app_test().run()
    for _ in range(2):
        sign_in(at, name, "a wrong guess")
        assert [e.value for e in at.error] == [WRONG_CREDENTIALS]
    sign_in(at, name, "a wrong guess")
    assert "locked for 10 more minutes" in at.error[0].value
    # A new browser session, the right password: still locked (it is kept in PostgreSQL).
    at = sign_in(app_test().run(), name, password)
    assert shows_sign_in(at)
    assert "locked" in at.error[0].value
    assert len(events(fresh_db, "lock_out")) == 1
    with fresh_db.owner.connect() as conn:
        locked = conn.execute(
            text("SELECT locked_until > now() FROM portal.users WHERE username = :u"), {"u": name}
        ).scalar_one()
    assert locked


def test_a_tab_left_open_past_its_cookie_s_expiry_asks_for_sign_in_again(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cookie dies after PORTAL_COOKIE_EXPIRY_DAYS; a tab left open that long ended with
    it, not days later, at its next click."""
    monkeypatch.setenv("PORTAL_COOKIE_EXPIRY_DAYS", "2")
    get_settings.cache_clear()
    name, password = new_user(fresh_db)
    at = sign_in(app_test().run(), name, password)
    expires = at.session_state["portal.auth.expires"]
    assert abs(expires - (datetime.now(UTC) + timedelta(days=2))) < timedelta(minutes=1)
    at.session_state["portal.auth.expires"] = datetime.now(UTC) + timedelta(seconds=30)
    at.run()
    assert not shows_sign_in(at)  # not expired yet
    at.session_state["portal.auth.expires"] = datetime.now(UTC) - timedelta(seconds=1)
    at.run()
    assert not at.exception
    assert shows_sign_in(at)
    assert "Your sign-in has expired. Sign in again." in [i.value for i in at.info]
    assert "Welcome," not in texts(at)
    sign_in(at, name, password)
    assert not shows_sign_in(at)


def test_sign_out(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db)
    at = sign_in(app_test().run(), name, password)
    at.sidebar.button(key="portal.sign_out").click().run()
    assert not at.exception
    assert shows_sign_in(at)
    assert "You have signed out." in [i.value for i in at.info]
    assert "Welcome," not in texts(at)  # no Home
    assert [(e["kind"], e["actor_username"]) for e in events(fresh_db, "sign_out")] == [
        ("sign_out", name)
    ]
    at.run()  # as when the browser reports the cookie deleted: the notice stays
    assert shows_sign_in(at)
    assert "You have signed out." in [i.value for i in at.info]
    # ... and can sign in again.
    sign_in(at, name, password)
    assert not shows_sign_in(at)


def test_sign_out_in_a_tab_whose_session_had_ended_signs_out_nothing_else(
    fresh_db: DatabaseHandle,
) -> None:
    """Tab B still shows Sign out after tab A changed the password (B ends at its next run):
    B's click ends B, says why, and is no sign-out of A's session under the new password."""
    name, password = new_user(fresh_db)
    a = sign_in(app_test().run(), name, password)
    b = sign_in(app_test().run(), name, password)
    a.switch_page("pages/8_account.py").run()
    change(a, password, "a brand new passphrase")
    assert "Your password has been changed." in a.success[0].value
    b.sidebar.button(key="portal.sign_out").click().run()
    assert not b.exception
    assert shows_sign_in(b)
    assert any("password was changed" in i.value for i in b.info)
    assert events(fresh_db, "sign_out") == []
    a.run()
    assert not shows_sign_in(a)
    assert a.title[0].value == "Account"


def cookie_writes(at: AppTest) -> list[str]:
    """The ``method`` of each cookie component the run drew, other than the read (``getAll``)."""
    methods = [json.loads(e.proto.json_args)["method"] for e in at.get("component_instance")]
    return [m for m in methods if m != "getAll"]


def test_the_cookie_write_is_drawn_again_until_the_browser_reports_it_done(
    fresh_db: DatabaseHandle,
) -> None:
    """A run replaced before the cookie's iframe loaded would lose the write: it stays queued.
    (AppTest never runs the component's JavaScript, so here it never reports done.)"""
    at, _ = signed_in(fresh_db, "viewer")
    for _ in range(3):
        at.run()
        assert cookie_writes(at) == ["set"]  # once per run, though current() runs twice


def title_place(at: AppTest) -> int:
    """Where the page's title is among the main area's top-level elements."""
    (place,) = [
        i
        for i, child in at.main.children.items()
        if child.type == "title" or (isinstance(child, Block) and child.get("title"))
    ]
    return place


def test_the_page_keeps_its_places_once_the_cookie_is_written(fresh_db: DatabaseHandle) -> None:
    """Runs with and without the cookie's component draw the page's elements in the same places:
    a run that drew each one place up left the browser showing the last run's copy beside the
    new one until it was redrawn (two "Home" headings just after signing in)."""
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)  # app.py and the page, as a browser runs them
    assert cookie_writes(at) == ["set"]
    with_component = title_place(at)
    del at.session_state["portal.auth.cookie_op"]  # as when the browser reports it written
    at.run()
    assert cookie_writes(at) == []
    assert title_place(at) == with_component
