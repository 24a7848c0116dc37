"""Streamlit entry point: page config and, for now, the database status page.

The sign-in gate and role-based navigation replace the body of this file (issue 4).
"""

import streamlit as st

from portal.errors import PortalError
from portal.status import database_status

st.set_page_config(page_title="Data Portal", page_icon=":material/table_chart:", layout="wide")
st.title("Data Portal")

try:
    status = database_status()
except PortalError as exc:
    st.error(str(exc))
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
