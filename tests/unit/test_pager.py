"""The keyset pager's stack of page keys (``portal.ui.pager``), driven by its button callbacks as
Streamlit runs them: a double click on *Older* or *Newer* delivered before the rerun moves one
page."""

from __future__ import annotations

from typing import Any

import pytest

from portal.ui import pager


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Session state outside a Streamlit run: a plain dict, as the pager only reads and writes
    its one key."""
    fake: dict[str, Any] = {}
    monkeypatch.setattr(pager.st, "session_state", fake)
    return fake


def test_a_double_click_on_older_moves_one_page(state: dict[str, Any]) -> None:
    p = pager.Pager("trail.pager", ("a filter",))
    p._older("key after page 1")
    p._older("key after page 1")  # the second click of a double click, same drawn page
    assert (p.number, p.after) == (2, "key after page 1")
    p._newer(2)
    assert (p.number, p.after) == (1, None)


def test_older_newer_first_and_a_new_filter(state: dict[str, Any]) -> None:
    p = pager.Pager("trail.pager", ("a filter",))
    for key in ("k1", "k2", "k3"):
        p._older(key)
    assert (p.number, p.after) == (4, "k3")
    p._newer(4)
    assert p.after == "k2"
    p._first()
    assert (p.number, p.after) == (1, None)
    p._older("k1")
    assert pager.Pager("trail.pager", ("another filter",)).number == 1  # starts over


def test_a_double_click_on_newer_moves_one_page(state: dict[str, Any]) -> None:
    """Both clicks ran before the rerun: from page 4 the pager went back to page 2."""
    p = pager.Pager("trail.pager", ("a filter",))
    for key in ("k1", "k2", "k3"):
        p._older(key)
    p._newer(4)
    p._newer(4)  # the second click of a double click, same drawn page
    assert (p.number, p.after) == (3, "k2")
