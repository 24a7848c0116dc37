"""The Edit page with the editor's state injected (AppTest cannot type into a data_editor):
edit -> review -> commit through the dialog; invalid edits listed and nothing committed; a
viewer's forged state refused; a conflict shown and merged; edits survive a page switch."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from portal import diffs, writes
from portal.actor import Actor
from portal.db import session_scope
from portal.spec import ColumnSpec, DatasetSpec
from portal.ui.markdown import WORD_JOINER
from tests.app.conftest import (
    app_test,
    new_user,
    show_app,
    shows_missing_as_empty,
    shows_sign_in,
    sign_in,
    signed_in,
    texts,
)
from tests.conftest import DatabaseHandle
from tests.db.test_writes import CSV, SPEC
from tests.factories import add_column, dataset_rows, make_user, remove_column, upload_dataset

pytestmark = pytest.mark.app

PAGE = "pages/4_edit.py"


@pytest.fixture
def dataset(fresh_db: DatabaseHandle) -> int:
    from sqlalchemy.orm import Session

    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", display_name="Olga O.")
    return upload_dataset(Actor(name, "Olga O.", "editor"), CSV, spec=SPEC, name="People")


def edit_page(db: DatabaseHandle, role: str, dataset_id: int) -> AppTest:
    at, _ = signed_in(db, role)
    show_app(at)
    at.switch_page(PAGE).run()
    at.selectbox(key="edit.dataset").select(dataset_id).run()
    assert not at.exception
    return at


def grid_key(at: AppTest) -> str:
    key = at.data_editor[0].key
    assert key is not None
    assert key.startswith("edit.grid.")
    return key


def set_state(at: AppTest, state: dict[str, object]) -> AppTest:
    at.session_state[grid_key(at)] = {
        "edited_rows": {},
        "added_rows": [],
        "deleted_rows": [],
        **state,
    }
    return at.run()


def table(db: DatabaseHandle, dataset_id: int) -> list[tuple[object, ...]]:
    return dataset_rows(db.app, dataset_id, "_row_id, name, qty, price, note")


def review_table(at: AppTest) -> list[dict[str, object]]:
    """The before -> after table of the review (the grid is an Arrow element too)."""
    [frame] = [d.value for d in at.dataframe if "Before" in d.value.columns]
    return list(frame.to_dict("records"))


def button(at: AppTest, label: str):
    [found] = [b for b in at.button if b.label == label]
    return found


def consume_a_changeset_id(db: DatabaseHandle) -> None:
    """A changeset opened and rolled back (a refused commit, say) uses up an id but no number:
    from then on a changeset's id and its number (``#seq``) differ."""
    with db.app.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO audit.changeset (kind, actor_username, actor_display_name)"
                " VALUES ('edit', 'x', 'X')"
            )
        )
        conn.rollback()


def newest_changeset(db: DatabaseHandle) -> tuple[int, int]:
    """(id, seq) of the newest changeset."""
    with db.app.connect() as conn:
        found = conn.execute(text("SELECT id, seq FROM audit.changeset ORDER BY id DESC")).first()
    assert found is not None
    return found[0], found[1]


def test_edit_review_and_commit(
    fresh_db: DatabaseHandle, dataset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamlit

    spinning: list[str] = []
    spinner = streamlit.spinner

    def spy(text: str = "", **kwargs: Any) -> Any:
        spinning.append(text)
        return spinner(text, **kwargs)

    monkeypatch.setattr(streamlit, "spinner", spy)
    consume_a_changeset_id(fresh_db)
    at = edit_page(fresh_db, "editor", dataset)
    assert len(at.data_editor) == 1
    assert shows_missing_as_empty(at.data_editor[0])
    assert at.data_editor[0].proto.alt == "Rows of People, editable"  # its accessible name
    assert "Rows 1–4 of 4" in texts(at, main_only=True)
    at = set_state(
        at,
        {
            "edited_rows": {0: {"qty": 11}},
            "added_rows": [{"name": "eve", "qty": 2}],
            "deleted_rows": [3],
        },
    )
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Cells changed": "1",
        "Rows changed": "1",
        "Rows added": "1",
        "Rows deleted": "1",
    }
    assert review_table(at) == [{"Row id": 1, "Column": "Qty", "Before": "1", "After": "11"}]
    at = needs_reason_at_click(at)
    at.text_input(key=f"edit.{dataset}.reason").input("recount").run()
    button(at, "Review and commit…").click().run()
    button(at, "Commit").click().run()
    assert not at.exception
    rows = table(fresh_db, dataset)
    assert rows[0] == (1, "ann", 11, Decimal("1.50"), "first")
    assert [r[1] for r in rows] == ["ann", "bob", "cy", "eve"]
    with fresh_db.app.connect() as conn:
        reason, kind = conn.execute(
            text("SELECT reason, kind FROM audit.changeset ORDER BY id DESC LIMIT 1")
        ).one()
    assert (reason, kind) == ("recount", "edit")
    assert not at.metric  # the review is gone: the window was reloaded without pending edits
    # Named by the number History lists it under, not by its id (which differs here).
    changeset_id, seq = newest_changeset(fresh_db)
    assert changeset_id != seq
    assert f"Committed as changeset #{seq}: " in texts(at, main_only=True)
    assert "Committing 1 cell in 1 row changed, 1 row added, 1 row deleted…" in spinning


def test_invalid_edits_are_listed_and_nothing_can_be_committed(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(
        at, {"edited_rows": {0: {"qty": -3, "_row_id": 99}, 7: {"qty": 1}}, "deleted_rows": [-1]}
    )
    assert not at.exception
    assert "reload the page" in texts(at, main_only=True)
    at = set_state(at, {"edited_rows": {0: {"qty": -3, "price": "1.234"}}})
    shown = texts(at, main_only=True)
    assert "2 of your edits break the dataset's rules" in shown
    assert "below the minimum" in shown
    assert not [b for b in at.button if b.label == "Review and commit…"]
    assert at.get("download_button")
    assert table(fresh_db, dataset)[0][2] == 1


def test_a_viewer_sees_the_grid_read_only_and_a_forged_state_is_refused(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "viewer", dataset)
    assert at.data_editor[0].proto.disabled
    at = set_state(at, {"added_rows": [{"name": "mallory"}], "edited_rows": {0: {"qty": 5}}})
    assert not at.exception
    assert "can view this dataset but not change it" in texts(at, main_only=True)
    assert not [b for b in at.button if b.label == "Review and commit…"]
    assert [r[1] for r in table(fresh_db, dataset)] == ["ann", "bob", "cy", "dee"]


def someone_else_commits(dataset_id: int, state: dict[str, object], **view: Any) -> None:
    """Olga commits ``state`` (an editor state) on the window ``view`` selects."""
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset_id, **view)
    window = diffs.make_window(read.spec, diffs.editor_frame(read.spec, read.rows), read.versions)
    with session_scope() as s:
        writes.commit(
            session=s,
            actor=Actor("olga", "Olga O.", "editor"),
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=diffs.build_changeset(window, state, may_edit=True),
            reason="their fix",
        )


def commit_now(at: AppTest, dataset_id: int, reason: str = "mine") -> AppTest:
    at.text_input(key=f"edit.{dataset_id}.reason").input(reason).run()
    button(at, "Review and commit…").click().run()
    return button(at, "Commit").click().run()


def reload_after_conflict(at: AppTest, dataset_id: int) -> AppTest:
    at = commit_now(at, dataset_id)
    assert "changed by someone else" in texts(at, main_only=True)
    # The same commit would meet the same conflict: not until the edits are re-applied.
    assert button(at, "Review and commit…").disabled
    at = button(at, "Reload and re-apply my edits").click().run()
    assert not at.exception
    return at


def test_a_conflict_is_shown_and_reload_reapplies_my_other_cells(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"price": 9, "note": "mine"}}})
    someone_else_commits(dataset, {"edited_rows": {0: {"qty": 5}}})  # row 1, meanwhile
    at = commit_now(at, dataset)
    shown = texts(at, main_only=True)
    assert "changed by someone else" in shown
    assert "their fix" in shown
    assert "Qty: 1 → 5" in shown  # what they changed, not only the row as it is now
    button(at, "Reload and re-apply my edits").click().run()
    assert not at.exception
    # Said on the page of the next run (a toast raised right before a rerun may never show).
    assert [i.value for i in at.info] == ["Re-applied 2 of your cells on the latest rows."]
    # Nothing clashed (they changed Qty, I changed Price and Note): re-applied as pending.
    review = {r["Column"]: r["After"] for r in review_table(at)}
    assert review == {"Price": "9.00", "Note": "mine"}  # at the column's scale, as uploaded
    button(at, "Review and commit…").click().run()
    button(at, "Commit").click().run()
    assert table(fresh_db, dataset)[0] == (1, "ann", 5, Decimal("9"), "mine")


def test_a_row_they_changed_exactly_as_i_did_does_not_block_my_other_edits(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """After the reload a row with nothing left of mine writes nothing, even when it has left
    my filter (it once made every later commit fail)."""
    at = edit_page(fresh_db, "editor", dataset)
    base = f"edit.{dataset}.view"
    at.selectbox(key=f"{base}.fcol").select("qty")
    at.selectbox(key=f"{base}.fop").select("range")
    at.text_input(key=f"{base}.fval").input("0")
    at.text_input(key=f"{base}.fup").input("2")
    at = button(at, "Apply").click().run()
    assert list(at.data_editor[0].value.index) == [1, 2]
    at = set_state(at, {"edited_rows": {0: {"qty": 7}, 1: {"note": "mine"}}})
    someone_else_commits(dataset, {"edited_rows": {0: {"qty": 7}}})  # the same change
    at = reload_after_conflict(at, dataset)
    assert "Choose what to keep" not in texts(at, main_only=True)
    at = commit_now(at, dataset)
    assert not at.exception
    assert table(fresh_db, dataset)[:2] == [
        (1, "ann", 7, Decimal("1.50"), "first"),
        (2, "bob", 2, Decimal("2.00"), "mine"),
    ]


def test_my_delete_of_a_row_nobody_touched_is_reapplied_without_asking(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "mine"}}, "deleted_rows": [2]})
    someone_else_commits(dataset, {"edited_rows": {0: {"qty": 5}}})  # only row 1 moved
    at = reload_after_conflict(at, dataset)
    assert "Choose what to keep" not in texts(at, main_only=True)
    assert not at.checkbox
    commit_now(at, dataset)
    rows = table(fresh_db, dataset)
    assert [(r[1], r[2], r[4]) for r in rows] == [
        ("ann", 5, "mine"),
        ("bob", 2, None),
        ("dee", 4, None),
    ]


def test_the_grid_is_read_only_while_i_choose_what_to_keep(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The merge holds my edits as they were when I reloaded: nothing can be typed into the
    grid until the choices are applied (what was typed meanwhile used to be dropped). The grid
    showed the rows as they were before, under the choices: it is not drawn until then."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "mine"}}})
    someone_else_commits(dataset, {"edited_rows": {0: {"note": "theirs"}}})
    at = reload_after_conflict(at, dataset)
    assert "Choose what to keep" in texts(at, main_only=True)
    assert not at.data_editor
    # Nor the pager and row links under it: rows not shown cannot be paged through.
    assert not [b for b in at.button if b.label in ("Previous", "Next")]
    assert "Rows 1–4 of 4" not in texts(at, main_only=True)
    assert "choose “theirs” (the value saved since" in texts(at, main_only=True)
    # No side is taken for me: each cell waits for my choice.
    assert at.radio(key=f"edit.{dataset}.clash.1.note").value is None
    assert button(at, "Apply my choices").disabled
    assert "None of your cells could be re-applied by itself." in texts(at, main_only=True)
    at.radio(key=f"edit.{dataset}.clash.1.note").set_value("mine").run()
    at = button(at, "Apply my choices").click().run()
    assert not at.data_editor[0].proto.disabled
    assert at.data_editor[0].value.loc[1, "note"] == "mine"
    assert any("Your choices are applied to the latest rows" in i.value for i in at.info)
    assert not at.warning  # news, not a warning
    # The reason typed for the commit that met the conflict is still there.
    assert at.text_input(key=f"edit.{dataset}.reason").value == "mine"
    assert not button(at, "Review and commit…").disabled


def test_i_may_discard_my_edits_instead_of_choosing_what_to_keep(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """Once reloaded after a conflict, the only way out was to apply choices, then discard."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "mine"}}})
    someone_else_commits(dataset, {"edited_rows": {0: {"note": "theirs"}}})
    at = reload_after_conflict(at, dataset)
    assert "Choose what to keep" in texts(at, main_only=True)
    at = button(at, "Discard changes…").click().run()
    at = button(at, "Discard").click().run()
    assert not at.exception
    shown = texts(at, main_only=True)
    assert "Choose what to keep" not in shown
    assert "No unsaved changes." in shown
    assert not at.data_editor[0].proto.disabled
    assert at.data_editor[0].value.loc[1, "note"] == "theirs"


def test_values_to_choose_between_after_a_conflict_are_shown_as_text(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """A value is data: in the labels of the merge's choices (which Streamlit renders as
    Markdown) "2*3*4" must not show as "234" with an italic 3, nor a value become a link."""
    someone_else_commits(dataset, {"edited_rows": {0: {"note": "2*3*4"}}})
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(
        at,
        {"edited_rows": {0: {"note": "[mine](https://example.com)"}, 1: {"note": "a*b*c"}}},
    )
    someone_else_commits(dataset, {"edited_rows": {0: {"note": "_theirs_"}}})
    someone_else_commits(dataset, {"deleted_rows": [1]})
    at = reload_after_conflict(at, dataset)
    radio = at.radio(key=f"edit.{dataset}.clash.1.note")
    assert "“2\\*3\\*4”" in radio.label
    assert radio.options == [
        "theirs: \\_theirs\\_",
        "mine: \\[mine\\]\\(https" + WORD_JOINER + "://example\\.com\\)",  # no autolink
    ]
    [lost] = at.checkbox
    assert "Row 2 was deleted by someone else" in lost.label
    assert "(your edits: Note: a\\*b\\*c)" in lost.label


def test_a_row_deleted_under_my_edit_is_offered_back_without_a_word_of_theirs_or_mine(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """With no cell to choose between, the merge spoke of “theirs” and “mine” anyway, above a
    single checkbox; it says what the checkbox does, and what leaving it unticked does."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {1: {"note": "mine"}}})
    someone_else_commits(dataset, {"deleted_rows": [1]})
    at = reload_after_conflict(at, dataset)
    shown = texts(at, main_only=True)
    assert "“theirs”" not in shown
    assert "rows you edited that someone else deleted: tick one to re-create it" in shown
    assert "unticked, your edits to it are dropped." in shown
    [lost] = at.checkbox
    lost.check().run()
    at = button(at, "Apply my choices").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Rows added"] == "1"


def test_choices_that_leave_nothing_to_commit_say_so(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """Left unticked, the row deleted under my edit took my only edit with it, and the page
    said "review the changes below, then commit them" over "No unsaved changes"."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {1: {"note": "mine"}}})
    someone_else_commits(dataset, {"deleted_rows": [1]})
    at = reload_after_conflict(at, dataset)
    at = button(at, "Apply my choices").click().run()
    assert not at.exception
    [news] = [i.value for i in at.info if "Your choices are applied" in i.value]
    assert news == (
        "Your choices are applied to the latest rows: nothing is left to commit, as the rows"
        " already hold what you chose."
    )
    assert "No unsaved changes." in texts(at, main_only=True)


def test_unsaved_edits_survive_a_page_switch(fresh_db: DatabaseHandle, dataset: int) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {1: {"note": "draft"}}})
    at.switch_page("pages/1_home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    frame = at.data_editor[0].value
    assert frame.loc[2, "note"] == "draft"
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"


def test_the_typed_reason_survives_a_page_or_dataset_switch_with_the_edits(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The edits came back after a look at another page or dataset, but the reason typed for
    them was gone (its field's state went with the grid's); kept since, as it is while the
    database is away. A commit clears it with the edits."""
    from portal.actor import Actor

    at = edit_page(fresh_db, "editor", dataset)
    me = at.session_state["portal.auth.username"]
    other = upload_dataset(Actor(me, me, "editor"), b"A\n1\n", name="Other")
    at = set_state(at, {"edited_rows": {1: {"note": "draft"}}})
    at.text_input(key=f"edit.{dataset}.reason").input("recount").run()
    at.switch_page("pages/1_home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.text_input(key=f"edit.{dataset}.reason").value == "recount"
    at.selectbox(key="edit.dataset").select(other).run()
    at.selectbox(key="edit.dataset").select(dataset).run()
    assert at.text_input(key=f"edit.{dataset}.reason").value == "recount"

    button(at, "Review and commit…").click().run()
    button(at, "Commit").click().run()
    assert not at.exception
    at = set_state(at, {"edited_rows": {1: {"note": "third"}}})
    assert at.text_input(key=f"edit.{dataset}.reason").value == ""


def test_a_page_switch_with_a_rule_broken_keeps_every_edit_to_be_corrected(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """Leaving the page while edits broke a rule lost those edits, a half-typed new row with
    them: they come back with the rows, listed to be corrected beside the edits that keep the
    rules, and commit once corrected."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(
        at,
        {
            "edited_rows": {0: {"note": "typed after"}, 1: {"note": "draft"}, 2: {"qty": -3}},
            "added_rows": [{"note": "half typed"}],  # its name, required, not typed yet
        },
    )
    assert "2 of your edits break the dataset's rules" in texts(at, main_only=True)
    at.switch_page("pages/1_home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert not at.warning  # nothing was lost
    frame = at.data_editor[0].value
    assert (frame.loc[1, "note"], frame.loc[2, "note"], frame.loc[3, "qty"]) == (
        "typed after",
        "draft",
        "-3",  # a number column is given to the grid as text
    )
    assert frame.loc[-1, "note"] == "half typed"
    shown = texts(at, main_only=True)
    assert "2 of your edits break the dataset's rules" in shown
    [problems] = [f.value for f in at.main.dataframe if "Problem" in f.value.columns]
    assert problems[["Where", "Column"]].values.tolist() == [
        ["row 3", "Qty"],
        ["new row 1", "Name"],
    ]
    assert "Your other changes" in shown  # the two notes, which keep the rules
    at = set_state(at, {"edited_rows": {2: {"qty": 5}, 4: {"name": "eve"}}})
    at = commit_now(at, dataset)
    assert not at.exception
    assert [(r[1], r[2], r[4]) for r in table(fresh_db, dataset)] == [
        ("ann", 1, "typed after"),
        ("bob", 2, "draft"),
        ("cy", 5, "third"),
        ("dee", 4, None),
        ("eve", None, "half typed"),
    ]


def test_a_page_switch_loses_only_a_value_the_grid_cannot_show_and_says_so(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """A value of another type than its column's (a forged state: the grid sends none) cannot
    be shown again: it is the one edit lost on leaving the page, and the page says so once."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "kept"}, 2: {"qty": "lots"}}})
    at.switch_page("pages/1_home.py").run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.data_editor[0].value.loc[1, "note"] == "kept"
    [warning] = [w.value for w in at.warning]
    assert "When you left this page, 1 edit could not be kept" in warning
    assert "your other edits are still here" in warning
    assert "row 3, Qty (“lots”)" in warning
    assert ".;" not in warning
    at.run()
    assert not at.warning  # said once


def test_edits_that_break_a_rule_can_be_discarded_with_every_other_unsaved_change(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The problems say to correct or discard the edits: the Discard button is there too (it
    was not, so a pasted block of bad values had to be corrected cell by cell first)."""
    at = edit_page(fresh_db, "editor", dataset)
    base = f"edit.{dataset}.view"
    at.selectbox(key=f"{base}.fcol").select("qty")
    at.selectbox(key=f"{base}.fop").select("equals")
    at.text_input(key=f"{base}.fval").input("2")
    at = button(at, "Apply").click().run()
    at = set_state(at, {"edited_rows": {0: {"note": "draft"}}})  # row 2, on another window
    at = button(at, "Remove").click().run()
    at = set_state(at, {"edited_rows": {0: {"qty": -3}}, "added_rows": [{"name": "eve"}]})
    assert "1 of your edits breaks the dataset's rules" in texts(at, main_only=True)
    at = button(at, "Discard changes…").click().run()
    assert "those that break its rules too: all of it will be lost" in texts(at)
    at = button(at, "Discard").click().run()
    assert not at.exception
    assert "No unsaved changes." in texts(at, main_only=True)
    frame = at.data_editor[0].value
    assert list(frame.index) == [1, 2, 3, 4]
    assert frame.loc[1, "qty"] == "1"
    assert "draft" not in frame["note"].tolist()
    assert [r[1:] for r in table(fresh_db, dataset)] == [
        ("ann", 1, Decimal("1.50"), "first"),
        ("bob", 2, Decimal("2.00"), None),
        ("cy", 3, Decimal("3.25"), "third"),
        ("dee", 4, None, None),
    ]


def test_the_next_person_in_the_same_browser_does_not_inherit_unsaved_edits(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """Signing out keeps the work for its owner only: the same person signing back in finds it,
    anyone else starts clean (they once committed it, under their own name)."""
    at = edit_page(fresh_db, "editor", dataset)
    owner = at.session_state["portal.auth.username"]
    at = set_state(at, {"edited_rows": {0: {"qty": 666}}})
    at.text_input(key=f"edit.{dataset}.reason").input("the first person's reason").run()
    at.sidebar.button(key="portal.sign_out").click().run()
    assert shows_sign_in(at)
    other, password = new_user(fresh_db, role="editor")
    sign_in(at, other, password)
    at.switch_page(PAGE).run()
    at.selectbox(key="edit.dataset").select(dataset).run()
    assert "666" not in texts(at, main_only=True)
    assert "No unsaved changes." in texts(at, main_only=True)
    assert f"edit.{dataset}.reason" not in at.session_state
    assert table(fresh_db, dataset)[0][2] == 1
    assert owner != other


def test_signing_out_and_back_in_keeps_my_unsaved_edits(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    name, password = new_user(fresh_db, role="editor")
    at = sign_in(app_test().run(), name, password)
    show_app(at)
    at.switch_page(PAGE).run()
    at.selectbox(key="edit.dataset").select(dataset).run()
    at = set_state(at, {"edited_rows": {0: {"qty": 7}}})
    at.sidebar.button(key="portal.sign_out").click().run()
    sign_in(at, name, password)
    at.switch_page(PAGE).run()
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"


def test_sorting_a_large_dataset_says_its_index_is_being_built(
    fresh_db: DatabaseHandle, dataset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal import indexes
    from portal.config import get_settings

    monkeypatch.setenv("PORTAL_INDEX_FROM_ROWS", "2")  # the 4-row dataset counts as large
    get_settings.cache_clear()
    at = edit_page(fresh_db, "editor", dataset)
    assert not [c for c in at.caption if "index on" in c.value]
    [sort_by] = [s for s in at.selectbox if s.label == "Sort by"]
    sort_by.select("qty")
    [apply] = [b for b in at.button if b.label == "Apply"]
    apply.click().run()
    assert not at.exception
    [note] = [c.value for c in at.caption if "index on" in c.value]
    assert "“Qty”" in note
    indexes.wait(timeout=30)


def test_the_edit_page_links_to_a_row_s_history(fresh_db: DatabaseHandle, dataset: int) -> None:
    at = edit_page(fresh_db, "viewer", dataset)
    at.selectbox(key=f"edit.{dataset}.history_row").select(3).run()
    links = {link.proto.label: link.proto for link in at.main.page_link}
    row = links["Every version of row 3"]
    assert (row.page, row.query_string) == ("history", f"dataset={dataset}&row=3")
    assert links["History of this dataset"].query_string == f"dataset={dataset}"


def test_lone_surrogate_in_edit_grid(fresh_db: DatabaseHandle, dataset: int) -> None:
    at = set_state(
        edit_page(fresh_db, "editor", dataset), {"edited_rows": {"0": {"note": "\ud800"}}}
    )
    assert not at.exception


@pytest.mark.parametrize(
    "state",
    [
        {"edited_rows": {"0": {"note": "\ud800"}}},  # refused as invalid Unicode
        {"added_rows": [{"name": "eve", "note": "a\ud800b"}]},
        {"edited_rows": {"0": {"_index": "\ud800"}}},  # a row id: refused whatever its value
    ],
)
def test_a_lone_surrogate_is_listed_escaped(
    fresh_db: DatabaseHandle, dataset: int, state: dict[str, object]
) -> None:
    # A browser's JSON can carry a lone UTF-16 surrogate ("\ud800"), which no UTF-8 text (Arrow,
    # a CSV download, the database) can hold: the problems show it as its escape.
    at = set_state(edit_page(fresh_db, "editor", dataset), state)
    assert not at.exception
    assert "of your edits breaks the dataset's rules" in texts(at, main_only=True)
    [problems] = [d.value for d in at.dataframe if "Problem" in d.value.columns]
    assert "\\ud800" in "".join(problems["Value"])
    assert at.download_button[0].label == "Download the problems (CSV)"
    assert at.download_button[0].proto.ignore_rerun  # the grid is not redrawn for a download
    assert table(fresh_db, dataset)[0][4] == "first"


def test_a_column_named_with_a_lone_surrogate_resets_the_grid(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = set_state(edit_page(fresh_db, "editor", dataset), {"edited_rows": {"0": {"\ud800": "x"}}})
    assert not at.exception
    assert "\\ud800" in "".join(w.value for w in at.warning)
    assert "the dataset has no such column" in texts(at, main_only=True)


@pytest.mark.parametrize(
    ("state", "where", "column"),
    [
        ({"edited_rows": {1: {"since": "0000-01-01"}}}, "row 2", "Since"),
        ({"added_rows": [{"name": "eve", "since": "-0001-01-01"}]}, "new row 1", "Since"),
    ],
    ids=["year 0 in a date", "year -1 in a new row's date"],
)
def test_a_value_the_grid_cannot_read_resets_the_grid_not_the_page(
    fresh_db: DatabaseHandle, state: dict[str, object], where: str, column: str
) -> None:
    # Streamlit's own grid fails on these (it does not skip them): a forged state must not
    # take the page down.
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    spec = DatasetSpec(
        (
            ColumnSpec("Name", "name", "text"),
            ColumnSpec("Price", "price", "decimal", scale=2),
            ColumnSpec("Since", "since", "date"),
        )
    )
    csv = b"Name,Price,Since\nann,1.50,2024-01-01\nbob,2.00,2024-02-01\n"
    dataset = upload_dataset(Actor(name, name, "editor"), csv, spec=spec, name="Prices")
    at = edit_page(fresh_db, "editor", dataset)
    before = at.data_editor[0].key
    at = set_state(at, state)
    assert not at.exception
    [warning] = [w.value for w in at.warning]
    assert f"{where}, {column}" in warning
    assert "reload the page" in warning
    assert at.data_editor[0].key != before  # the grid drawn afresh, without the forged state
    rows = dataset_rows(fresh_db.app, dataset, "_row_id, name, price, since")
    assert [r[1:3] for r in rows] == [("ann", Decimal("1.50")), ("bob", Decimal("2.00"))]


def test_a_deleted_position_given_as_text_resets_the_grid_not_the_page(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = set_state(edit_page(fresh_db, "editor", dataset), {"deleted_rows": ["1"]})
    assert not at.exception
    [warning] = [w.value for w in at.warning]
    assert "deleted rows" in warning
    assert "reload the page" in warning
    assert [r[1] for r in table(fresh_db, dataset)] == ["ann", "bob", "cy", "dee"]


def test_more_new_rows_than_a_commit_takes_reset_the_grid_before_it_adds_them(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    before = at.data_editor[0].key
    rows = [{"name": f"n{k}"} for k in range(diffs.MAX_ADDED_ROWS + 1)]
    at = set_state(at, {"added_rows": rows})
    assert not at.exception
    [warning] = [w.value for w in at.warning]
    assert "5,001 new rows in one commit is more than the 5,000 allowed" in warning
    assert "upload them as a CSV file" in warning
    assert at.data_editor[0].key != before
    assert len(at.data_editor[0].value) == 4  # the grid afresh, without the new rows
    assert [r[1] for r in table(fresh_db, dataset)] == ["ann", "bob", "cy", "dee"]


# -- a commit whose outcome was not known ------------------------------------------------------


def unsure_of(at: AppTest, dataset_id: int, xid: str) -> AppTest:
    """As after a commit whose connection broke during COMMIT (``CommitOutcomeUnknown.xid``)."""
    at.session_state[f"edit.{dataset_id}.unsure"] = xid
    return at.run()


def test_a_commit_of_unknown_outcome_that_landed_is_reported_and_not_written_again(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    consume_a_changeset_id(fresh_db)
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 11}}})
    # The commit that lost its connection, as the database kept it.
    with session_scope() as s:
        read = writes.read_window(session=s, dataset_id=dataset)
        window = diffs.make_window(
            read.spec, diffs.editor_frame(read.spec, read.rows), read.versions
        )
        me = Actor(at.session_state["portal.auth.username"], "Me", "editor")
        landed = writes.commit(
            session=s,
            actor=me,
            dataset_id=dataset,
            spec_version=read.spec_version,
            changes=diffs.build_changeset(window, {"edited_rows": {0: {"qty": 11}}}, may_edit=True),
            reason="mine",
        ).changeset_id
        xid = s.scalar(text("SELECT pg_current_xact_id()::text"))
    at = unsure_of(at, dataset, xid)
    assert not at.exception
    newest, number = newest_changeset(fresh_db)
    assert newest == landed != number
    assert f"Your last commit was saved after all, as changeset #{number}:" in texts(at)
    assert not at.metric  # the edits are gone from the review: they are in the dataset
    assert f"edit.{dataset}.unsure" not in at.session_state
    assert table(fresh_db, dataset)[0][2] == 11


def test_a_commit_of_unknown_outcome_pauses_committing_until_the_database_says(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 11}}})
    at.text_input(key=f"edit.{dataset}.reason").input("recount").run()
    # The lost commit's transaction, not ended yet; then rolled back.
    with fresh_db.app.connect() as conn, conn.begin() as still_ending:
        xid = conn.scalar(text("SELECT pg_current_xact_id()::text"))
        at = unsure_of(at, dataset, xid)
        assert "Whether your last commit was saved is not known yet" in texts(at)
        assert button(at, "Review and commit…").disabled
        assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"  # kept
        still_ending.rollback()
    at.run()
    assert not at.exception
    assert "Your last commit was not saved" in texts(at)
    assert not button(at, "Review and commit…").disabled
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"
    at = commit_now(at, dataset, reason="recount")
    assert table(fresh_db, dataset)[0][2] == 11


def test_a_committed_id_that_is_not_my_commit_s_is_not_taken_for_it(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """After a crash the server may have given the lost commit's id to another transaction (the
    events'): its "committed" is not my commit's; my edits stay, to commit again."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 11}}})
    with fresh_db.app.begin() as conn:
        conn.execute(text("INSERT INTO audit.event (kind, actor_username) VALUES ('sign_in', 'x')"))
        xid = conn.scalar(text("SELECT pg_current_xact_id()::text"))
    at = unsure_of(at, dataset, xid)
    assert "Your last commit was not saved" in texts(at)
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"


def test_a_value_quoted_in_a_message_is_shown_as_text_not_markdown(
    fresh_db: DatabaseHandle,
) -> None:
    """Messages quote what was sent; Streamlit renders alerts as Markdown, where "*1* $2$" would
    show as an italic 1 and a formula. The value is shown as typed."""
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    spec = DatasetSpec(
        (ColumnSpec("Name", "name", "text"), ColumnSpec("Price", "price", "decimal"))
    )
    dataset = upload_dataset(
        Actor(name, name, "editor"), b"Name,Price\nann,1.50\n", spec=spec, name="Prices"
    )
    at = set_state(  # a column the dataset does not have, named in the warning
        edit_page(fresh_db, "editor", dataset), {"edited_rows": {0: {"*1* $2$": "x"}}}
    )
    assert not at.exception
    [warning] = [w.value for w in at.warning]
    assert "\\*1\\* \\$2\\$" in warning
    assert "*1* $2$" not in warning


def test_deleting_every_row_of_the_last_window_shows_the_window_before_it(
    fresh_db: DatabaseHandle,
) -> None:
    """After a commit the window is read again at the same offset; with its rows gone that
    offset is past the end, and the page said the dataset had no rows yet (inviting a first row)
    while 100 rows were left. The last window that has rows is shown instead."""
    from sqlalchemy.orm import Session

    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor")
    csv = "Name,Qty\n" + "".join(f"r{i:03d},{i}\n" for i in range(1, 104))
    dataset_id = upload_dataset(Actor(name, "Ed", "editor"), csv.encode(), name="Many")
    at = edit_page(fresh_db, "editor", dataset_id)
    [size] = [s for s in at.selectbox if s.label == "Rows per page"]
    size.select(100)
    at = button(at, "Apply").click().run()
    at = button(at, "Next").click().run()
    assert list(at.data_editor[0].value["name"]) == ["r101", "r102", "r103"]
    at = set_state(at, {"deleted_rows": [0, 1, 2]})
    at = commit_now(at, dataset_id)
    assert not at.exception
    shown = texts(at, main_only=True)
    assert "no rows yet" not in shown
    assert "Rows 1–100 of 100" in shown
    assert len(at.data_editor[0].value) == 100
    assert button(at, "Next").disabled  # the last window now


LONG = DatasetSpec(
    (
        ColumnSpec("Name", "name", "text"),
        ColumnSpec("Big", "big", "integer"),
        ColumnSpec("Long", "long", "decimal"),
        ColumnSpec("Qty", "qty", "integer"),
    )
)


def long_numbers(db: DatabaseHandle) -> int:
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    csv = b"Name,Big,Long,Qty\nann,9223372036854775807,1234567890123456.7891,1\nbob,-3,0.5,2\n"
    return upload_dataset(Actor(name, name, "editor"), csv, spec=LONG, name="Long numbers")


def test_numbers_are_shown_and_edited_as_text(fresh_db: DatabaseHandle) -> None:
    """The grid holds numbers as 64-bit floats: 9223372036854775807 showed as
    9223372036854776000, and a 20-digit decimal rounded; and a number cell changes what is
    pasted in it (12,5 into 125, 15.7 into 15). Every number column is given to the grid as
    text, exactly, right-aligned; what is typed there arrives as text and is stored to the
    last digit, or refused as an upload's cell would be."""
    dataset = long_numbers(fresh_db)
    at = edit_page(fresh_db, "editor", dataset)
    grid = at.data_editor[0]
    assert grid.value["big"].tolist() == ["9223372036854775807", "-3"]
    assert grid.value["long"].tolist() == ["1234567890123456.7891", "0.5"]
    assert grid.value["qty"].tolist() == ["1", "2"]
    columns = json.loads(grid.proto.columns)
    for name in ("big", "long", "qty"):
        assert columns[name]["type_config"]["type"] == "text"
        assert columns[name]["alignment"] == "right"
        assert "Typed as text and read as a file's cell is" in columns[name]["help"]
    at = set_state(at, {"edited_rows": {0: {"qty": "15.7"}, 1: {"qty": "12,5"}}})
    assert not at.exception
    [refused] = [f.value for f in at.main.dataframe if "Problem" in f.value.columns]
    assert refused[["Where", "Value"]].values.tolist() == [["row 1", "15.7"], ["row 2", "12,5"]]
    assert "is not a whole number" in refused["Problem"][0]
    at = set_state(
        at,
        {"edited_rows": {0: {"big": "9223372036854775806"}, 1: {"long": "0.1234567890123456789"}}},
    )
    assert not at.exception
    assert review_table(at) == [
        {
            "Row id": 1,
            "Column": "Big",
            "Before": "9223372036854775807",
            "After": "9223372036854775806",
        },
        {"Row id": 2, "Column": "Long", "Before": "0.5", "After": "0.1234567890123456789"},
    ]
    at.text_input(key=f"edit.{dataset}.reason").input("exact").run()
    button(at, "Review and commit…").click().run()
    button(at, "Commit").click().run()
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "big, long") == [
        (9223372036854775806, Decimal("1234567890123456.7891")),
        (-3, Decimal("0.1234567890123456789")),
    ]


def test_a_number_a_browser_may_have_rounded_as_it_was_typed_is_refused(
    fresh_db: DatabaseHandle,
) -> None:
    """Typed into a number cell, 9007199254740993 reaches the server as 9007199254740992 (the
    nearest 64-bit float), and was stored so. It is refused, saying why and what to do."""
    dataset = long_numbers(fresh_db)
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {1: {"qty": 9007199254740992}}})
    assert not at.exception
    shown = texts(at, main_only=True)
    assert "1 of your edits breaks the dataset's rules" in shown
    assert "may not be the number typed; type a smaller one" in shown
    assert not [b for b in at.button if b.label == "Review and commit…"]
    assert dataset_rows(fresh_db.app, dataset, "qty") == [(1,), (2,)]


def test_a_second_click_on_commit_while_it_commits_does_not_write_the_edits_again(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second click on Commit (a double click, say) reaching the server while the first one
    writes ends that run at its next Streamlit call: after the database committed, before the
    page forgot the edits. The second click's run found the dialog open and the edits still
    pending, and wrote them again (the new row twice). It now finds the first commit and says
    so; nothing is written twice."""
    from contextlib import contextmanager

    import streamlit
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    spinner = streamlit.spinner
    interrupted: list[str] = []

    @contextmanager
    def cut_short_after(text: str = "", **kwargs: Any) -> Any:
        with spinner(text, **kwargs):
            yield
        if text.startswith("Committing") and not interrupted:
            interrupted.append(text)  # as Streamlit does at a rerun request (the next click)
            raise StopException()

    monkeypatch.setattr(streamlit, "spinner", cut_short_after)
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    dataset = upload_dataset(Actor(name, name, "editor"), b"Name,Qty\nann,1\n", name="Plain")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"added_rows": [{"name": "eve", "qty": 2}]})
    at.text_input(key=f"edit.{dataset}.reason").input("new hire").run()
    button(at, "Review and commit…").click().run()
    at = button(at, "Commit").click().run()
    assert interrupted
    assert dataset_rows(fresh_db.app, dataset, "name") == [("ann",), ("eve",)]
    at = button(at, "Commit").click().run()  # the second click
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "name") == [("ann",), ("eve",)]
    _, seq = newest_changeset(fresh_db)
    assert f"Committed as changeset #{seq}: 1 row added." in texts(at)
    assert not at.metric  # no edits left to review
    assert at.data_editor[0].value["name"].tolist() == ["ann", "eve"]  # read again


def test_a_reason_made_required_after_the_rows_were_loaded_is_asked_for_on_the_page(
    fresh_db: DatabaseHandle,
) -> None:
    """An admin required a reason after the rows were loaded: the click on "Review and
    commit…" (the first after) does not open a review of edits without one while the field
    still says "(optional)"; the page says what changed, asks for the reason there and keeps
    the edits."""
    from portal.datasets import set_reason_required

    admin = new_admin()
    dataset = upload_dataset(admin, b"Name,Qty\nann,1\n", name="Loose", reason_required=False)
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 2}}})
    assert at.text_input(key=f"edit.{dataset}.reason").label == "Reason (optional)"
    with session_scope() as s:
        set_reason_required(
            session=s, actor=admin, dataset_id=dataset, required=True, expected=False, reason="x"
        )
    at = button(at, "Review and commit…").click().run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Commit"]  # no review under the old setting
    [warning] = [w.value for w in at.warning]
    assert "“Loose” now needs a reason for every change" in warning
    assert "Your unsaved edits are kept" in warning
    assert at.text_input(key=f"edit.{dataset}.reason").label == "Reason (required)"
    at = needs_reason_at_click(at)
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"  # kept
    assert dataset_rows(fresh_db.app, dataset, "qty") == [(1,)]
    at = commit_now(at, dataset, reason="recount")
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "qty") == [(2,)]


def new_admin() -> Actor:
    """An admin, who changes a dataset's settings or columns while an editor edits it."""
    with session_scope() as s:
        name, _ = make_user(s, role="admin")
    return Actor(name, name, "admin")


def qty_at_most_ten(admin: Actor, dataset_id: int) -> None:
    """The admin makes the dataset's second column, Qty, at most 10 (its first rule change)."""
    from dataclasses import replace

    from portal import rule_changes
    from portal.uploads import dataset_spec

    spec = dataset_spec(dataset_id)
    stricter = replace(spec, columns=(spec.columns[0], replace(spec.columns[1], max=10)))
    with session_scope() as s:
        rule_changes.change_rules(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            spec=stricter,
            expected_version=1,
            reason="no more than ten",
        )


def test_rules_changed_after_the_rows_were_loaded_check_the_kept_edits_again(
    fresh_db: DatabaseHandle,
) -> None:
    """An admin made a column's rule stricter while an editor's edits waited: at the editor's
    next click, whatever it is, the page says so, reads the rows again and checks the kept
    edits under the new rules, which name the value they now refuse — before any review or
    commit of edits checked under the old rules."""

    admin = new_admin()
    dataset = upload_dataset(admin, b"Name,Qty\nann,1\nbob,2\n", name="Stock")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 50}, 1: {"qty": 3}}})
    at.text_input(key=f"edit.{dataset}.reason").input("stock take").run()
    qty_at_most_ten(admin, dataset)
    at = at.run()  # any click: the page runs again
    assert not at.exception
    [warning] = [w.value for w in at.warning]
    assert "An admin changed the columns of “Stock” or their rules since you opened it" in warning
    assert "your unsaved edits are kept and checked under the columns and rules as they" in warning
    assert dataset_rows(fresh_db.app, dataset, "qty") == [(1,), (2,)]
    # The kept 50 breaks the new rule, and is named; the kept 3 does not.
    [problems] = [f.value for f in at.main.dataframe if "Problem" in f.value.columns]
    assert problems.values.tolist() == [
        ["row 1", "Qty", "50", "“50” is above the maximum 10: enter 10 or less."]
    ]
    assert not [b for b in at.button if b.label == "Review and commit…"]
    at = set_state(at, {"edited_rows": {0: {"qty": 9}}})  # typed over: the kept 3 stays
    at = commit_now(at, dataset, reason="stock take")
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "qty") == [(9,), (3,)]


def test_a_column_added_while_edits_wait_keeps_them_and_shows_the_column(
    fresh_db: DatabaseHandle,
) -> None:
    """An admin added a column while an editor's edits waited: the page reads the rows again at
    the editor's next click (here "Review and commit…", which reviews nothing yet), with the new
    column and the edits kept, and commits them."""
    admin = new_admin()
    dataset = upload_dataset(admin, b"Name,Qty\nann,1\nbob,2\n", name="Stock")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {1: {"qty": 3}}})
    at.text_input(key=f"edit.{dataset}.reason").input("stock take").run()
    add_column(admin, dataset, "Shelf", fill="A1")
    at = button(at, "Review and commit…").click().run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Commit"]  # no review under the old columns
    [warning] = [w.value for w in at.warning]
    assert "An admin changed the columns of “Stock” or their rules since you opened it" in warning
    assert dataset_rows(fresh_db.app, dataset, "qty, shelf") == [(1, "A1"), (2, "A1")]
    grid = at.data_editor[0]
    assert list(grid.value["shelf"]) == ["A1", "A1"]
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"  # kept
    at = set_state(at, {"edited_rows": {1: {"qty": 3}, 0: {"shelf": "B2"}}})
    at = commit_now(at, dataset, reason="stock take")
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "qty, shelf") == [(1, "B2"), (3, "A1")]


def test_edits_breaking_a_rule_when_an_admin_changes_the_columns_are_carried_too(
    fresh_db: DatabaseHandle,
) -> None:
    """An admin added a column while an edit on the page broke a rule: the rows are read again
    at the next click all the same, that edit kept and listed with the others, to be
    corrected; a value the grid could not show again (a forged state's) waits to be corrected
    first instead of being lost."""
    admin = new_admin()
    dataset = upload_dataset(admin, CSV, spec=SPEC, name="Stock")  # Qty at least 0
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": "lots"}, 1: {"qty": 3}}})
    add_column(admin, dataset, "Shelf", fill="A1")
    at = at.run()
    assert not at.exception
    assert not at.warning  # "lots" would be lost: not read again yet
    assert "shelf" not in at.data_editor[0].value.columns
    at = set_state(at, {"edited_rows": {0: {"qty": -4}, 1: {"qty": 3}}})  # below its minimum
    [warning] = [w.value for w in at.warning]
    assert "An admin changed the columns of “Stock” or their rules since you opened it" in warning
    assert list(at.data_editor[0].value["shelf"]) == ["A1"] * 4
    assert list(at.data_editor[0].value["qty"]) == ["-4", "3", "3", "4"]
    assert "1 of your edits breaks the dataset's rules" in texts(at, main_only=True)
    at = set_state(at, {"edited_rows": {0: {"qty": 4}}})
    at = commit_now(at, dataset, reason="stock take")
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "qty, shelf") == [
        (4, "A1"),
        (3, "A1"),
        (3, "A1"),
        (4, "A1"),
    ]


def test_a_column_removed_while_edits_wait_drops_only_the_edits_to_it_and_says_so(
    fresh_db: DatabaseHandle,
) -> None:
    """An admin removed a column while an editor's edits to it and to another column waited:
    at the editor's next click the page reads the rows again, keeps the other edits, and says
    which edits went with the column."""
    admin = new_admin()
    dataset = upload_dataset(admin, b"Name,Qty,Note\nann,1,x\nbob,2,xy\ncy,3,\n", name="Stock")
    at = edit_page(fresh_db, "editor", dataset)
    base = f"edit.{dataset}.view"  # rows with a note, sorted by it
    at.selectbox(key=f"{base}.fcol").select("note")
    at.selectbox(key=f"{base}.fop").select("contains")
    at.text_input(key=f"{base}.fval").input("x")
    [sort_by] = [s for s in at.selectbox if s.label == "Sort by"]
    sort_by.select("note")
    at = button(at, "Apply").click().run()
    assert list(at.data_editor[0].value.index) == [1, 2]
    at = set_state(at, {"edited_rows": {0: {"note": "z"}, 1: {"qty": 3, "note": "w"}}})
    at.text_input(key=f"edit.{dataset}.reason").input("stock take").run()
    remove_column(admin, dataset, "note")
    at = at.run()
    assert not at.exception
    assert not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "An admin changed the columns of “Stock”" in warnings
    assert "2 edits to “Note” were dropped: an admin removed the column" in warnings
    assert "A filter or sort on a column an admin removed since was cleared." in warnings
    assert "note" not in at.data_editor[0].value.columns
    assert list(at.data_editor[0].value.index) == [1, 2, 3]
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"  # qty kept
    at = commit_now(at, dataset, reason="stock take")
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "name, qty") == [("ann", 1), ("bob", 3), ("cy", 3)]


def test_a_dataset_renamed_while_edits_wait_keeps_them_and_the_choice(
    fresh_db: DatabaseHandle,
) -> None:
    """Another admin renamed the dataset: the browser named the choice by its old name at the
    next edit, which Streamlit read as the choice itself; the page lost the dataset and every
    unsaved edit with it. The choice and the edits are kept, under the new name."""
    from portal.datasets import describe_dataset

    admin = new_admin()
    dataset = upload_dataset(admin, b"Name,Qty\nann,1\nbob,2\n", name="Stock")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 77}}})
    with session_scope() as s:
        describe_dataset(
            session=s,
            actor=admin,
            dataset_id=dataset,
            name="Stock 2026",
            description="",
            expected=("Stock", ""),
            reason="the year",
        )
    at = set_state(at, {"edited_rows": {0: {"qty": 77}, 1: {"qty": 3}}})
    assert not at.exception
    assert at.selectbox(key="edit.dataset").value == dataset
    picker = at.selectbox(key="edit.dataset")
    assert picker.options[picker.index] == "Stock 2026"
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "2"
    at = commit_now(at, dataset, reason="stock take")
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "qty") == [(77,), (3,)]


def test_discarding_the_edits_discards_the_reason_typed_for_them(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """Discard said all of it would be lost, yet the reason typed for the discarded edits came
    back with the next, unrelated ones, ready to be committed under them (as a commit does,
    a discard now clears it)."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "x"}}})
    at.text_input(key=f"edit.{dataset}.reason").input("typo in ann's note").run()
    at = button(at, "Discard changes…").click().run()
    at = button(at, "Discard").click().run()
    assert "No unsaved changes." in texts(at, main_only=True)
    at = set_state(at, {"edited_rows": {1: {"qty": 20}}})
    assert at.text_input(key=f"edit.{dataset}.reason").value == ""
    needs_reason_at_click(at)


def needs_reason_at_click(at: AppTest) -> AppTest:
    """ "Review and commit…" without the reason the dataset needs: said under the button, and
    no dialog. (The button is not disabled: a reason typed and not yet sent would lose the
    click that sends it.)"""
    at = button(at, "Review and commit…").click().run()
    assert not at.exception
    assert "needs a reason for every change: type why" in " ".join(e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Commit"]
    return at


def set_role(db: DatabaseHandle, username: str, role: str) -> None:
    with db.app.begin() as conn:
        conn.execute(
            text("UPDATE portal.users SET role = :role WHERE username = :u"),
            {"role": role, "u": username},
        )


def test_an_editor_made_a_viewer_sees_the_rows_as_committed_and_keeps_the_unsaved_edits(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """An editor made a viewer with unsaved edits: a new row among them stopped the page with
    "Your role can view this dataset but not change it; nothing was written", the new row in
    the read-only grid and no way to discard it; edited cells showed in the grid as if they
    were the data. A viewer's grid now shows the rows as committed; the page says the edits
    are kept, and they come back with the editor role."""
    at = edit_page(fresh_db, "editor", dataset)
    me = at.session_state["portal.auth.username"]
    at = set_state(at, {"edited_rows": {0: {"qty": 666}}, "added_rows": [{"name": "eve"}]})
    at.switch_page("pages/1_home.py").run()
    at.switch_page(PAGE).run()
    set_role(fresh_db, me, "viewer")
    at.run()
    assert not at.exception
    assert not at.error
    grid = at.data_editor[0]
    assert grid.proto.disabled
    assert list(grid.value.index) == [1, 2, 3, 4]
    assert grid.value.loc[1, "qty"] == "1"
    [note] = [i.value for i in at.info if "unsaved" in i.value]
    assert "1 cell in 1 row changed, 1 row added" in note
    assert not [b for b in at.button if b.label == "Review and commit…"]
    assert button(at, "Discard changes…")
    set_role(fresh_db, me, "editor")
    at.run()
    assert not at.exception
    assert list(at.data_editor[0].value.index) == [1, 2, 3, 4, -1]
    assert at.data_editor[0].value.loc[1, "qty"] == "666"
    assert {m.label: m.value for m in at.metric}["Rows added"] == "1"


def test_a_filter_is_added_once_whatever_is_applied_after_it(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The filter's fields kept what was typed after Apply, so the next Apply (of another sort,
    say) added the same filter again, and changing its value from 2 to 3 filtered "equals 2
    and equals 3": no rows. They now start afresh once the filter is added."""
    at = edit_page(fresh_db, "editor", dataset)
    base = f"edit.{dataset}.view"
    at.selectbox(key=f"{base}.fcol").select("qty")
    at.selectbox(key=f"{base}.fop").select("equals")
    at.text_input(key=f"{base}.fval").input("2")
    at = button(at, "Apply").click().run()
    assert at.text_input(key=f"{base}.fval").value == ""
    [sort_by] = [s for s in at.selectbox if s.label == "Sort by"]
    sort_by.select("name")
    at = button(at, "Apply").click().run()
    assert not at.exception
    view = at.session_state[base]
    assert [(f.column, f.op, f.value) for f in view.filters] == [("qty", "equals", "2")]
    assert view.sort.column == "name"
    assert list(at.data_editor[0].value.index) == [2]
    assert "1 filter" in at.expander[0].label
    assert "(s)" not in at.expander[0].label
    # The next Apply adds its filter to this one: said where it is applied.
    assert any("is added to those above" in c.value for c in at.caption)


def test_a_filter_applied_with_edits_that_break_a_rule_carries_them(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """A filter applied while an edit breaks a rule carries the edit along, listed above the
    filtered rows until it is corrected, and the filter's fields start afresh."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": -3}}})
    base = f"edit.{dataset}.view"
    at.selectbox(key=f"{base}.fcol").select("name")
    at.selectbox(key=f"{base}.fop").select("equals")
    at.text_input(key=f"{base}.fval").input("bob")
    at = button(at, "Apply").click().run()
    assert not at.exception
    assert list(at.data_editor[0].value.index) == [2]  # filtered
    assert at.text_input(key=f"{base}.fval").value == ""
    [problems] = [f.value for f in at.main.dataframe if "Problem" in f.value.columns]
    assert problems[["Where", "Column", "Value"]].values.tolist() == [["row 1", "Qty", "-3"]]
    at = button(at, "Remove").click().run()
    at = set_state(at, {"edited_rows": {0: {"qty": 0}}})
    at = commit_now(at, dataset)
    assert not at.exception
    assert table(fresh_db, dataset)[0][2] == 0


def test_a_rule_broken_on_a_row_of_another_window_is_corrected_there(
    fresh_db: DatabaseHandle,
) -> None:
    """An admin tightened a rule that an edit made on another window now breaks: the problem
    is listed here, and the Next button (refused while edits broke a rule) leads to the row,
    where it is corrected."""

    admin = new_admin()
    rows = "".join(f"r{i},1\n" for i in range(1, 1003))
    dataset = upload_dataset(admin, f"Name,Qty\n{rows}".encode(), name="Long")
    at = edit_page(fresh_db, "editor", dataset)
    at = button(at, "Next").click().run()
    at = set_state(at, {"edited_rows": {1: {"qty": 50}}})  # row 1,002
    at = button(at, "Previous").click().run()
    qty_at_most_ten(admin, dataset)
    at = at.run()
    [problems] = [f.value for f in at.main.dataframe if "Problem" in f.value.columns]
    assert problems[["Where", "Column"]].values.tolist() == [["row 1002", "Qty"]]
    at = button(at, "Next").click().run()
    assert not at.exception
    assert list(at.data_editor[0].value.index) == [1001, 1002]
    at = set_state(at, {"edited_rows": {1: {"qty": 5}}})
    at = commit_now(at, dataset)
    assert not at.exception
    assert dataset_rows(fresh_db.app, dataset, "qty")[-1] == (5,)


def test_a_column_labelled_row_id_is_told_apart_from_the_portal_s_row_id(
    fresh_db: DatabaseHandle,
) -> None:
    """A file with its own "Row id" column had two columns named "Row id" in the grid's headers
    and the filter and sort lists, and the review's table of deleted rows showed the file's
    number under "Row id" in place of the portal's (one key overwrote the other). The file's
    column is "Row id (column)" wherever the page names it."""
    with session_scope() as session:
        username, _ = make_user(session, role="editor")
    editor = Actor(username, "Eddie", "editor")
    dataset_id = upload_dataset(editor, b"Row id,Name\n10,ann\n20,bob\n", name="Imported")
    at = edit_page(fresh_db, "editor", dataset_id)
    [column_box] = [s for s in at.selectbox if s.label == "Column"]
    [sort_box] = [s for s in at.selectbox if s.label == "Sort by"]
    for box in (column_box, sort_box):
        assert box.options == ["Row id", "Row id (column)", "Name"]
    config = json.loads(at.data_editor[0].proto.columns)
    assert [config[n]["label"] for n in ("_index", "row_id", "name")] == [
        "Row id",
        "Row id (column)",
        "Name",
    ]

    set_state(at, {"edited_rows": {"0": {"name": "ann b."}}, "deleted_rows": [1]})
    assert not at.exception
    assert review_table(at) == [{"Row id": 1, "Column": "Name", "Before": "ann", "After": "ann b."}]
    [deleted] = [d.value for d in at.dataframe if "Row id (column)" in d.value.columns]
    assert deleted.to_dict("records") == [{"Row id": 2, "Row id (column)": "20", "Name": "bob"}]


def test_the_pager_is_under_the_grid_where_the_grid_s_toolbar_cannot_cover_it(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The grid's toolbar (add a row, search, full screen) shows over the line above the grid
    on hover: it covered the Next button there."""
    at = edit_page(fresh_db, "editor", dataset)
    order = [
        "grid" if node.type == "dataframe" else node.label
        for node in at.main
        if node.type in ("dataframe", "button")
    ]
    assert order.index("grid") < order.index("Previous") < order.index("Next")


def test_a_return_to_the_page_finds_the_dataset_and_its_unsaved_changes_chosen_again(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """Leaving the page reset the picker to "Choose a dataset" (its widget state goes), with no
    word of the edits kept; and another dataset chosen said nothing of them either."""
    with session_scope() as s:
        owner, _ = make_user(s, role="editor")
    other = upload_dataset(Actor(owner, "O", "editor"), b"Name,Qty\nx,1\n", name="Stock")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": 42}}})
    at.switch_page("pages/3_datasets.py").run()
    at.query_params.clear()  # as the sidebar's link to Edit opens it: no ?dataset=
    at.switch_page(PAGE).run()
    assert not at.exception
    assert at.selectbox(key="edit.dataset").value == dataset
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"
    at.selectbox(key="edit.dataset").select(other).run()
    assert not at.exception
    assert at.selectbox(key="edit.dataset").options == ["People", "Stock"]  # labels stay
    assert "Unsaved changes in “People” too: choose it above" in texts(at, main_only=True)


def test_a_date_of_a_year_far_from_today_is_asked_about_before_the_commit(
    fresh_db: DatabaseHandle,
) -> None:
    """2024-04-01 typed into the grid's date field (month/day/year in an American browser)
    became 0401-02-04, and was committed without a word. It is asked about, not refused."""
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    spec = DatasetSpec(
        (
            ColumnSpec("Name", "name", "text"),
            ColumnSpec("Since", "since", "date"),
            ColumnSpec("Born", "born", "date", min="1000-01-01"),  # its rule says enough
        )
    )
    csv = b"Name,Since,Born\nann,2024-01-01,1990-01-01\n"
    dataset = upload_dataset(Actor(name, name, "editor"), csv, spec=spec, name="Dates")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(
        at,
        {
            "edited_rows": {0: {"born": "1200-05-01"}},
            "added_rows": [{"name": "bob", "since": "0401-02-04"}],
        },
    )
    assert not at.exception
    [warning] = [w.value for w in at.warning]
    assert warning == (
        "1 date to check before you commit: it looks like a slip of the grid's date field."
    )
    [asked] = [f.value for f in at.main.dataframe if "Check" in f.value.columns]
    assert asked[["Where", "Column", "Value"]].values.tolist() == [
        ["new row 1", "Since", "0401-02-04"]
    ]
    assert "The year 401 is far from today" in asked["Check"][0]
    at = commit_now(at, dataset, reason="old records")  # meant: it commits
    assert not at.exception
    assert len(dataset_rows(fresh_db.app, dataset, "name")) == 2


def test_a_value_another_row_holds_is_not_also_listed_as_keeping_the_rules(
    fresh_db: DatabaseHandle,
) -> None:
    """A unique value another row holds was listed as a problem, and again under "Your other
    changes — these keep the rules"."""
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    spec = DatasetSpec(
        (ColumnSpec("Code", "code", "text", unique=True), ColumnSpec("Note", "note", "text"))
    )
    csv = b"Code,Note\nA1,x\nA2,y\n"
    dataset = upload_dataset(Actor(name, name, "editor"), csv, spec=spec, name="Codes")
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(
        at,
        {"edited_rows": {1: {"code": "A1", "note": "z"}}, "added_rows": [{"code": "A1"}]},
    )
    assert not at.exception
    [problems] = [f.value for f in at.main.dataframe if "Problem" in f.value.columns]
    assert problems[["Where", "Column"]].values.tolist() == [
        ["row 2", "Code"],
        ["new row 1", "Code"],
    ]
    [cells] = [f.value for f in at.main.dataframe if "Before" in f.value.columns]
    assert cells[["Column", "After"]].values.tolist() == [["Note", "z"]]
    assert {m.label: m.value for m in at.metric}["Rows added"] == "0"


def test_the_changes_that_keep_the_rules_are_shown_beside_the_problems(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """While one edit broke a rule, only the problems showed: the valid change beside it was
    not listed anywhere."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"qty": -1}, 1: {"note": "checked"}}})
    assert not at.exception
    assert "1 of your edits breaks the dataset's rules" in at.error[0].value
    assert "Your other changes" in [h.value for h in at.subheader]
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"
    [cells] = [f.value for f in at.main.dataframe if "Before" in f.value.columns]
    assert cells[["Column", "After"]].values.tolist() == [["Note", "checked"]]
    assert not [b for b in at.button if b.label == "Review and commit…"]


def test_a_filter_that_cannot_apply_is_refused_beside_the_grid_which_stays(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """A range that ends before it starts, or a value of the wrong type, was added anyway: the
    page then showed only the error and a button that cleared every filter and the sort. It is
    now refused at Apply, beside the grid and the edits, which stay; a filter that fails when
    the rows are read can be removed alone."""
    at = edit_page(fresh_db, "editor", dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "kept"}}})
    base = f"edit.{dataset}.view"
    at.selectbox(key=f"{base}.fcol").select("name")
    at.selectbox(key=f"{base}.fop").select("contains")
    at.text_input(key=f"{base}.fval").input("b")
    at = button(at, "Apply").click().run()
    assert list(at.data_editor[0].value.index) == [2]
    for value, upper, said in [
        ("12", "10", "the range starts after it ends (from “12” to “10”)"),
        ("x", "", "“x” is not a whole number"),
    ]:
        at.selectbox(key=f"{base}.fcol").select("qty")
        at.selectbox(key=f"{base}.fop").select("range")
        at.text_input(key=f"{base}.fval").input(value)
        at.text_input(key=f"{base}.fup").input(upper)
        at = button(at, "Apply").click().run()
        assert not at.exception
        [error] = [e.value for e in at.error]
        assert said in error
        assert "The filter was not added: correct it and apply it again." in error
        assert [f.column for f in at.session_state[base].filters] == ["name"]
        assert list(at.data_editor[0].value.index) == [2]  # the grid stays, filtered as before
        assert at.text_input(key=f"{base}.fval").value == value  # kept, to correct
    # A filter the rows cannot be read with (forged here) is removed alone.
    from dataclasses import replace

    from portal.browse import RowFilter

    view = at.session_state[base]
    at.session_state[base] = replace(
        view, filters=(*view.filters, RowFilter("qty", "range", "12", "10"))
    )
    at.switch_page("pages/1_home.py").run()
    at.switch_page(PAGE).run()  # the rows are read again, with the forged filter
    assert "the range starts after it ends" in at.error[0].value
    assert "Your unsaved changes are kept" in texts(at, main_only=True)
    at = button(at, "Remove the last filter").click().run()
    assert not at.exception
    assert [f.column for f in at.session_state[base].filters] == ["name"]
    assert {m.label: m.value for m in at.metric}["Cells changed"] == "1"


def test_a_reason_too_long_to_keep_is_said_at_the_click_with_its_length(
    fresh_db: DatabaseHandle, dataset: int
) -> None:
    """The field no longer caps what is typed: a browser dropped a pasted reason longer than
    the cap whole, without a word. The click now says how long it is and how long it may be;
    no dialog opens, nothing is written, and the edits and the reason stay to be shortened."""
    at = edit_page(fresh_db, "editor", dataset)
    before = table(fresh_db, dataset)
    at = set_state(at, {"edited_rows": {0: {"note": "x"}}})
    field = at.text_input(key=f"edit.{dataset}.reason")
    assert not field.proto.max_chars  # the browser would drop an over-long paste
    long_reason = "pasted from the ticket " + "x" * 1_990
    at.text_input(key=f"edit.{dataset}.reason").input(long_reason).run()
    at = button(at, "Review and commit…").click().run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Commit"]  # no dialog
    assert [e.value for e in at.error] == [
        "The reason is 2,013 characters; use at most 2,000. Shorten it, then commit."
    ]
    assert table(fresh_db, dataset) == before
    assert at.text_input(key=f"edit.{dataset}.reason").value == long_reason
    assert review_table(at) == [
        {"Row id": 1, "Column": "Note", "Before": "first", "After": "x"}
    ]  # the edit is kept
    at.text_input(key=f"edit.{dataset}.reason").input(long_reason[:2_000]).run()
    at = button(at, "Review and commit…").click().run()
    at = button(at, "Commit").click().run()
    assert not at.exception
    assert table(fresh_db, dataset) != before
