"""The browser's "Leave site? Changes you made may not be saved." before a reload or a
closed tab would lose unsaved edits.

Edits live in the session, on the server; a reload opens a new session, so they went without a
word (moving between the portal's pages keeps them: that is no reload, and asks nothing).
"""

from __future__ import annotations

import streamlit as st

# Runs in the page itself (st.html with JavaScript), again whenever the body changes: the flag
# is set on every change, the listener added once per page load.
_GUARD = """<script>
window.portalUnsaved = {flag};
if (!window.portalLeaveGuard) {{
  window.portalLeaveGuard = true;
  window.addEventListener("beforeunload", (event) => {{
    if (window.portalUnsaved) {{
      event.preventDefault();
      event.returnValue = "";
    }}
  }});
}}
</script>"""


def ask_before_leaving(unsaved: bool) -> None:
    """Have the browser ask before the page is reloaded or closed while ``unsaved``; draw it
    in the same place in every run (it is an element: see ``portal.ui.notices``)."""
    st.html(_GUARD.format(flag="true" if unsaved else "false"), unsafe_allow_javascript=True)
