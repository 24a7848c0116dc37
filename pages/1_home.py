"""Home: a greeting, what the person's role lets them do here, and (for admins) the state of
the database. The database's name, login role and server version are for admins only: nobody
else needs them, and they help whoever probes the server."""

import streamlit as st
from streamlit.errors import StreamlitAPIException

from portal.errors import PortalError
from portal.status import database_status
from portal.ui import md_escape, require
from portal.ui.db_retry import show_error
from portal.ui.navigation import (
    ACCOUNT,
    AUDIT,
    DATASETS,
    EDIT,
    HISTORY,
    PAGES,
    UPLOAD,
    USERS,
    PageSpec,
)

actor = require("viewer")

# What each page is for; listed in the menu's order (PAGES).
GUIDE: dict[PageSpec, str] = {
    DATASETS: "browse every dataset, filter and sort it, download it as CSV",
    UPLOAD: "load a CSV file into a new dataset, or add to or replace one's rows",
    EDIT: "change rows in the grid and commit them with a reason",
    HISTORY: "every change to a dataset, a row's versions, the table as it was, revert",
    AUDIT: "the whole audit log, its hash chains, and a check of every dataset against it",
    ACCOUNT: "change your own password",
    USERS: "accounts, roles, locks and passwords",
}
# What a page offers someone who may only read (a viewer), where that is less: editing and
# reverting need the editor role.
READ_ONLY: dict[PageSpec, str] = {
    EDIT: "see a dataset's rows in the editing grid, read-only for your role",
    HISTORY: "every change to a dataset, a row's versions, the table as it was",
}

st.title("Data Portal")
st.caption(f"Welcome, {md_escape(actor.display_name)}.")

for page in PAGES:
    what = GUIDE.get(page)
    if what is None or not actor.can(page.role):
        continue
    if not actor.can("editor"):
        what = READ_ONLY.get(page, what)
    # The link, then what the page is for beside it (under it in a narrow window): a link's
    # label is one line, and a long one was cut off at a phone's width.
    link, about = st.columns([1, 4], vertical_alignment="center")
    try:
        link.page_link(page.path, label=page.title, icon=page.icon)
    except StreamlitAPIException:  # a page run on its own (not through app.py's navigation)
        link.markdown(f"**{page.title}**")
    about.caption(what)

try:
    status = database_status()
except PortalError as exc:
    show_error(exc)
    st.stop()

if not status.up_to_date and not actor.can("admin"):
    st.warning(
        "The portal's database needs an update before everything works: tell an admin.",
        icon=":material/warning:",
    )
if actor.can("admin"):
    st.divider()
    st.success(f"Connected to PostgreSQL {status.server_version}", icon=":material/check_circle:")
    cols = st.columns(3)
    cols[0].metric("Database", status.database)
    cols[1].metric("Connected as", status.connected_as)
    cols[2].metric("Schema revision", status.schema_revision or "none")
    if not status.up_to_date:
        st.warning(
            f"The database is at revision {status.schema_revision or 'none'} but the code expects "
            f"{status.head_revision}: {status.what_to_do}."
        )
