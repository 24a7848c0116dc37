"""Home: a greeting and the state of the database."""

import streamlit as st

from portal.errors import PortalError
from portal.status import database_status
from portal.ui import md_escape, require
from portal.ui.db_retry import show_error

actor = require("viewer")

st.title("Data Portal")
st.caption(f"Welcome, {md_escape(actor.display_name)}.")

try:
    status = database_status()
except PortalError as exc:
    show_error(exc)
    st.stop()

st.success(f"Connected to PostgreSQL {status.server_version}", icon=":material/check_circle:")
cols = st.columns(3)
cols[0].metric("Database", status.database)
cols[1].metric("Connected as", status.connected_as)
cols[2].metric("Schema revision", status.schema_revision or "none")
if not status.up_to_date:
    st.warning(
        f"The database is at revision {status.schema_revision or 'none'} but the code expects "
        f"{status.head_revision}: run `portal migrate`."
    )
