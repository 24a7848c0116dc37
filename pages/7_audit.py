"""Audit (work in progress in this session)."""

import streamlit as st

from portal.ui import require

actor = require("admin")

st.title("Audit")
