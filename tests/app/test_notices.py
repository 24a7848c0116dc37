"""What a click leaves for the next run to show (its outcome, a warning) takes none of the page's
own places: the elements after it are drawn where a run without it draws them. A run that drew
them one place up left the browser showing the last run's copies beside the new ones, until each
was redrawn (two headings, two grids)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from portal.actor import Actor
from tests.app.conftest import new_user, show_app, signed_in, texts
from tests.conftest import DatabaseHandle
from tests.db.test_writes import CSV, SPEC
from tests.factories import upload_dataset

FLASH = "Done: changeset #7."


def places(at: AppTest) -> list[str]:
    """The type of each of the main area's top-level elements, in order."""
    return [child.type for child in at.main.children.values()]


@pytest.mark.parametrize(
    ("page", "role", "key"),
    [
        ("pages/2_upload.py", "editor", "upload.flash"),
        ("pages/3_datasets.py", "viewer", "datasets.flash"),
        ("pages/4_edit.py", "editor", "edit.{dataset}.done"),
        ("pages/4_edit.py", "editor", "edit.{dataset}.flash"),
        ("pages/4_edit.py", "editor", "edit.{dataset}.reapplied"),
        ("pages/5_history.py", "viewer", "history.flash"),
        ("pages/9_users.py", "admin", "users.flash"),
    ],
)
def test_a_flash_takes_none_of_the_page_s_places(
    fresh_db: DatabaseHandle, page: str, role: str, key: str
) -> None:
    uploader, _ = new_user(fresh_db, role="editor")
    dataset = upload_dataset(Actor(uploader, uploader, "editor"), CSV, spec=SPEC, name="People")
    at, _ = signed_in(fresh_db, role)
    show_app(at)
    at.switch_page(page).run()
    if page == "pages/4_edit.py":
        at.selectbox(key="edit.dataset").select(dataset).run()
    without = places(at)
    at.session_state[key.format(dataset=dataset)] = FLASH
    at.run()
    assert not at.exception
    assert FLASH in texts(at, main_only=True)
    assert places(at) == without
    at.run()  # shown once
    assert FLASH not in texts(at, main_only=True)
    assert places(at) == without
