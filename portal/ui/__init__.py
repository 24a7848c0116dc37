"""Page helpers (the UI layer; may import streamlit): the sign-in and role guard every page calls
first, the sidebar, and navigation by role."""

from portal.ui.guard import current_actor, md_escape, require, require_session

__all__ = ["current_actor", "md_escape", "require", "require_session"]
