"""Page helpers (the UI layer; may import streamlit): the sign-in and role guard every page calls
first, the sidebar, and navigation by role."""

from portal.ui.guard import current_actor, require, require_session
from portal.ui.markdown import md_escape, md_text
from portal.ui.notices import notices

__all__ = ["current_actor", "md_escape", "md_text", "notices", "require", "require_session"]
