"""Streamlit entry point: page config, who is signed in, and the navigation their role allows.

Signing in happens in the page that was asked for: every page file starts with
``portal.ui.require(role)``, which shows the sign-in form to someone not signed in. So a link to any
page survives signing in, and a page opened by URL without going through here is guarded too.

While PostgreSQL is unavailable (restarting, say) any page shows "The database is unavailable —
retrying…" at its top instead of a traceback, and reruns by itself once the database answers
(``portal.ui.db_retry``); whatever the person typed stays in their session meanwhile.
"""

import streamlit as st

from portal import auth
from portal.errors import DatabaseUnavailable, PortalError
from portal.ui.db_retry import show_refusal, wait_for_database
from portal.ui.fields import count_run
from portal.ui.navigation import navigation

st.set_page_config(page_title="Data Portal", page_icon=":material/table_chart:", layout="wide")

count_run()
unavailable: DatabaseUnavailable | None = None
# The sign-in cookie's write or deletion is drawn (by ``auth.current``) inside a container of its
# own, drawn in every run: the page's elements keep their places whether or not it is there. A
# run without it otherwise drew each element one place up, and until each was redrawn the
# browser showed the last run's copy beside the new one (two "Datasets" headings after sign-in).
try:
    with st.container():
        signed_in = auth.current()
except DatabaseUnavailable as exc:
    signed_in, unavailable = None, exc
except PortalError as exc:
    show_refusal(exc)
    st.stop()

# Registered even while the database is away (every page, none shown, none run), so the page
# asked for stays the page of this session: the run that follows the wait opens it, not Home.
page = navigation(signed_in)
if unavailable is not None:
    wait_for_database(unavailable)

top = st.empty()  # where a page that loses the database mid-run says so
try:
    page.run()
except DatabaseUnavailable as exc:
    with top.container():
        wait_for_database(exc)
