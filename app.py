"""Streamlit entry point: page config, who is signed in, and the navigation their role allows.

Signing in happens in the page that was asked for: every page file starts with
``portal.ui.require(role)``, which shows the sign-in form to someone not signed in. So a link to any
page survives signing in, and a page opened by URL without going through here is guarded too.
"""

import streamlit as st

from portal import auth
from portal.errors import PortalError
from portal.ui.navigation import navigation

st.set_page_config(page_title="Data Portal", page_icon=":material/table_chart:", layout="wide")

try:
    signed_in = auth.current()
except PortalError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()

navigation(signed_in).run()
