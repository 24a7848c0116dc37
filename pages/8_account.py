"""Account: who you are, and changing your own password."""

import streamlit as st

from portal import auth
from portal.errors import PortalError
from portal.ui import md_escape, require_session
from portal.ui.db_retry import show_refusal
from portal.ui.guard import NOT_CHOSEN
from portal.users import PASSWORD_RULES

signed = require_session("viewer", password_change_page=True)

FLASH = "account.flash"
FIELDS = ("account.current", "account.new", "account.confirm")

st.title("Account")
if flash := st.session_state.pop(FLASH, None):
    st.success(flash, icon=":material/check_circle:")
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
with st.form("account.password"):
    current = st.text_input(
        "Current password", type="password", key=FIELDS[0], autocomplete="current-password"
    )
    new = st.text_input(
        "New password",
        type="password",
        key=FIELDS[1],
        autocomplete="new-password",
        help=PASSWORD_RULES,
    )
    confirm = st.text_input(
        "New password again", type="password", key=FIELDS[2], autocomplete="new-password"
    )
    submitted = st.form_submit_button("Change password", type="primary", key="account.submit")

if submitted:
    if not current or not new:
        st.warning("Enter your current password and the new one.")
    else:
        try:
            auth.change_own_password(
                current_password=current, new_password=new, confirm_password=confirm
            )
        except PortalError as exc:
            show_refusal(exc)
        else:
            for key in FIELDS:
                st.session_state.pop(key, None)
            st.session_state[FLASH] = (
                "Your password has been changed. Other browsers signed in as you are signed out."
            )
            st.rerun()
