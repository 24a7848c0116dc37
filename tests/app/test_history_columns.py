"""The History page (AppTest): a row's history of a dataset with a column named like one of the
history's own columns opens without a traceback."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from portal.actor import Actor
from tests.app.conftest import show_app, signed_in, texts
from tests.conftest import DatabaseHandle
from tests.factories import make_user, upload_dataset

pytestmark = pytest.mark.app


def test_row_history_of_a_dataset_with_a_version_column_opens(fresh_db: DatabaseHandle) -> None:
    """A "Version" column of text once replaced the history's own version numbers, and casting
    them to integers raised a ValueError the page showed as a traceback."""
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", display_name="Olga O.")
    dataset = upload_dataset(
        Actor(name, "Olga O.", "editor"), b"Version,Name\nv1,ann\n", name="Releases"
    )
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.query_params["dataset"] = str(dataset)
    at.query_params["row"] = "1"
    at.switch_page("pages/5_history.py").run()
    assert not at.exception
    assert "Every version of row 1" in texts(at)
    [frame] = at.main.dataframe
    assert frame.value["Version"].tolist() == [1]
    assert "v1" in frame.value.iloc[0].tolist()
