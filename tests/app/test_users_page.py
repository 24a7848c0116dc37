"""The Users page: every administration action, its confirmation, its audit event (who did what
to whom), and the guard that keeps one active admin."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Selectbox, TextInput

from portal import signin, users
from portal.actor import cli_actor
from portal.config import get_settings
from portal.db import session_scope
from portal.errors import AuthError
from tests.app.conftest import app_test, events, new_user, sign_in, texts
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.app


@pytest.fixture
def admin(fresh_db: DatabaseHandle) -> tuple[AppTest, str]:
    """An admin signed in on the Users page (with a second admin, so guards do not trip)."""
    new_user(fresh_db, role="admin", username="second-admin")
    name, password = new_user(fresh_db, role="admin", username="boss")
    at = sign_in(app_test().run(), name, password)
    at.switch_page("pages/9_users.py").run()
    assert not at.exception
    assert at.dataframe
    return at, name


def user(db: DatabaseHandle, username: str) -> dict[str, Any]:
    with db.owner.connect() as conn:
        return dict(
            conn.execute(text("SELECT * FROM portal.users WHERE username = :u"), {"u": username})
            .one()
            ._mapping
        )


def admin_events(db: DatabaseHandle) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e["actor_username"], e["target"], e["detail"]) for e in events(db, "user_admin")]


def choose(at: AppTest, username: str) -> AppTest:
    return at.selectbox(key="users.selected").set_value(username).run()


def role_box(at: AppTest, username: str) -> Any:
    """The chosen user's Role box (its key names the role it was drawn for)."""
    [box] = [b for b in at.selectbox if str(b.key).startswith(f"users.role.{username}.")]
    return box


def confirm(at: AppTest) -> AppTest:
    return at.button(key="users.confirm.ok").click().run()


def test_lists_every_user_with_role_and_state(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    at, _ = admin
    new_user(fresh_db, role="editor", username="off-user", active=False)
    at.run()
    table = at.dataframe[0].value
    assert list(table["Username"]) == ["boss", "off-user", "second-admin"]
    row = table[table["Username"] == "off-user"].iloc[0]
    assert (row["Role"], bool(row["Active"])) == ("editor", False)


def test_add_a_user_asks_in_reading_order(admin: tuple[AppTest, str]) -> None:
    """The fields come in the page (so the Tab key goes through them) in the order they read,
    left to right a row at a time: two columns of three went Username, Email, Temporary
    password, then Display name, Role, Temporary password again."""
    at, _ = admin
    [form] = [b for b in at.main if b.type == "form" and b.proto.form.form_id == "users.add"]
    fields = [n.label for n in form if isinstance(n, TextInput | Selectbox)]
    assert fields == [
        "Username",
        "Display name",
        "Email (optional)",
        "Role",
        "Temporary password",
        "Temporary password again",
    ]


def _in_order(node: Any) -> Iterator[Any]:
    """``node`` and everything drawn in it, in the order of the page."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _in_order(child)


def test_add_a_user(fresh_db: DatabaseHandle, admin: tuple[AppTest, str]) -> None:
    at, me = admin
    at.text_input(key="users.add.username").input("New.Person")
    at.text_input(key="users.add.display_name").input("New Person")
    at.selectbox(key="users.add.role").set_value("editor")
    at.text_input(key="users.add.password").input("a temporary password")
    at.text_input(key="users.add.confirm").input("a temporary password")
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == [
        "new.person has been added as editor; usernames are kept in lower case, so it signs in"
        " as new.person (any case is accepted)."
    ]
    # Under the form, where the click was: at the top of the page it was out of sight.
    order = [n for n in _in_order(at.main) if n.type in ("form", "success")]
    assert [n.type for n in order] == ["form", "success"]
    row = user(fresh_db, "new.person")
    assert (row["role"], row["display_name"], row["must_change_password"]) == (
        "editor",
        "New Person",
        True,
    )
    assert admin_events(fresh_db) == [
        (me, "new.person", {"action": "create", "role": "editor", "must_change_password": True})
    ]
    assert signin.authenticate("new.person", "a temporary password").must_change_password


# Adds refused with an error (username, password, password again, part of the message).
REFUSED_ADDS = [
    ("shorty", "too short", "too short", "at least 12"),
    ("mismatch", "a temporary password", "another password", "differ"),
    ("boss", "a temporary password", "a temporary password", "taken"),
]


@pytest.mark.parametrize(
    ("username", "password", "again", "message"),
    [
        *REFUSED_ADDS,
        ("bad name!", "a temporary password", "a temporary password", "not allowed"),
        ("", "", "", "Enter at least a username"),
    ],
)
def test_add_a_user_refused(
    fresh_db: DatabaseHandle,
    admin: tuple[AppTest, str],
    username: str,
    password: str,
    again: str,
    message: str,
) -> None:
    at, _ = admin
    at.text_input(key="users.add.username").input(username)
    at.text_input(key="users.add.password").input(password)
    at.text_input(key="users.add.confirm").input(again)
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert message in " ".join(e.value for e in [*at.error, *at.warning])
    assert admin_events(fresh_db) == []


def test_change_role_is_confirmed_and_recorded(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    at, me = admin
    new_user(fresh_db, role="viewer", username="promote-me")
    at.run()
    choose(at, "promote-me")
    role_box(at, "promote-me").set_value("editor").run()
    at.button(key="users.role.apply").click().run()
    assert "from **viewer** to **editor**" in texts(at)
    assert user(fresh_db, "promote-me")["role"] == "viewer"  # not before confirming
    confirm(at)
    assert not at.exception
    assert [s.value for s in at.success] == ["promote-me is now editor."]
    assert user(fresh_db, "promote-me")["role"] == "editor"
    assert admin_events(fresh_db) == [
        (me, "promote-me", {"action": "set_role", "old_role": "viewer", "new_role": "editor"})
    ]


def test_cancel_changes_nothing(fresh_db: DatabaseHandle, admin: tuple[AppTest, str]) -> None:
    at, _ = admin
    new_user(fresh_db, role="viewer", username="keep-me")
    at.run()
    choose(at, "keep-me")
    at.button(key="users.disable").click().run()
    at.button(key="users.confirm.cancel").click().run()
    assert not any(b.key == "users.confirm.ok" for b in at.button)
    assert user(fresh_db, "keep-me")["active"] is True
    assert admin_events(fresh_db) == []


def test_reset_password(fresh_db: DatabaseHandle, admin: tuple[AppTest, str]) -> None:
    at, me = admin
    name, old_password = new_user(fresh_db, role="viewer", username="forgetful")
    at.run()
    choose(at, name)
    at.button(key="users.reset").click().run()
    at.text_input(key="users.reset.password").input("short")
    at.text_input(key="users.reset.confirm").input("short")
    confirm(at)
    assert "at least 12" in at.error[0].value
    at.text_input(key="users.reset.password").input("the new temporary one")
    at.text_input(key="users.reset.confirm").input("the new temporary one")
    confirm(at)
    assert not at.exception
    assert [s.value for s in at.success] == ["The password of forgetful has been reset."]
    assert admin_events(fresh_db) == [
        (me, name, {"action": "reset_password", "must_change_password": True})
    ]
    with pytest.raises(AuthError):
        signin.authenticate(name, old_password)
    assert signin.authenticate(name, "the new temporary one").must_change_password is True


def test_disable_and_enable(fresh_db: DatabaseHandle, admin: tuple[AppTest, str]) -> None:
    at, me = admin
    name, password = new_user(fresh_db, role="editor", username="leaver")
    at.run()
    choose(at, name)
    at.button(key="users.disable").click().run()
    confirm(at)
    assert [s.value for s in at.success] == ["leaver has been disabled."]
    assert user(fresh_db, name)["active"] is False
    with pytest.raises(AuthError, match="disabled"):
        signin.authenticate(name, password)
    at.button(key="users.enable").click().run()
    assert [s.value for s in at.success] == ["leaver has been enabled."]
    assert user(fresh_db, name)["active"] is True
    assert admin_events(fresh_db) == [
        (me, name, {"action": "disable"}),
        (me, name, {"action": "enable"}),
    ]


def test_unlock(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    get_settings.cache_clear()
    at, me = admin
    name, password = new_user(fresh_db, username="locked-out")
    for _ in range(2):
        with pytest.raises(AuthError):
            signin.authenticate(name, "bad guess")
    at.run()
    table = at.dataframe[0].value
    assert table[table["Username"] == name].iloc[0]["Locked until"] != ""
    choose(at, name)
    assert "locked until" in texts(at, main_only=True)
    at.button(key="users.unlock").click().run()
    assert [s.value for s in at.success] == ["locked-out has been unlocked."]
    row = user(fresh_db, name)
    assert (row["locked_until"], row["failed_attempts"]) == (None, 0)
    [(actor, target, detail)] = admin_events(fresh_db)
    assert (actor, target, detail["action"], detail["failed_attempts"]) == (me, name, "unlock", 2)
    assert detail["locked_until"] is not None  # a lock in force was lifted
    assert signin.authenticate(name, password).username == name


def test_unlock_says_when_the_account_was_not_locked(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """An account with failed sign-ins and no lock in force (a lock that ran out, or fewer
    failures than lock one) has only its count cleared: it was not "unlocked"."""
    at, me = admin
    name, _ = new_user(fresh_db, username="typo")
    with pytest.raises(AuthError):
        signin.authenticate(name, "bad guess")
    at.run()
    choose(at, name)
    at.button(key="users.unlock").click().run()
    assert [s.value for s in at.success] == [
        "typo was not locked; its 1 failed sign-in has been cleared."
    ]
    assert admin_events(fresh_db) == [
        (me, name, {"action": "unlock", "failed_attempts": 1, "locked_until": None})
    ]
    assert user(fresh_db, name)["failed_attempts"] == 0


def test_the_last_active_admin_keeps_the_role(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="admin", username="only-admin")
    at = sign_in(app_test().run(), name, password)
    at.switch_page("pages/9_users.py").run()
    choose(at, name)
    # Own account: no reset here (Account page) and no disabling oneself.
    assert at.button(key="users.disable").disabled
    assert at.button(key="users.reset").disabled
    role_box(at, name).set_value("viewer").run()
    # Said at once, the button off: it offered a change certain to be refused after the click.
    assert "only\\-admin is the last active admin: make another user an admin first." in [
        c.value for c in at.caption
    ]
    assert at.button(key="users.role.apply").disabled
    # The server refuses it all the same: the dialog opened by a forged state.
    at.session_state["users.confirm"] = {
        "action": "role",
        "username": name,
        "old": "admin",
        "new": "viewer",
    }
    at.run()
    assert "you will lose access to this page" in texts(at)
    confirm(at)
    assert not at.exception
    assert "last active admin" in at.error[0].value
    assert user(fresh_db, name)["role"] == "admin"
    assert admin_events(fresh_db) == []
    at.run()  # still an admin on the Users page
    assert at.dataframe


def test_a_role_change_confirmed_after_someone_else_changed_the_role_is_refused(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    at, _ = admin
    new_user(fresh_db, role="viewer", username="carol")
    at.run()
    choose(at, "carol")
    role_box(at, "carol").set_value("editor").run()
    at.button(key="users.role.apply").click().run()
    assert "from **viewer** to **editor**" in texts(at)  # what this admin agrees to
    with session_scope() as s:  # meanwhile another admin makes carol an admin
        users.set_role(session=s, actor=cli_actor(), username="carol", role="admin")
    confirm(at)
    assert not at.exception
    assert "changed since you opened this: it is admin now, not viewer" in texts(at)
    assert user(fresh_db, "carol")["role"] == "admin"


def test_the_next_admin_in_the_same_browser_does_not_inherit_an_open_dialog(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    at, _ = admin
    new_user(fresh_db, role="editor", username="victim")
    at.run()
    choose(at, "victim")
    at.button(key="users.disable").click().run()  # "Disable victim?" left open
    at.sidebar.button(key="portal.sign_out").click().run()
    other, password = new_user(fresh_db, role="admin", username="other-admin")
    sign_in(at, other, password)
    at.switch_page("pages/9_users.py").run()
    assert not any(b.key == "users.confirm.ok" for b in at.button)
    assert user(fresh_db, "victim")["active"]


def test_an_admin_cannot_reset_their_own_password_here_even_with_a_forged_dialog(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """The button is disabled for one's own account; the rule is the server's too, so a forged
    dialog state cannot change the password without the current one (the Account page asks)."""
    at, me = admin
    at.session_state["users.confirm"] = {"action": "reset", "username": me}
    at.run()
    at.text_input(key="users.reset.password").input("a password of my choosing")
    at.text_input(key="users.reset.confirm").input("a password of my choosing")
    confirm(at)
    assert not at.exception
    assert "Change your own password on the Account page" in at.error[0].value
    assert admin_events(fresh_db) == []
    with pytest.raises(AuthError):
        signin.authenticate(me, "a password of my choosing")


@pytest.mark.parametrize(
    ("display_name", "message"),
    [
        # A right-to-left override shows "Alice" where "ecilA" is stored: another person.
        ("\u202eecilA", "invisible or control character (U+202E, character 1)"),
        ("Bob\u200b", "invisible or control character (U+200B, character 4)"),
        ("Bob\u3164", "invisible or control character (U+3164, character 4)"),  # a letter
    ],
)
def test_a_display_name_with_a_hidden_character_is_refused(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str], display_name: str, message: str
) -> None:
    at, _ = admin
    at.text_input(key="users.add.username").input("zed")
    at.text_input(key="users.add.display_name").input(display_name)
    at.text_input(key="users.add.password").input("a temporary password")
    at.text_input(key="users.add.confirm").input("a temporary password")
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert message in " ".join(e.value for e in at.error)
    assert not at.success
    assert admin_events(fresh_db) == []


def test_the_log_says_whether_a_password_an_admin_set_must_be_replaced(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """An admin who sets a password the person may keep knows that person's password from then
    on: the audit log says when an admin chose that, for a new account and for a reset."""
    at, me = admin
    at.text_input(key="users.add.username").input("keeper")
    at.text_input(key="users.add.password").input("a temporary password")
    at.text_input(key="users.add.confirm").input("a temporary password")
    at.checkbox(key="users.add.must_change").uncheck()
    at.button(key="users.add.submit").click().run()
    assert [s.value for s in at.success] == ["keeper has been added as viewer."]
    choose(at, "keeper")
    at.button(key="users.reset").click().run()
    at.text_input(key="users.reset.password").input("the new temporary one")
    at.text_input(key="users.reset.confirm").input("the new temporary one")
    at.checkbox(key="users.reset.must_change").uncheck()
    confirm(at)
    assert not at.exception
    assert admin_events(fresh_db) == [
        (me, "keeper", {"action": "create", "role": "viewer", "must_change_password": False}),
        (me, "keeper", {"action": "reset_password", "must_change_password": False}),
    ]


def test_an_admin_who_demoted_themselves_and_is_made_admin_again_is_not_told_the_demotion(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """Demoted, the page is no longer theirs and the guard says their role; the success notice
    was kept for the next time the page opened, so once another admin gave the role back it
    greeted them with "boss is now viewer." while they were admin."""
    at, me = admin
    choose(at, me)
    role_box(at, me).set_value("viewer").run()
    at.button(key="users.role.apply").click().run()
    assert "you will lose access to this page" in texts(at)
    confirm(at)
    assert not at.exception
    assert "you are signed in as viewer" in texts(at, main_only=True)
    assert admin_events(fresh_db) == [
        (me, me, {"action": "set_role", "old_role": "admin", "new_role": "viewer"})
    ]
    with session_scope() as s:  # another admin gives the role back
        users.set_role(session=s, actor=cli_actor(), username=me, role="admin")
    at.run()
    assert at.dataframe  # the Users page again
    assert not at.success


def test_times_say_they_are_utc(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock-out's end and a last sign-in were shown as "2026-12-02 23:30", read as the
    admin's own time wherever they are, while they are UTC (as the Datasets and Edit pages say
    of theirs): an admin in Berlin told someone to wait until 23:30 waited an hour too long."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "1")
    get_settings.cache_clear()
    at, me = admin
    name, _ = new_user(fresh_db, username="locked-out")
    with pytest.raises(AuthError):
        signin.authenticate(name, "bad guess")
    at.run()
    table = at.dataframe[0].value
    locked = table[table["Username"] == name].iloc[0]["Locked until"]
    signed = table[table["Username"] == me].iloc[0]["Last sign-in"]
    assert locked.endswith(" UTC"), locked
    assert signed.endswith(" UTC"), signed
    # The last sign-in before the rarer states: at the table's end it was cut off.
    assert list(table.columns).index("Last sign-in") == 5
    choose(at, name)
    assert f"locked until {locked}" in texts(at, main_only=True)


def test_after_adding_an_admin_the_form_starts_over_as_a_viewer(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """Only the text fields were emptied after an account was added: the role (admin, say) and
    an unticked "must choose their own password" stayed, so the next person added, typed into
    what looked like an empty form, became an admin who keeps the password the admin chose."""
    at, _ = admin

    def add(username: str) -> None:
        at.text_input(key="users.add.username").input(username)
        at.text_input(key="users.add.password").input("a temporary password")
        at.text_input(key="users.add.confirm").input("a temporary password")
        at.button(key="users.add.submit").click().run()
        assert not at.exception

    at.selectbox(key="users.add.role").set_value("admin")
    at.checkbox(key="users.add.must_change").uncheck()
    add("deputy")
    assert at.selectbox(key="users.add.role").value == "viewer"
    assert at.checkbox(key="users.add.must_change").value is True
    add("intern")
    assert [
        (target, detail["role"], detail["must_change_password"])
        for _, target, detail in admin_events(fresh_db)
    ] == [("deputy", "admin", False), ("intern", "viewer", True)]


def test_the_role_box_shows_a_role_another_admin_changed_meanwhile(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """The Role box kept the role it was first drawn with: with carol made an editor by another
    admin, it still read "viewer", with "Change role…" enabled as if this admin had chosen
    viewer, one click from undoing the other admin's change."""
    at, _ = admin
    new_user(fresh_db, role="viewer", username="carol")
    at.run()
    choose(at, "carol")
    assert role_box(at, "carol").value == "viewer"
    with session_scope() as s:  # meanwhile another admin makes carol an editor
        users.set_role(session=s, actor=cli_actor(), username="carol", role="editor")
    at.run()
    assert "**Carol** is editor" in texts(at, main_only=True)
    assert role_box(at, "carol").value == "editor"
    assert at.button(key="users.role.apply").disabled


EMPTY_ADD_FORM = {
    "users.add.username": "",
    "users.add.display_name": "",
    "users.add.email": "",
    "users.add.password": "",
    "users.add.confirm": "",
    "users.add.role": "viewer",
    "users.add.must_change": True,
}


def add_form_widget(at: AppTest, key: str) -> Any:
    return next(w for w in (*at.text_input, *at.selectbox, *at.checkbox) if w.key == key)


def fill_add_form(at: AppTest, values: dict[str, Any]) -> None:
    for key, value in values.items():
        widget = add_form_widget(at, key)
        if key.endswith((".role", ".must_change")):
            widget.set_value(value)
        else:
            widget.input(value)


def browser_shows(at: AppTest, typed: dict[str, Any]) -> dict[str, Any]:
    """What a browser shows in the Add form after the last run, given what was typed into it.

    AppTest reads a widget's value from the server's session state. A browser keeps what a
    field held unless the run sends the widget a value (``set_value``), and sends that again
    with the next click, so a form emptied only on the server still looks filled in."""
    shown = {}
    for key, value in typed.items():
        proto = add_form_widget(at, key).proto
        if proto.set_value:
            value = proto.raw_value if key.endswith(".role") else proto.value
        shown[key] = value
    return shown


def test_after_a_user_is_added_the_browser_shows_an_empty_form(
    fresh_db: DatabaseHandle, admin: tuple[AppTest, str]
) -> None:
    """The form's keys were removed from the session after an account was added: emptied on the
    server, but a browser went on showing the username, name and passwords just typed (and the
    role and tick box), and a second click on "Add user" sent them again: "The username
    'new.person' is taken; choose another.\""""
    at, _ = admin
    typed = {
        "users.add.username": "New.Person",
        "users.add.display_name": "New Person",
        "users.add.email": "new.person@example.org",
        "users.add.password": "a temporary password",
        "users.add.confirm": "a temporary password",
        "users.add.role": "admin",
        "users.add.must_change": False,
    }
    fill_add_form(at, typed)
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == [
        "new.person has been added as admin; usernames are kept in lower case, so it signs in"
        " as new.person (any case is accepted)."
    ]
    assert browser_shows(at, typed) == EMPTY_ADD_FORM
    assert {key: add_form_widget(at, key).value for key in typed} == EMPTY_ADD_FORM

    fill_add_form(at, browser_shows(at, typed))  # what the browser sends with the next click
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert [w.value for w in at.warning] == ["Enter at least a username and a temporary password."]
    assert not at.error
    assert [target for _, target, _ in admin_events(fresh_db)] == ["new.person"]


@pytest.mark.parametrize(("username", "password", "again", "message"), REFUSED_ADDS)
def test_a_refused_add_keeps_what_was_typed(
    fresh_db: DatabaseHandle,
    admin: tuple[AppTest, str],
    username: str,
    password: str,
    again: str,
    message: str,
) -> None:
    """Refused, the form keeps what was typed, to be corrected, even just after an account was
    added (after which the form is emptied, once)."""
    at, _ = admin
    fill_add_form(
        at,
        {
            "users.add.username": "first",
            "users.add.password": "a temporary password",
            "users.add.confirm": "a temporary password",
        },
    )
    at.button(key="users.add.submit").click().run()
    assert [s.value for s in at.success] == ["first has been added as viewer."]
    typed = {
        "users.add.username": username,
        "users.add.display_name": "Some One",
        "users.add.password": password,
        "users.add.confirm": again,
        "users.add.role": "editor",
        "users.add.must_change": False,
    }
    fill_add_form(at, typed)
    at.button(key="users.add.submit").click().run()
    assert not at.exception
    assert message in " ".join(e.value for e in at.error)
    assert not at.success
    assert browser_shows(at, typed) == typed
    assert {key: add_form_widget(at, key).value for key in typed} == typed
    # A browser also empties a form made with clear_on_submit at every click; AppTest does not.
    assert not at.main.get("form")[0].proto.form.clear_on_submit
    assert [target for _, target, _ in admin_events(fresh_db)] == ["first"]


@pytest.mark.parametrize(
    ("failures", "wording"),
    [
        (1, "1 failed sign-in since the last success."),
        (3, "3 failed sign-ins since the last success."),
    ],
)
def test_failed_sign_ins_are_counted_in_words(
    fresh_db: DatabaseHandle,
    admin: tuple[AppTest, str],
    monkeypatch: pytest.MonkeyPatch,
    failures: int,
    wording: str,
) -> None:
    """The caption said "1 failed sign-in(s) since the last success."."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "10")
    get_settings.cache_clear()
    at, _ = admin
    name, _ = new_user(fresh_db, username="fumbler")
    for _ in range(failures):
        with pytest.raises(AuthError):
            signin.authenticate(name, "bad guess")
    at.run()
    choose(at, name)
    assert wording in texts(at, main_only=True)
