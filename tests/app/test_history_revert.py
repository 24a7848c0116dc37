"""Revert on the History page in AppTest: an editor picks a changeset, reverts it through the
dialog with a reason and sees the new changeset named; cells changed since are shown side by
side and only the untouched part is written when they agree; a viewer never sees the button."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from portal.actor import Actor
from portal.datasets import describe_dataset, set_reason_required
from portal.db import session_scope
from portal.diffs import ChangeSet
from tests.app.conftest import show_app, signed_in, texts
from tests.conftest import DatabaseHandle
from tests.db.test_revert import CSV, MIXED, ORIGINAL, SPEC, edit, table, update
from tests.factories import data_table, make_user, upload_dataset

pytestmark = pytest.mark.app

PAGE = "pages/5_history.py"


@pytest.fixture
def olga(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", display_name="Olga O.")
    return Actor(name, "Olga O.", "editor")


@pytest.fixture
def dataset(olga: Actor) -> int:
    return upload_dataset(olga, CSV, spec=SPEC, name="People")


def seq_of(db: DatabaseHandle, changeset_id: int) -> int:
    with db.app.connect() as conn:
        return int(
            conn.scalar(text("SELECT seq FROM audit.changeset WHERE id = :i"), {"i": changeset_id})
        )


def newest(db: DatabaseHandle) -> dict[str, Any]:
    with db.app.connect() as conn:
        row = conn.execute(
            text(
                "SELECT id, seq, kind, actor_username, reason, detail FROM audit.changeset"
                " ORDER BY id DESC LIMIT 1"
            )
        ).one()
        return dict(row._mapping)


def history(
    db: DatabaseHandle, role: str, dataset_id: int, changeset_id: int
) -> tuple[AppTest, str]:
    """The History page signed in with ``role``, the dataset chosen and the changeset opened."""
    at, name = signed_in(db, role)
    show_app(at)
    at.switch_page(PAGE).run()
    at.selectbox(key="history.dataset").select(dataset_id).run()
    seq = seq_of(db, changeset_id)
    key = f"history.{dataset_id}.open"
    [option] = [o for o in at.selectbox(key=key).options if o.startswith(f"#{seq} ")]
    at.selectbox(key=key).select(option).run()
    assert not at.exception
    return at, name


def button(at: AppTest, key: str):
    [found] = [b for b in at.button if b.key == key]
    return found


def test_an_editor_reverts_a_changeset_through_the_dialog(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    edited = edit(olga, dataset, MIXED, reason="stock count")
    at, editor = history(fresh_db, "editor", dataset, edited)
    assert not [i for i in at.info if i.value.startswith("Reverted by")]
    button(at, "history.revert.open").click().run()
    assert not at.exception
    shown = texts(at)
    assert "3 cells in 2 rows restored, 1 row deleted, 1 row inserted again" in shown
    button(at, "history.revert.confirm").click().run()  # a reason is required
    assert not at.exception
    assert "Say why you are reverting this changeset" in " ".join(e.value for e in at.error)
    assert newest(fresh_db)["kind"] == "edit"  # nothing written
    at.text_input(key="history.revert.reason").input("wrong file").run()
    button(at, "history.revert.confirm").click().run()
    assert not at.exception

    cs = newest(fresh_db)
    assert (cs["kind"], cs["actor_username"], cs["reason"]) == ("revert", editor, "wrong file")
    assert cs["detail"]["reverts"]["changeset_id"] == edited
    rows = table(fresh_db, dataset)
    assert sorted(rows.values(), key=str) == sorted(ORIGINAL.values(), key=str)
    [success] = at.success
    assert success.value.startswith(
        f"Reverted #{seq_of(fresh_db, edited)} as changeset #{cs['seq']}: "
    )
    # The changesets list shows the revert, newest first; the dialog is closed.
    assert at.main.dataframe[0].value["#"].tolist()[0] == cs["seq"]
    assert at.main.dataframe[0].value["Kind"].tolist()[0] == "Revert"
    assert not [b for b in at.button if b.key == "history.revert.confirm"]
    # Opened again, the changeset says it was reverted, by which changeset and whom.
    at, _ = history(fresh_db, "viewer", dataset, edited)
    [said] = [i.value for i in at.info if i.value.startswith("Reverted by")]
    assert said.startswith(f"Reverted by #{cs['seq']} (")
    # and offers no Revert whose dialog could only say that nothing can be reverted
    at, _ = history(fresh_db, "editor", dataset, edited)
    assert not [b for b in at.button if b.key == "history.revert.open"]
    seq = seq_of(fresh_db, edited)
    assert (
        f"Nothing of #{seq} is left to revert: #{cs['seq']} put all of it back. To have its"
        f" changes again, open #{cs['seq']} and revert that."
    ) in [c.value for c in at.caption]


def test_cells_changed_since_are_shown_and_only_the_untouched_part_is_written(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    edited = edit(olga, dataset, MIXED)
    edit(olga, dataset, ChangeSet(updates=(update(1, {"qty": 10}, {"qty": 11}),)), reason="recount")
    at, _ = history(fresh_db, "admin", dataset, edited)
    button(at, "history.revert.open").click().run()
    [warning] = at.warning
    assert "1 cell or row was changed since" in warning.value
    [held] = [d.value for d in at.dataframe if "Revert would restore" in d.value.columns]
    assert held.to_dict("records")[0] | {"When": ""} == {
        "Row id": 1,
        "Column": "Qty",
        "Now": "11",
        "Revert would restore": "1",
        "Changed by": "Olga O.",
        "When": "",
        "In": f"#{newest(fresh_db)['seq']} (edit)",
        "Why": "recount",
    }
    at.text_input(key="history.revert.reason").input("undo").run()
    assert button(at, "history.revert.confirm").disabled  # until they agree to leave it
    assert "Tick this to revert: a revert never overwrites" in texts(at)  # and it says so
    at.checkbox(key="history.revert.partial").check().run()
    assert "Tick this to revert" not in texts(at)
    button(at, "history.revert.confirm").click().run()
    assert not at.exception
    rows = table(fresh_db, dataset)
    assert rows[1] == ("ann", 11, Decimal("1.50"), "first")  # held: still 11
    assert rows[3] == ORIGINAL[3]
    assert newest(fresh_db)["detail"]["skipped"] == [[1, "qty"]]
    assert "1 cell or row changed since was left as it is" in at.success[0].value

    # Opened again: what is left was changed since, the rest is back already.
    button(at, "history.revert.open").click().run()
    reverted, info = at.info  # the changeset's "Reverted by #…", then the dialog's
    assert reverted.value.startswith("Reverted by #")
    assert "Nothing can be reverted" in info.value
    assert "everything" not in info.value
    assert "the rest already holds the values from before it" in info.value


def test_a_revert_refused_for_changes_made_meanwhile_shows_the_plan_as_it_is_now(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    """Someone changes a cell of the changeset while the dialog is open: Revert writes nothing,
    and the dialog is drawn again from the new plan (that change shown, the choice to leave it
    alone offered) under the reason why, not the plan the person saw before."""
    edited = edit(olga, dataset, MIXED)
    at, _ = history(fresh_db, "editor", dataset, edited)
    button(at, "history.revert.open").click().run()
    assert not at.warning  # nothing changed since, yet
    at.text_input(key="history.revert.reason").input("undo").run()
    edit(olga, dataset, ChangeSet(updates=(update(1, {"qty": 10}, {"qty": 11}),)), reason="recount")
    before = table(fresh_db, dataset)
    button(at, "history.revert.confirm").click().run()
    assert not at.exception
    assert table(fresh_db, dataset) == before
    [error] = at.error
    assert "changed since it was made and a revert would overwrite them" in error.value
    [warning] = at.warning
    assert "1 cell or row was changed since" in warning.value
    assert not at.checkbox(key="history.revert.partial").value
    assert button(at, "history.revert.confirm").disabled  # until they agree to leave it


def test_a_viewer_sees_no_revert_button(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    edited = edit(olga, dataset, MIXED)
    at, _ = history(fresh_db, "viewer", dataset, edited)
    assert not [b for b in at.button if (b.key or "").startswith("history.revert")]
    assert "Editors and admins can revert a changeset; your role can view it." in [
        c.value for c in at.caption
    ]
    # Forcing the dialog open through session state does not open it for a viewer either.
    at.session_state["history.revert.changeset"] = edited
    at.run()
    assert not at.exception
    assert not [b for b in at.button if (b.key or "").startswith("history.revert")]
    assert newest(fresh_db)["kind"] == "edit"


def test_a_change_of_setting_is_not_offered_for_revert_and_the_page_says_why(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="admin")
        setting = set_reason_required(
            session=s,
            actor=Actor(name, name, "admin"),
            dataset_id=dataset,
            required=False,
            expected=True,
            reason="trusted team",
        )
    at, _ = history(fresh_db, "editor", dataset, setting)
    assert not [b for b in at.button if b.key == "history.revert.open"]
    assert "Dataset set-up changesets cannot be reverted here: only changes to rows can." in texts(
        at
    )
    assert at.main.dataframe[0].value["Kind"].tolist()[:2] == ["Dataset set-up", "Upload"]
    assert "- A reason for every change: required → optional" in texts(at)  # in words


def test_a_rename_reads_in_words_on_the_history_page(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="admin")
        was = s.scalar(text("SELECT name FROM portal.datasets WHERE id = :i"), {"i": dataset})
        renamed = describe_dataset(
            session=s,
            actor=Actor(name, name, "admin"),
            dataset_id=dataset,
            name="Staff *list*",
            description="",
            expected=(was, ""),
            reason="clearer",
        )
    at, _ = history(fresh_db, "viewer", dataset, renamed)
    # Markdown in a name is shown as typed
    assert f"- Name: “{was}” → “Staff \\*list\\*”" in [m.value for m in at.markdown]
    assert "No row changes of its own: what it did is listed above." in texts(at)
    [seal] = [c.value for c in at.code]  # both hashes, each said which
    assert seal.startswith("this      ")
    assert "\nprevious  " in seal
    at.radio(key="history.view").set_value("Row history").run()
    [row] = [n for n in at.number_input if n.label == "Row id"]
    assert "_row_id" not in row.placeholder  # the portal's own name for it


def test_the_cells_put_back_tell_no_value_from_an_empty_text(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    """A write from psql set bob's note (no value) to an empty text: the dialog shows the revert
    putting back ∅ over "", not "" over "" (a change that looks like none)."""
    name = data_table(fresh_db.app, dataset)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE {name} SET note = '' WHERE _row_id = 2"))
    out_of_band = newest(fresh_db)
    assert out_of_band["kind"] == "out_of_band"
    at, _ = history(fresh_db, "editor", dataset, out_of_band["id"])
    button(at, "history.revert.open").click().run()
    assert not at.exception
    [put_back] = [d.value for d in at.dataframe if "Restored" in d.value.columns]
    assert put_back.to_dict("records") == [
        {"Row id": 2, "Column": "Note", "Now": '""', "Restored": "∅"}
    ]


def test_a_revert_reverted_in_turn_says_so_on_the_changeset_it_reverted(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    """Opened after its revert was itself reverted, a changeset said only "Reverted by #N",
    though its change was back in the table."""
    from portal import revert as reverting

    edited = edit(olga, dataset, ChangeSet(updates=(update(1, {"qty": 1}, {"qty": 5}),)))
    with session_scope() as s:
        first = reverting.revert(
            session=s, actor=olga, changeset_id=edited, reason="no"
        ).changeset_id
    with session_scope() as s:
        reverting.revert(session=s, actor=olga, changeset_id=first, reason="yes after all")
    at, _ = history(fresh_db, "viewer", dataset, edited)
    [said] = [i.value for i in at.info if i.value.startswith("Reverted by")]
    assert said.startswith(f"Reverted by #{seq_of(fresh_db, first)} (Olga O")
    assert said.endswith(f", itself reverted by #{newest(fresh_db)['seq']}.")
    at, _ = history(fresh_db, "editor", dataset, edited)  # its change is back: revertible again
    assert button(at, "history.revert.open").label == f"Revert #{seq_of(fresh_db, edited)}…"


def test_a_row_restored_to_a_version_reads_as_a_restore_not_a_revert(
    fresh_db: DatabaseHandle, olga: Actor, dataset: int
) -> None:
    from tests.db.test_restore import do_restore

    edit(olga, dataset, ChangeSet(updates=(update(1, {"qty": 1}, {"qty": 5}),)))
    restored = do_restore(olga, dataset, 1, 1, reason="as uploaded").changeset_id
    at, _ = history(fresh_db, "editor", dataset, restored)
    assert at.main.dataframe[0].value["Kind"].tolist()[:2] == ["Restore", "Edit"]
    assert any(
        m.value.startswith("**Restore** (row 1 back to version 1, made by \\#1)")
        for m in at.markdown
    )
    [option] = [o for o in at.selectbox(key=f"history.{dataset}.open").options if "Restore" in o]
    assert option.startswith(f"#{seq_of(fresh_db, restored)} · Restore · Olga O.")
