"""The History page (AppTest): a row's history of a dataset with a column named like one of the
history's own columns opens without a traceback."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from portal import writes
from portal.actor import Actor
from portal.db import session_scope
from portal.diffs import ChangeSet, RowUpdate
from tests.app.conftest import show_app, signed_in, texts
from tests.conftest import DatabaseHandle
from tests.factories import add_column, edit_row, make_user, remove_column, upload_dataset

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
    # Pinned, so it stays in view while a wide row's own columns scroll past.
    assert json.loads(frame.proto.columns)["Version"]["pinned"] is True


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


def _row_history(at: AppTest, dataset: int, row: int) -> AppTest:
    at.query_params["dataset"] = str(dataset)
    at.query_params["row"] = str(row)
    return at.switch_page("pages/5_history.py").run()


def _stock(db: DatabaseHandle, csv: bytes = b"Name,Qty\nann,1\n") -> tuple[Actor, int]:
    """Olga's dataset "Stock", whose row 1 she then changed (Qty 1 -> 5): Olga and its id."""
    with Session(db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", display_name="Olga O.")
    olga = Actor(name, "Olga O.", "editor")
    dataset = upload_dataset(olga, csv, name="Stock")
    edit_row(olga, dataset, 1, {"qty": 5})
    return olga, dataset


def _on_row_1(db: DatabaseHandle, role: str, dataset: int) -> AppTest:
    """Someone new with ``role``, signed in, on the history of row 1 of ``dataset``."""
    at, _ = signed_in(db, role)
    show_app(at)
    return _row_history(at, dataset, 1)


def test_an_editor_restores_a_row_to_an_earlier_version_from_its_history(
    fresh_db: DatabaseHandle,
) -> None:
    """The versions to go back to, what would change (now and then), a reason, then Restore:
    a new changeset, the flash naming it; choosing it again says there is nothing to do."""
    olga, dataset = _stock(fresh_db, b"Name,Qty\nann,1\nbob,2\n")
    edit_row(olga, dataset, 1, {"name": "anne"})
    at = _on_row_1(fresh_db, "editor", dataset)
    assert not at.exception
    picker = at.selectbox(key=f"history.restore.{dataset}.1")
    assert picker.options[0].startswith("Version 2: #2 · Olga O.")  # newest first, not the last
    assert [o.split(":")[0] for o in picker.options] == ["Version 2", "Version 1"]
    picker.select(1).run()
    [*_, changed] = at.main.dataframe
    assert changed.value.values.tolist() == [["Name", "anne", "ann"], ["Qty", "5", "1"]]
    button = at.button(key=f"history.restore.{dataset}.1.1.confirm")
    button.click().run()  # no reason
    assert "a reason is required" in texts(at)
    at.text_input(key=f"history.restore.{dataset}.1.1.reason").input("back to the upload").run()
    at.button(key=f"history.restore.{dataset}.1.1.confirm").click().run()
    assert not at.exception
    assert "Restored row 1 to version 1 as changeset #4: 2 cells restored." in texts(at)
    assert at.selectbox(key=f"history.restore.{dataset}.1").value is None  # done with
    assert at.main.dataframe[0].value["Version"].tolist() == [1, 2, 3, 4]
    at.selectbox(key=f"history.restore.{dataset}.1").select(1).run()
    assert "Row 1 already holds the values of version 1; nothing to restore." in texts(at)


def test_a_restore_of_a_row_changed_meanwhile_writes_nothing_and_says_why(
    fresh_db: DatabaseHandle,
) -> None:
    olga, dataset = _stock(fresh_db)
    at = _on_row_1(fresh_db, "editor", dataset)
    at.selectbox(key=f"history.restore.{dataset}.1").select(1).run()
    at.text_input(key=f"history.restore.{dataset}.1.1.reason").input("undo").run()
    edit_row(olga, dataset, 1, {"name": "anne"})  # meanwhile, shown the plan before it
    at.button(key=f"history.restore.{dataset}.1.1.confirm").click().run()
    assert not at.exception
    assert "Row 1 was changed since you looked at what restoring it would change" in texts(at)
    assert at.main.dataframe[0].value["Version"].tolist() == [1, 2, 3]  # nothing written
    [*_, changed] = at.main.dataframe  # what it would write now, to confirm again
    assert changed.value.values.tolist() == [["Name", "anne", "ann"], ["Qty", "5", "1"]]
    at.button(key=f"history.restore.{dataset}.1.1.confirm").click().run()
    assert "Restored row 1 to version 1 as changeset #4: 2 cells restored." in texts(at)


def test_a_row_changed_after_its_version_was_chosen_is_said_so_before_the_restore(
    fresh_db: DatabaseHandle,
) -> None:
    """A rerun between choosing and clicking (typing the reason) drew the new difference with
    no word, and the click then overwrote the other person's change."""
    olga, dataset = _stock(fresh_db)
    at = _on_row_1(fresh_db, "editor", dataset)
    at.selectbox(key=f"history.restore.{dataset}.1").select(1).run()
    assert not at.warning
    edit_row(olga, dataset, 1, {"name": "anne"})  # meanwhile
    at.text_input(key=f"history.restore.{dataset}.1.1.reason").input("undo").run()
    [warning] = at.warning
    assert "Row 1 was changed after you chose version 1 (changeset #3 by Olga O.)" in (
        warning.value.replace("\\", "")
    )
    [*_, changed] = at.main.dataframe
    assert changed.value.values.tolist() == [["Name", "anne", "ann"], ["Qty", "5", "1"]]


def test_a_viewer_sees_the_versions_but_no_restore(fresh_db: DatabaseHandle) -> None:
    _, dataset = _stock(fresh_db)
    at = _on_row_1(fresh_db, "viewer", dataset)
    assert at.main.dataframe[0].value["Version"].tolist() == [1, 2]
    assert "Restore an earlier version" not in texts(at)
    assert not [s for s in at.selectbox if s.key and s.key.startswith("history.restore")]
