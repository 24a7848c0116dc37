"""The History page (AppTest): a row's history of a dataset with a column named like one of the
history's own columns opens without a traceback."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from portal.actor import Actor
from tests.app.conftest import show_app, signed_in, texts
from tests.conftest import DatabaseHandle
from tests.factories import add_column, make_user, remove_column, upload_dataset

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


def test_columns_added_and_removed_read_in_words_and_the_table_as_of_shows_them(
    fresh_db: DatabaseHandle,
) -> None:
    """A column added and one removed after the dataset's creation: each changeset says so in
    words; the table as of the upload shows the removed column, named as removed, and not the
    added one; as of the newest, the other way round — read again after each change, not from
    a rebuild kept from before it."""
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="admin", display_name="Ada A.")
    admin = Actor(name, "Ada A.", "admin")
    dataset = upload_dataset(admin, b"Name,Note\nann,x\nbob,y\n", name="Notes")
    at, _ = signed_in(fresh_db, "viewer")
    show_app(at)
    at.switch_page("pages/5_history.py").run()
    at.selectbox(key="history.dataset").select(dataset).run()

    def as_of(seq: int) -> list[str]:
        key = f"history.{dataset}.open"
        [option] = [o for o in at.selectbox(key=key).options if o.startswith(f"#{seq} ")]
        at.selectbox(key=key).select(option).run()
        at.toggle(key=f"history.{dataset}.as_of").set_value(True).run()
        assert not at.exception
        return list(at.main.dataframe[-1].value.columns)

    assert as_of(1) == ["Row id", "Name", "Note"]  # cached now, under the dataset's newest
    add_column(admin, dataset, "Region", fill="North")
    remove_column(admin, dataset, "note", expected_version=2)
    at.run()
    assert as_of(1) == ["Row id", "Name", "Note (removed)"]
    assert as_of(3) == ["Row id", "Name", "Region"]
    shown = texts(at).replace("\\", "")  # Markdown escapes
    assert "- Column removed: “Note” (text, required)" in shown  # every row had one
    assert "- Its values in 2 rows left the table (the log keeps them)" in shown
    as_of(2)
    shown = texts(at).replace("\\", "")
    assert "- Column added: “Region” (text, optional)" in shown
    assert "The 2 rows it then had got: “North”" in shown


def test_reverting_a_change_to_a_removed_column_says_the_column_is_gone(
    fresh_db: DatabaseHandle,
) -> None:
    """It said the rows already held the values from before the changeset, as if it had been
    reverted already."""
    from portal import writes
    from portal.db import session_scope
    from portal.diffs import ChangeSet, RowUpdate

    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="admin", display_name="Ada A.")
    admin = Actor(name, "Ada A.", "admin")
    dataset = upload_dataset(admin, b"Name,Note\nann,x\nbob,y\n", name="Notes")
    with session_scope() as s:
        edited = writes.commit(
            session=s,
            actor=admin,
            dataset_id=dataset,
            spec_version=1,
            changes=ChangeSet(updates=(RowUpdate(1, 1, {"note": "x"}, {"note": "z"}),)),
            reason="typo",
        )
    remove_column(admin, dataset, "note")
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/5_history.py").run()
    at.selectbox(key="history.dataset").select(dataset).run()
    key = f"history.{dataset}.open"
    with session_scope() as s:
        seq = writes.changeset_number(session=s, changeset_id=edited.changeset_id)
    [option] = [o for o in at.selectbox(key=key).options if o.startswith(f"#{seq} ")]
    at.selectbox(key=key).select(option).run()
    [revert] = [b for b in at.button if b.key == "history.revert.open"]
    revert.click().run()
    assert not at.exception
    said = " ".join(i.value for i in at.info).replace("\\", "")
    assert f"#{seq} changed only “Note”, which an admin removed from the dataset since" in said
