"""Account: who you are, and changing your own password."""

import streamlit as st

from portal import auth
from portal.errors import AuthError, PortalError
from portal.ui import md_escape, require_session
from portal.ui.db_retry import show_refusal
from portal.ui.guard import NOT_CHOSEN
from portal.users import PASSWORD_RULES

signed = require_session("viewer", password_change_page=True)

FLASH = "account.flash"
# Each change gives the fields new keys, so that the browser draws them empty: popping their
# keys emptied them on the server only, and a second click sent the old passwords again (the
# current one wrong by then, a failed sign-in).
CHANGES = "account.changes"

st.title("Account")
flash_box = st.empty()
if signed.must_change_password:
    st.warning(
        f"{NOT_CHOSEN} Choose your own password to go on.",
        icon=":material/key:",
    )

st.markdown(
    f"**{md_escape(signed.display_name)}**  \n"
    f"Username: `{signed.username}`  \nRole: **{signed.role}**"
)

st.subheader("Change your password")
changes = st.session_state.get(CHANGES, 0)
with st.form("account.password"):
    current = st.text_input(
        "Current password",
        type="password",
        key=f"account.current.{changes}",
        autocomplete="current-password",
    )
    new = st.text_input(
        "New password",
        type="password",
        key=f"account.new.{changes}",
        autocomplete="new-password",
        help=PASSWORD_RULES,
    )
    confirm = st.text_input(
        "New password again",
        type="password",
        key=f"account.confirm.{changes}",
        autocomplete="new-password",
    )
    submitted = st.form_submit_button("Change password", type="primary", key="account.submit")

if submitted:
    if not current or not new:
        st.warning("Enter your current password and the new one.")
    else:
        st.session_state.pop(FLASH, None)  # a new try: the last one's outcome is old news
        try:
            auth.change_own_password(
                current_password=current, new_password=new, confirm_password=confirm
            )
        except AuthError as exc:
            # This try locked the account: the session ends at this click, and the sign-in form
            # says why (``signin.resume``), as the warning promised. Locked by wrong passwords
            # at the sign-in form instead, the session goes on and is told.
            if auth.current() is None:
                st.rerun()
            show_refusal(exc)
        except PortalError as exc:
            show_refusal(exc)
        else:
            st.session_state[CHANGES] = changes + 1
            st.session_state[FLASH] = (
                "Your password has been changed. Other browsers signed in as you are signed out."
            )
            st.rerun()
if flash := st.session_state.get(FLASH):
    # Kept until the next try: storing the new cookie, the browser reruns the page by itself
    # (twice), and a flash popped at once vanished with the first of those reruns.
    flash_box.success(flash, icon=":material/check_circle:")
