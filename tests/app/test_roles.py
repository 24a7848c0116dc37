"""Roles: navigation lists only what a role may use, and every page file refuses, by itself, anyone
not signed in or without the role, even when opened directly. Changes to an account take effect at
the person's next click."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from portal import signin
from portal.actor import cli_actor
from portal.errors import AuthError
from portal.ui.navigation import PAGES
from portal.users import set_active, set_role
from tests.app.conftest import (
    ROOT,
    app_test,
    listed_pages,
    menu,
    new_user,
    show_app,
    shows_sign_in,
    sign_in,
    signed_in,
    texts,
)
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.app

EVERY_ROLE = ["viewer", "editor", "admin"]
PAGE_FILES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
EXPECTED_PAGES = {
    "viewer": {"1_home.py", "3_datasets.py", "4_edit.py", "5_history.py", "8_account.py"},
    "editor": {"1_home.py", "2_upload.py", "3_datasets.py", "4_edit.py", "5_history.py"}
    | {"8_account.py"},
    "admin": {"1_home.py", "2_upload.py", "3_datasets.py", "4_edit.py", "5_history.py"}
    | {"7_audit.py", "8_account.py", "9_users.py"},
}


def shows_no_user_data(at: AppTest, *usernames: str) -> bool:
    shown = texts(at, main_only=True)
    return not at.dataframe and not at.metric and not any(u in shown for u in usernames)


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_navigation_lists_only_the_role_s_pages(fresh_db: DatabaseHandle, role: str) -> None:
    at, name = signed_in(fresh_db, role, display_name="Pat Example")
    show_app(at)
    assert not at.exception
    assert listed_pages(at) == EXPECTED_PAGES[role]
    # The role said as one ("…, admin" after the username read as the username again).
    assert [c.value.replace("\\", "") for c in at.sidebar.caption] == [
        f"Signed in as **Pat Example** ({name}) · {role} role"
    ]


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_users_page_is_out_of_reach_below_admin(fresh_db: DatabaseHandle, role: str) -> None:
    other, _ = new_user(fresh_db, role="admin", display_name="Secret Admin")
    at, _ = signed_in(fresh_db, role)
    show_app(at)
    assert "9_users.py" not in listed_pages(at)
    # Registered but hidden: its URL runs the page's own refusal.
    at.switch_page("pages/9_users.py").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"This page is for admins; you are signed in as {role}. Ask an admin if you need access."
    ]
    assert shows_no_user_data(at, other, "Secret Admin")
    assert not at.main.button

    # Opened directly (a URL on a fresh server runs the file without app.py): sign-in first,
    # then a refusal, never the list.
    page = app_test("pages/9_users.py").run()
    assert shows_sign_in(page)
    assert shows_no_user_data(page, other, "Secret Admin")
    name, password = new_user(fresh_db, role=role)
    sign_in(page, name, password)
    assert not page.exception
    assert not shows_sign_in(page)
    assert [e.value for e in page.error] == [
        f"This page is for admins; you are signed in as {role}. Ask an admin if you need access."
    ]
    assert shows_no_user_data(page, other, "Secret Admin")
    assert not page.main.button  # no actions either


def test_a_page_for_editors_says_admins_may_use_it_too(fresh_db: DatabaseHandle) -> None:
    """A viewer opening Upload by its URL read "This page is for the editor role", as if an
    admin could not use it either."""
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "This page is for editors and admins; you are signed in as viewer. "
        "Ask an admin if you need access."
    ]


@pytest.mark.parametrize("page_file", PAGE_FILES)
def test_every_page_file_asks_for_sign_in_first(fresh_db: DatabaseHandle, page_file: str) -> None:
    hidden, _ = new_user(fresh_db, role="admin", display_name="Hidden Person")
    at = app_test(page_file).run()
    assert not at.exception
    assert shows_sign_in(at)
    assert shows_no_user_data(at, hidden, "Hidden Person")
    assert "Welcome," not in texts(at)  # no Home


def test_disabled_after_sign_in_loses_access_at_the_next_click(fresh_db: DatabaseHandle) -> None:
    new_user(fresh_db, role="admin")
    at, name = signed_in(fresh_db, "admin")
    at.switch_page("pages/9_users.py").run()
    assert at.dataframe
    with Session(fresh_db.app) as s, s.begin():
        set_active(session=s, actor=cli_actor(), username=name, active=False)
    at.run()
    assert shows_sign_in(at)
    assert not at.dataframe
    assert any("disabled" in i.value for i in at.info)
    sign_in(at, name, "whatever it was")
    assert shows_sign_in(at)


def test_role_change_after_sign_in_applies_at_the_next_click(fresh_db: DatabaseHandle) -> None:
    new_user(fresh_db, role="admin")
    at, name = signed_in(fresh_db, "admin")
    at.switch_page("pages/9_users.py").run()
    assert at.dataframe
    with Session(fresh_db.app) as s, s.begin():
        set_role(session=s, actor=cli_actor(), username=name, role="viewer")
    at.run()
    assert not at.dataframe
    assert "you are signed in as viewer" in at.error[0].value
    show_app(at)
    assert listed_pages(at) == EXPECTED_PAGES["viewer"]


def test_wrong_passwords_typed_elsewhere_do_not_sign_the_owner_out(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who knows a username could type wrong passwords for it: the lock-out refuses
    passwords, not the owner's open session (it signed out the only admin, whom nobody could
    then unlock in the browser). New password sign-ins are refused until it ends."""
    monkeypatch.setenv("PORTAL_LOCKOUT_ATTEMPTS", "2")
    at, name = signed_in(fresh_db, "admin")
    for _ in range(2):
        with pytest.raises(AuthError):
            signin.authenticate(name, "someone guessing")
    at.switch_page("pages/9_users.py").run()
    assert not shows_sign_in(at)
    assert at.title[0].value == "Users"
    with pytest.raises(AuthError, match="locked"):
        signin.authenticate(name, "someone guessing")


def test_must_change_password_goes_to_account_first(fresh_db: DatabaseHandle) -> None:
    name, password = new_user(fresh_db, role="admin", must_change_password=True)
    at = sign_in(app_test().run(), name, password)
    assert "Welcome," not in texts(at)  # no Home
    show_app(at)
    assert listed_pages(at) == {"8_account.py"}
    assert at.title[0].value == "Account"
    assert "Choose your own password" in at.warning[0].value
    # A page opened directly says where to go instead of showing anything.
    for page_file in ("pages/1_home.py", "pages/9_users.py"):
        page = sign_in(app_test(page_file).run(), name, password)
        assert not page.exception
        assert "Choose your own password on the Account page" in page.warning[0].value
        assert shows_no_user_data(page, name)


def test_home_shows_each_role_its_pages_and_only_admins_the_database(
    fresh_db: DatabaseHandle,
) -> None:
    """Home lists the pages in the menu's order (the menu had Upload after History)."""
    guide = {
        "viewer": ["Datasets", "Edit", "History", "Account"],
        "editor": ["Datasets", "Upload", "Edit", "History", "Account"],
        "admin": ["Datasets", "Upload", "Edit", "History", "Audit", "Account", "Users"],
    }
    titles = {Path(page.path).name: page.title for page in PAGES}
    for role, pages in guide.items():
        at, _ = signed_in(fresh_db, role)
        show_app(at)
        assert not at.exception
        links = [link.label for link in at.main.page_link]
        assert links == pages, role
        assert [titles[file] for file in menu(at)] == ["Home", *pages], role
        shown = texts(at, main_only=True)
        assert ("Connected to PostgreSQL" in shown) == (role == "admin")
        assert ("Connected as" in shown) == (role == "admin")
    assert "read-only for your role" in guide_lines(signed_in_home(fresh_db, "viewer"))["Edit"]


@pytest.mark.parametrize("role", EVERY_ROLE)
def test_home_offers_revert_only_to_editors_and_the_account_page_to_everyone(
    fresh_db: DatabaseHandle, role: str
) -> None:
    """History's line on Home ended "…, revert" for a viewer too, who may not revert (that needs
    the editor role); and Home had no line for the Account page, where every role changes its
    own password."""
    at = signed_in_home(fresh_db, role)
    assert not at.exception
    lines = guide_lines(at)
    assert ("revert" in lines["History"]) == (role != "viewer"), lines["History"]
    assert "a row's versions, the table as it was" in lines["History"]
    assert lines["Account"] == "change your own password"
    assert [link.proto.page for link in at.main.page_link if link.label.startswith("Account")] == [
        "account"
    ]


def guide_lines(at: AppTest) -> dict[str, str]:
    """Home's guide: each page's link, and what it is for (the caption beside it, in order;
    the first caption is the welcome)."""
    links = [link.label for link in at.main.page_link]
    about = [c.value for c in at.main.caption][1 : len(links) + 1]
    return dict(zip(links, about, strict=True))


def signed_in_home(db: DatabaseHandle, role: str) -> AppTest:
    at, _ = signed_in(db, role)
    show_app(at)
    return at
