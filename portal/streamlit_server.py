"""``python -m portal.streamlit_server run app.py …``: Streamlit's own command line, with
app.py's navigation in charge from the server's first session on.

Left to itself, Streamlit treats the ``pages/`` folder beside app.py the old way until some
session has run ``st.navigation``: a page URL runs that file alone, and the sidebar lists every
file of ``pages/`` by name ("app", "audit", ..., "users") to anyone, signed in or not, until
someone opens "/". ``st.navigation`` switches that off for the whole process by clearing
``PagesManager.uses_pages_directory``; this clears it before the first session. (Each page still
checks sign-in and role itself: ``portal.ui.require``.)

It imports nothing of the portal: a Streamlit component declared before the server runs (the
sign-in cookie's, imported with ``portal.auth``) would not be served, and the cookie never set.
"""

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web.cli import main

PagesManager.uses_pages_directory = False

if __name__ == "__main__":
    main(prog_name="streamlit")  # the command line Streamlit sees, as with python -m streamlit
