"""Users (admins only): every account, adding one, and changing role, password, access, lock-out.

The rules (last active admin, password rules, events) are ``portal.users``'s, the same the
``portal user`` command uses. Destructive changes are confirmed in a dialog first.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from portal import users
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import PortalError
from portal.models import ROLES
from portal.ui import current_actor, md_escape, notices, require
from portal.ui.db_retry import show_error, show_refusal
from portal.ui.fields import start_afresh
from portal.users import PASSWORD_RULES
from portal.wording import counted

actor = require("admin")

FLASH = "users.flash"
ADDED_FLASH = "users.add.flash"  # said under the form
CONFIRM = "users.confirm"
ADDED = "users.added"
# The widget key of each field of "Add a user".
ADD_USERNAME = "users.add.username"
ADD_DISPLAY_NAME = "users.add.display_name"
ADD_EMAIL = "users.add.email"
ADD_PASSWORD = "users.add.password"  # noqa: S105 - a widget key, not a password
ADD_CONFIRM = "users.add.confirm"
ADD_ROLE = "users.add.role"
ADD_MUST_CHANGE = "users.add.must_change"
# What each field holds in an empty form.
ADD_FORM: dict[str, object] = {
    ADD_USERNAME: "",
    ADD_DISPLAY_NAME: "",
    ADD_EMAIL: "",
    ADD_PASSWORD: "",
    ADD_CONFIRM: "",
    # Emptied too: a role and a kept password left from the last account would be given to
    # the next one, typed into what looks like an empty form.
    ADD_ROLE: ROLES[0],
    ADD_MUST_CHANGE: True,
}


def apply(change: Callable[[Any, Actor], Any], success: str | Callable[[Any], str]) -> bool:
    """Run one ``portal.users`` change in its own transaction; show why if it is refused.
    ``success`` is the message for the next run, or makes it from what the change returned.

    The actor is read again first: a click in a dialog reruns only the dialog, not ``require``.
    """
    try:
        acting = current_actor("admin")
        with session_scope() as session:
            done = change(session, acting)
    except PortalError as exc:
        show_refusal(exc)
        return False
    st.session_state[FLASH] = success(done) if callable(success) else success
    st.session_state.pop(CONFIRM, None)
    return True


def added_message(typed: str, role: str) -> str:
    """Said once an account is added: its username as kept, and so when it differs from what
    was typed (usernames are kept in lower case)."""
    username = users.normalise_username(typed)
    if username == typed.strip():
        return f"{username} has been added as {role}."
    return (
        f"{username} has been added as {role}; usernames are kept in lower case, so it signs in"
        f" as {username} (any case is accepted)."
    )


def close_dialog() -> None:
    st.session_state.pop(CONFIRM, None)


def cancel_button() -> None:
    if st.button("Cancel", key="users.confirm.cancel"):
        close_dialog()
        st.rerun()


@st.dialog("Change role", on_dismiss=close_dialog)
def confirm_role(username: str, old: str, new: str) -> None:
    st.markdown(f"Change the role of **{md_escape(username)}** from **{old}** to **{new}**?")
    if username == actor.username and new != "admin":
        st.warning("This is your own account: you will lose access to this page.")
    if st.button("Change role", type="primary", key="users.confirm.ok") and apply(
        lambda s, a: users.set_role(session=s, actor=a, username=username, role=new, expected=old),
        f"{username} is now {new}.",
    ):
        if username == actor.username and new != "admin":
            # The guard says their new role; a notice kept would greet them if made admin again.
            st.session_state.pop(FLASH, None)
        st.rerun()
    cancel_button()


@st.dialog("Reset password", on_dismiss=close_dialog)
def confirm_reset(username: str) -> None:
    st.markdown(
        f"Set a new password for **{md_escape(username)}**. Their current sessions end at once "
        "and a lock-out is lifted; give them the new password in a safe way."
    )
    password = st.text_input(
        "New password", type="password", key="users.reset.password", help=PASSWORD_RULES
    )
    again = st.text_input("New password again", type="password", key="users.reset.confirm")
    must_change = st.checkbox(
        "They must choose their own password when they next sign in",
        value=True,
        key="users.reset.must_change",
    )
    if st.button("Reset password", type="primary", key="users.confirm.ok"):
        if password != again:
            st.error(
                "The password and its confirmation differ; type them again.",
                icon=":material/error:",
            )
        elif apply(
            lambda s, a: users.reset_password(
                session=s,
                actor=a,
                username=username,
                password=password,
                must_change_password=must_change,
            ),
            f"The password of {username} has been reset.",
        ):
            st.rerun()
    cancel_button()


@st.dialog("Disable user", on_dismiss=close_dialog)
def confirm_disable(username: str) -> None:
    st.markdown(
        f"Disable **{md_escape(username)}**? They lose access at their next click, even if "
        "signed in. You can enable the account again later."
    )
    if st.button("Disable", type="primary", key="users.confirm.ok") and apply(
        lambda s, a: users.set_active(session=s, actor=a, username=username, active=False),
        f"{username} has been disabled.",
    ):
        st.rerun()
    cancel_button()


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


st.title("Users")
with notices():
    if flash := st.session_state.pop(FLASH, None):
        st.success(flash, icon=":material/check_circle:")

try:
    with session_scope() as session:
        accounts = users.summarise_users(session=session, actor=actor)
except PortalError as exc:
    show_error(exc)
    st.stop()

by_name = {a.username: a for a in accounts}
if not accounts:
    st.info("There are no users yet. Add the first one below.", icon=":material/group_add:")
else:
    st.dataframe(
        [
            {
                "Username": a.username,
                "Name": a.display_name,
                "Email": a.email or "",
                "Role": a.role,
                "Active": a.active,
                # Before the rarer states: it was cut off at the table's edge.
                "Last sign-in": when(a.last_sign_in_at),
                "Locked until": when(a.locked_until) if a.locked else "",
                "Failed sign-ins": a.failed_attempts,
                "Must change password": a.must_change_password,
            }
            for a in accounts
        ],
        hide_index=True,
        width="stretch",
        key="users.table",
    )

    st.subheader("Manage a user")
    chosen = st.selectbox(
        "User",
        list(by_name),
        key="users.selected",
        format_func=lambda name: f"{name} — {by_name[name].display_name}",
    )
    account = by_name[chosen]
    yourself = account.username == actor.username
    state = "active" if account.active else "disabled"
    if account.locked:
        state += f", locked until {when(account.locked_until)}"
    st.caption(
        f"**{md_escape(account.display_name)}** is {account.role}, {state}; "
        f"{counted(account.failed_attempts, 'failed sign-in')} since the last success."
    )

    role_col, reset_col, access_col, unlock_col = st.columns(4, vertical_alignment="bottom")
    new_role = role_col.selectbox(
        "Role",
        ROLES,
        index=ROLES.index(account.role),
        # Keyed by the role too: a box drawn for the role the account had would go on showing
        # it after another admin changed it, "Change role…" enabled as if that were chosen.
        key=f"users.role.{account.username}.{account.role}",
    )
    # The server refuses it too (``users.set_role``); said here at once instead of after a click.
    last_admin = (
        account.role == "admin"
        and account.active
        and sum(a.role == "admin" and a.active for a in accounts) == 1
        and new_role != "admin"
    )
    if last_admin:
        role_col.caption(
            f"{md_escape(account.username)} is the last active admin: make another user an "
            "admin first."
        )
    if role_col.button(
        "Change role…",
        key="users.role.apply",
        disabled=new_role == account.role or last_admin,
    ):
        st.session_state[CONFIRM] = {
            "action": "role",
            "username": account.username,
            "old": account.role,
            "new": new_role,
        }
    if reset_col.button(
        "Reset password…",
        key="users.reset",
        disabled=yourself,
        help="Change your own password on the Account page." if yourself else None,
    ):
        st.session_state[CONFIRM] = {"action": "reset", "username": account.username}
    if account.active:
        if access_col.button(
            "Disable…",
            key="users.disable",
            disabled=yourself,
            help="You cannot disable your own account." if yourself else None,
        ):
            st.session_state[CONFIRM] = {"action": "disable", "username": account.username}
    elif access_col.button("Enable", key="users.enable") and apply(
        lambda s, a: users.set_active(session=s, actor=a, username=account.username, active=True),
        f"{account.username} has been enabled.",
    ):
        st.rerun()
    if unlock_col.button(
        "Unlock",
        key="users.unlock",
        disabled=not account.locked and account.failed_attempts == 0,
        help="Clear the lock-out and the failed sign-in count.",
    ) and apply(
        lambda s, a: users.unlock(session=s, actor=a, username=account.username),
        lambda unlocked: f"{unlocked.said(unlocked.username)}.",
    ):
        st.rerun()

    pending = st.session_state.get(CONFIRM)
    if pending and pending["username"] in by_name:
        if pending["action"] == "role":
            confirm_role(pending["username"], pending["old"], pending["new"])
        elif pending["action"] == "reset":
            confirm_reset(pending["username"])
        elif pending["action"] == "disable":
            confirm_disable(pending["username"])

st.subheader("Add a user")
# After an account was added, each field is emptied (the browser went on showing what was typed
# and sent it again with the next click: the same username, refused as taken). The role and the
# tick box get their first values here too, not as arguments (Streamlit warns of a widget given
# both).
start_afresh(ADDED, ADD_FORM)
for key, empty in ADD_FORM.items():
    st.session_state.setdefault(key, empty)
with st.form("users.add"):
    # A row of two columns at a time: the page (and the Tab key) goes field by field in reading
    # order, left then right; two tall columns went down the left one first.
    left, right = st.columns(2)
    username = left.text_input(
        "Username",
        key=ADD_USERNAME,
        help="a-z, 0-9, '.', '_' and '-'; up to 64 characters. Capitals are kept in lower case.",
    )
    display_name = right.text_input("Display name", key=ADD_DISPLAY_NAME)
    left, right = st.columns(2)
    email = left.text_input("Email (optional)", key=ADD_EMAIL)
    role = right.selectbox("Role", ROLES, key=ADD_ROLE)
    left, right = st.columns(2)
    password = left.text_input(
        "Temporary password", type="password", key=ADD_PASSWORD, help=PASSWORD_RULES
    )
    again = right.text_input("Temporary password again", type="password", key=ADD_CONFIRM)
    must_change = st.checkbox(
        "They must choose their own password when they first sign in", key=ADD_MUST_CHANGE
    )
    add = st.form_submit_button("Add user", type="primary", key="users.add.submit")
with notices():  # under the form, where the click was: at the top of the page it was unseen
    if added := st.session_state.pop(ADDED_FLASH, None):
        st.success(added, icon=":material/check_circle:")

if add:
    if not username.strip() or not password:
        st.warning("Enter at least a username and a temporary password.")
    elif password != again:
        st.error(
            "The password and its confirmation differ; type them again.", icon=":material/error:"
        )
    elif apply(
        lambda s, a: users.create_user(
            session=s,
            actor=a,
            username=username,
            display_name=display_name,
            role=role,
            password=password,
            email=email,
            must_change_password=must_change,
        ),
        added_message(username, role),
    ):
        # Refused, the fields keep what was typed, to be corrected; added, the next run empties
        # them (see ADD_FORM).
        st.session_state[ADDED] = True
        st.session_state[ADDED_FLASH] = st.session_state.pop(FLASH)
        st.rerun()
