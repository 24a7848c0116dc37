"""Keyset paging controls: *Newer* / *Older* over pages that each start after a key.

A page is asked for by the key its predecessor ended with (``Page.next_key``); the pager keeps
the keys of the pages walked so far in session state, so *Newer* goes back exactly, and starts
over whenever what is paged (``identity``: the filter, the dataset...) changes.
"""

from __future__ import annotations

from typing import Any

import streamlit as st


class Pager:
    def __init__(self, key: str, identity: object) -> None:
        state = st.session_state.get(key)
        if not isinstance(state, dict) or state.get("identity") != identity:
            state = {"identity": identity, "stack": [None]}
            st.session_state[key] = state
        self._key = key
        self._state: dict[str, Any] = state

    @property
    def after(self) -> Any:
        """The key to read the current page after (``None``: the first page)."""
        return self._state["stack"][-1]

    @property
    def number(self) -> int:
        return len(self._state["stack"])

    def _newer(self, number: int) -> None:
        # As for Older: a double click runs this twice for the page drawn (``number``), and
        # moves one page back, not two.
        if len(self._state["stack"]) == number > 1:
            self._state["stack"].pop()

    def _older(self, key: Any) -> None:
        # A double click runs this twice with the key the page was drawn with, before the rerun
        # that would draw the next: counted once, or Newer would show the same page again.
        if key != self._state["stack"][-1]:
            self._state["stack"].append(key)

    def _first(self) -> None:
        del self._state["stack"][1:]

    def controls(self, next_key: Any, what: str = "page") -> None:
        """*First*, *Newer* and *Older* buttons and where we are."""
        first, newer, older, where = st.columns([1, 1, 1, 3], vertical_alignment="center")
        at_start = self.number == 1
        first.button("First", key=f"{self._key}.first", on_click=self._first, disabled=at_start)
        newer.button(
            "Newer",
            key=f"{self._key}.newer",
            on_click=self._newer,
            args=(self.number,),
            disabled=at_start,
            icon=":material/chevron_left:",
        )
        older.button(
            "Older",
            key=f"{self._key}.older",
            on_click=self._older,
            args=(next_key,),
            disabled=next_key is None,
            icon=":material/chevron_right:",
        )
        where.caption(f"{what.capitalize()} {self.number}" + ("" if next_key else " (the last)"))
