"""The Account page: changing one's own password, its rules and messages, and a user who must
change their password being sent here first."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import TextInput

from portal import signin
from portal.cli import main
from portal.config import get_settings
from portal.errors import AuthError
from tests.app.conftest import (
    app_test,
    events,
    listed_pages,
    new_user,
    show_app,
    shows_sign_in,
    sign_in,
    texts,
)
from tests.app.test_roles import EXPECTED_PAGES
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.app


def account_page(db: DatabaseHandle, **kwargs: object) -> tuple[AppTest, str, str]:
    name, password = new_user(db, **kwargs)  # type: ignore[arg-type]
    at = sign_in(app_test().run(), name, password)
    at.switch_page("pages/8_account.py").run()
    assert not at.exception
    return at, name, password


def field(at: AppTest, label: str) -> TextInput:
    """A password field, by its label (its key changes with each password change)."""
    (found,) = [t for t in at.text_input if t.label == label]
    return found


def at_account(at: AppTest) -> AppTest:
    """Where app.py's switch to Account leaves the browser: at /account. (``show_app`` pins
    AppTest's runs to app.py's own page, Home, which would switch to Account again on every
    run, and lose the click that ran it; this runs the page file as a page URL does.)"""
    at.switch_page("pages/8_account.py").run()
    assert at.title[0].value == "Account"
    return at


def change(at: AppTest, current: str, new: str, again: str | None = None) -> AppTest:
    field(at, "Current password").input(current)
    field(at, "New password").input(new)
    field(at, "New password again").input(new if again is None else again)
    return at.button(key="account.submit").click().run()


def test_change_own_password(fresh_db: DatabaseHandle) -> None:
    at, name, password = account_page(fresh_db, display_name="Pat Example")
    assert "Pat Example" in texts(at, main_only=True)
    change(at, password, "my own new password")
    assert not at.exception
    assert [s.value for s in at.success] == [
        "Your password has been changed. Other browsers signed in as you are signed out."
    ]
    at.run()  # this session carries on under the new password
    assert at.title[0].value == "Account"
    assert [
        (e["actor_username"], e["target"], e["detail"]) for e in events(fresh_db, "user_admin")
    ] == [(name, name, {"action": "change_own_password"})]
    with pytest.raises(AuthError):
        signin.authenticate(name, password)
    assert signin.authenticate(name, "my own new password").username == name


def test_a_changed_password_empties_the_form_and_a_second_click_asks_for_it(
    fresh_db: DatabaseHandle,
) -> None:
    """A second click (a double-click, say) sends the emptied form: it asks for the passwords,
    and is no wrong current password counting towards the lock-out. The confirmation stays
    through the reruns the browser makes as it stores the new cookie, and until the next try.
    (That the browser draws the fields empty is for tests/e2e/test_sign_in_browser.py to see.)"""
    at, name, password = account_page(fresh_db)
    change(at, password, "my own new password")
    changed = ["Your password has been changed. Other browsers signed in as you are signed out."]
    assert [s.value for s in at.success] == changed
    assert [s.value for s in at.run().success] == changed
    at.button(key="account.submit").click().run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Enter your current password and the new one."]
    assert [s.value for s in at.success] == changed
    assert events(fresh_db, "sign_in_failed") == []
    assert signin.authenticate(name, "my own new password").username == name
    change(at, "not my password", "another new password")
    assert "The current password is not correct" in at.error[0].value
    assert not at.success


@pytest.mark.parametrize(
    ("new", "again", "message"),
    [
        ("too short", None, "The password is 9 characters long; use at least 12"),
        ("ü" * 37, None, "74 bytes long; passwords can be at most 72 bytes"),
        ("SAME-NAME-USER", None, "The password must not be the username."),
        ("a long enough password", "a different password", "differ"),
        ("abcabcabcabcabc", None, "a repeated or running sequence of characters"),
    ],
)
def test_password_rules_are_explained(
    fresh_db: DatabaseHandle, new: str, again: str | None, message: str
) -> None:
    at, _, password = account_page(fresh_db, username="same-name-user")
    change(at, password, new, again)
    assert not at.exception
    assert message in at.error[0].value
    assert events(fresh_db, "user_admin") == []
    assert "nor a repeat or run of characters" in (field(at, "New password").help or "")


def test_current_password_is_required(fresh_db: DatabaseHandle) -> None:
    at, name, password = account_page(fresh_db)
    change(at, "not my password", "my own new password")
    assert [e.value for e in at.error] == [
        "The current password is not correct; nothing was changed. 4 more wrong tries lock "
        "this account for 15 minutes, which signs you out."
    ]
    assert [e["detail"]["reason"] for e in events(fresh_db, "sign_in_failed")] == [
        "bad_current_password"
    ]
    change(at, "", "my own new password")
    assert [w.value for w in at.warning] == ["Enter your current password and the new one."]
    assert signin.authenticate(name, password).username == name


def test_a_wrong_current_password_says_how_close_the_lock_out_is(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong current passwords count towards the lock-out, which ends this very session: the
    person is told before the try that does it (they are signed in, so this tells no stranger
    anything)."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "3")
    monkeypatch.setenv("PORTAL_LOCKOUT_MINUTES", "1")
    at, _, _ = account_page(fresh_db)
    change(at, "not my password", "my own new password")
    assert "2 more wrong tries lock this account for 1 minute, which" in at.error[0].value
    change(at, "not my password", "my own new password")
    assert "1 more wrong try locks this account for 1 minute, which" in at.error[0].value
    change(at, "not my password", "my own new password")
    # A lock-out its own session caused ends it at this very click (one from the sign-in form
    # does not); it had said "too many failed sign-ins" and stayed until the next click.
    assert shows_sign_in(at)
    assert any("wrong current passwords on the Account page" in i.value for i in at.info)


def test_must_change_password_then_the_portal_opens(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="editor", must_change_password=True)
    at = sign_in(app_test().run(), name, password)
    show_app(at)
    assert at.title[0].value == "Account"  # app.py switched to it
    assert "Choose your own password to go on." in at.warning[0].value
    at_account(at)
    change(at, password, "now it is my own one")
    assert not at.exception
    show_app(at)
    assert listed_pages(at) == EXPECTED_PAGES["editor"]
    at.switch_page("pages/1_home.py").run()
    assert "Welcome," in texts(at)


def test_the_first_admin_replaces_the_generated_password_first(fresh_db: DatabaseHandle) -> None:
    prepared = CliRunner().invoke(main, ["dev", "--no-serve"])  # no PORTAL_ADMIN_PASSWORD
    assert prepared.exit_code == 0, prepared.output
    generated = (get_settings().data_dir / "admin-password").read_text().strip()
    at = sign_in(app_test().run(), "admin", generated)
    assert "Welcome," not in texts(at)  # no Home
    show_app(at)
    assert listed_pages(at) == {"8_account.py"}
    assert "Choose your own password to go on." in at.warning[0].value
    assert "set by an admin" not in at.warning[0].value  # no admin did: `portal dev` made it
    at_account(at)
    change(at, generated, "the admin's own password")
    assert not at.exception
    show_app(at)
    assert listed_pages(at) == EXPECTED_PAGES["admin"]
    with pytest.raises(AuthError):
        signin.authenticate("admin", generated)


def test_an_account_locked_from_the_sign_in_form_is_told_why_its_password_cannot_change(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong passwords typed at the sign-in form by someone else leave this session signed in;
    changing the password meanwhile is refused, saying so (not a silent rerun)."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "1")
    at, name, password = account_page(fresh_db)
    with pytest.raises(AuthError):
        signin.authenticate(name, "someone guessing")
    change(at, password, "my own new password")
    assert not shows_sign_in(at)
    assert "this account is locked" in at.error[0].value
