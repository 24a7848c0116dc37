"""The Upload page's column-rules grid with the editor's state injected (AppTest cannot type into
a data_editor): a state that does not fit the grid is refused with a warning and the grid drawn
afresh, and a well-formed edit still applies."""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import new_user, show_app, signed_in, texts
from tests.conftest import DatabaseHandle

pytestmark = pytest.mark.app

UPLOAD = b"Name,Qty\nann,1\nbob,2\n"
RESET = "The column rules grid arrived from your browser malformed"


def upload_page(db: DatabaseHandle) -> AppTest:
    at, _ = signed_in(db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.file_uploader[0].set_value(("rows.csv", UPLOAD, "text/csv"))
    at.run()
    assert not at.exception
    return at


def spec_key(at: AppTest) -> str:
    key = at.data_editor[0].key
    assert key is not None
    assert key.startswith("upload.spec.")
    return key


def set_spec_state(at: AppTest, state: object) -> AppTest:
    at.session_state[spec_key(at)] = state
    return at.run()


def rows_valid(at: AppTest) -> bool:
    return "All 2 rows are valid." in texts(at, main_only=True)


@pytest.mark.parametrize(
    "state",
    [
        {"edited_rows": {"5": {"label": "x"}}},  # no such row
        {"edited_rows": {"-1": {"label": "x"}}},  # negative: never wrapped to the last row
        {"edited_rows": {"0": {"nosuch": "x"}}},  # no such column
        {"edited_rows": {"0": {"name": "x"}}},  # the physical name is not in the grid
        {"edited_rows": {"0": {"_index": 7}}},  # the hidden index
        {"edited_rows": {"first": {"label": "x"}}},  # not a position
        {"edited_rows": {"0": "x"}},  # not a row of cells
        {"edited_rows": ["x"]},
        {"added_rows": [{"label": "x"}]},  # the grid's rows are fixed: one per file column
        {"deleted_rows": [1]},
        {"deleted_rows": ["one"]},
        "not a state",
    ],
)
def test_a_forged_column_rules_state_is_reset_with_a_warning(
    fresh_db: DatabaseHandle, state: object
) -> None:
    at = upload_page(fresh_db)
    forged_key = spec_key(at)
    if isinstance(state, dict):
        state = {"edited_rows": {}, "added_rows": [], "deleted_rows": [], **state}
    at = set_spec_state(at, state)
    assert not at.exception
    assert RESET in texts(at, main_only=True)
    assert spec_key(at) != forged_key  # a new grid: the browser drops the forged state
    assert forged_key not in at.session_state
    assert rows_valid(at)  # the proposed rules, as if nothing had been sent

    at.run()  # the warning was for that run only
    assert not at.exception
    assert RESET not in texts(at, main_only=True)


def test_a_well_formed_edit_applies_after_a_reset(fresh_db: DatabaseHandle) -> None:
    at = upload_page(fresh_db)
    at = set_spec_state(
        at, {"edited_rows": {"5": {"max": "1"}}, "added_rows": [], "deleted_rows": []}
    )
    assert RESET in texts(at, main_only=True)
    at = set_spec_state(
        at, {"edited_rows": {"1": {"max": "1"}}, "added_rows": [], "deleted_rows": []}
    )
    assert not at.exception
    shown = texts(at, main_only=True)
    assert RESET not in shown
    assert "1 cell breaks the rules" in shown  # bob's Qty of 2, above the new maximum
    assert "so nothing has been stored. Fix it in the file" in shown
    # A rule just set for a new dataset may be the thing to change: said too.
    assert "or change the column's rules above if they are not what the data should" in shown
    assert "above the maximum 1" in shown


def test_emptied_cells_of_the_rules_grid_are_empty_rules_not_nan(fresh_db: DatabaseHandle) -> None:
    """An emptied cell reaches the page as NaN: the Options of a text column read "nan" (so
    "only a category column can have options"), an emptied label named the column "nan"."""
    at = upload_page(fresh_db)
    empty = {"options": None, "regex": None, "label": None, "unique": None}
    at = set_spec_state(at, {"edited_rows": {"0": empty}, "added_rows": [], "deleted_rows": []})
    assert not at.exception
    assert not at.error
    assert rows_valid(at)


def test_adding_rows_to_a_dataset_that_needs_a_reason_waits_for_one(
    fresh_db: DatabaseHandle,
) -> None:
    from sqlalchemy import text

    from portal.actor import Actor
    from tests.factories import upload_dataset

    at, name = signed_in(fresh_db, "editor")
    dataset_id = upload_dataset(Actor(name, name, "editor"), UPLOAD, name="People")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.radio[0].set_value("An existing dataset").run()
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    dataset.set_value(dataset_id).run()
    at.file_uploader[0].set_value(("more.csv", b"Name,Qty\ncy,3\n", "text/csv"))
    at.run()
    assert not at.exception
    assert "This dataset needs a reason for every change" in texts(at, main_only=True)
    [store] = [b for b in at.button if b.label == "Append to People"]
    store.click().run()  # not disabled: a reason typed but not yet sent would lose the click
    assert not at.exception
    assert "Say why you are uploading" in " ".join(e.value for e in at.error)
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 1  # nothing stored
    [reason] = [box for box in at.text_input if box.label.startswith("Reason (required")]
    reason.input("x" * 2_001).run()  # not capped in the browser, which drops a longer paste
    [store] = [b for b in at.button if b.label == "Append to People"]
    store.click().run()
    assert "The reason is 2,001 characters; use at most 2,000." in " ".join(
        e.value for e in at.error
    )
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 1  # nothing stored
    [reason] = [box for box in at.text_input if box.label.startswith("Reason (required")]
    reason.input("late count").run()
    [store] = [b for b in at.button if b.label == "Append to People"]
    store.click().run()
    assert not at.exception
    with fresh_db.app.connect() as conn:
        assert (
            conn.scalar(text("SELECT reason FROM audit.changeset ORDER BY id DESC LIMIT 1"))
            == "late count"
        )


def appending_to(db: DatabaseHandle, data: bytes, name: str) -> tuple[AppTest, str]:
    """The Upload page of an editor (display name Eve E), appending to the dataset ``name``
    they made from ``data``; returns it and their username."""
    from portal.actor import Actor
    from tests.factories import upload_dataset

    at, username = signed_in(db, "editor")
    dataset_id = upload_dataset(Actor(username, "Eve E", "editor"), data, name=name)
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.radio[0].set_value("An existing dataset").run()
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    dataset.set_value(dataset_id).run()
    return at, username


def choose_file(at: AppTest, filename: str, data: bytes) -> AppTest:
    at.file_uploader[0].set_value((filename, data, "text/csv"))
    return at.run()


def a_new_file(db: DatabaseHandle, filename: str, data: bytes) -> AppTest:
    """The Upload page of an editor who chose ``data`` as a file for a new dataset."""
    at, _ = signed_in(db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    return choose_file(at, filename, data)


def test_appending_the_very_file_uploaded_before_says_its_rows_would_come_twice(
    fresh_db: DatabaseHandle,
) -> None:
    """The same file appended again stored its rows a second time without a word, though the
    log keeps every upload's fingerprint."""
    at, name = appending_to(fresh_db, UPLOAD, "People")
    choose_file(at, "again.csv", UPLOAD)  # another name, same bytes
    assert not at.exception
    [warning] = [w.value for w in at.warning if "This very file" in w.value]
    assert warning.startswith(
        f"This very file was uploaded into “People” before (changeset #1 by Eve E ({name}), "
    )
    assert ", 2 rows): appending it adds its rows again, a second time." in warning
    choose_file(at, "more.csv", b"Name,Qty\ncy,3\n")
    assert not [w for w in at.warning if "This very file" in w.value]


def test_a_file_uploaded_before_and_refused_for_its_unique_values_says_it_was_uploaded(
    fresh_db: DatabaseHandle,
) -> None:
    """Appended again into a dataset with a unique column, the same file listed every value as
    found already, and the one line saying why (the file was uploaded before) was not drawn."""
    data = b"id,Name\n1,ann\n2,bob\n"
    at, _ = appending_to(fresh_db, data, "Ids")
    choose_file(at, "ids.csv", data)
    assert not at.exception
    assert at.error[0].value.startswith("2 cells break the rules, so nothing has been stored.")
    [warning] = [w.value for w in at.warning if "This very file" in w.value]
    assert warning.endswith(
        ", 2 rows): its rows are there already, so values that must be unique are found twice"
        " below. Choose the file you mean to add."
    )


def test_a_file_with_decimal_commas_appended_is_offered_to_be_read_so(
    fresh_db: DatabaseHandle,
) -> None:
    """A dataset made from a file with decimal commas refused the next such file ("“3,25” is
    not a number") with no word of the option, folded away under Reading options."""
    at, _ = appending_to(fresh_db, b"Name;Price\nann;1.5\n", "Prices")
    choose_file(at, "more.csv", b"Name;Price\ndee;3,2\neve;1.000,5\n")
    assert not at.exception
    assert at.error[0].value.startswith("2 cells break the rules")
    [hint] = [w.value for w in at.warning if "decimal comma" in w.value]
    assert hint.startswith("This file's numbers look written with a decimal comma (1.234,56)")
    at.button(key="upload.read_decimal_commas").click().run()
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    assert not [w for w in at.warning if "decimal comma" in w.value]
    assert "All 2 rows are valid." in texts(at, main_only=True)
    assert at.checkbox(key="upload.decimal_comma").value
    # a file whose other values break the rules gets no such hint
    at.checkbox(key="upload.decimal_comma").uncheck()
    choose_file(at, "odd.csv", b"Name;Price\ndee;many\n")
    assert at.error
    assert not [w for w in at.warning if "decimal comma" in w.value]


def test_a_file_refused_for_its_shape_offers_its_problems_as_a_csv_download(
    fresh_db: DatabaseHandle,
) -> None:
    """As a file refused for its values does (its error report): lines that cannot be read as
    rows were listed on screen only, with nothing to download and work through."""
    at = upload_page(fresh_db)
    at.file_uploader[0].set_value(("rows.csv", b"Name,Qty\nann,1\nbob\ncy,3,x\n", "text/csv"))
    at.run()
    assert not at.exception
    assert "2 lines of the file cannot be read as rows" in at.error[0].value
    assert [d.label for d in at.download_button] == ["Download the problems (CSV)"]
    assert at.download_button[0].proto.ignore_rerun
    assert not at.data_editor  # nothing further is offered for a refused file
    # A few problems are listed as whole sentences (in a table they were cut at its edge).
    assert "- line 3: 1 field, but the header has 2.\n- line 4: 3 fields" in texts(at)
    assert not at.main.dataframe


@pytest.mark.parametrize("length", [float("inf"), float("-inf"), 2.5])
def test_a_max_length_that_is_no_whole_number_is_refused_with_a_message(
    fresh_db: DatabaseHandle, length: float
) -> None:
    """The browser's JSON can carry Infinity (Python's json reads it) or a fraction where the
    grid's step allows only whole numbers."""
    at = upload_page(fresh_db)
    at = set_spec_state(
        at,
        {"edited_rows": {"0": {"max_length": length}}, "added_rows": [], "deleted_rows": []},
    )
    assert not at.exception
    assert "Column “Name”: max length must be a whole number." in [e.value for e in at.error]
    assert not [b for b in at.button if b.label == "Create the dataset"]


def into_people(db: DatabaseHandle, *, replace: bool = False) -> tuple[AppTest, int]:
    """An editor on the Upload page with a one-row file for their dataset "People" (no reason
    needed), to append or, with ``replace``, to replace its rows; the dataset's id."""
    from portal.actor import Actor
    from tests.factories import upload_dataset

    at, name = signed_in(db, "editor")
    dataset_id = upload_dataset(
        Actor(name, name, "editor"), UPLOAD, name="People", reason_required=False
    )
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.radio[0].set_value("An existing dataset").run()
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    dataset.set_value(dataset_id).run()
    if replace:
        [how] = [r for r in at.radio if r.label == "How"]
        how.set_value("Replace all its rows").run()
    at.file_uploader[0].set_value(("more.csv", b"Name,Qty\ncy,3\n", "text/csv"))
    at.run()
    return at, dataset_id


def test_the_replace_confirmation_says_how_many_rows_it_deletes(fresh_db: DatabaseHandle) -> None:
    """As a commit's confirmation says how many rows it deletes; "All current rows" left the
    person to guess whether that was two rows or two million."""
    at, _ = into_people(fresh_db, replace=True)
    [ask] = [b for b in at.button if b.label == "Replace the rows of People"]
    ask.click().run()
    assert not at.exception
    assert "“People” has 2 rows now. All of them will be deleted" in texts(at)


def test_a_closed_replace_dialog_does_not_come_back_by_itself(fresh_db: DatabaseHandle) -> None:
    """The person asks to replace, then closes the confirmation with its X (which does not rerun
    the page) and chooses to append instead: the next run must not open "Replace every row?"
    again, let alone have its Replace button append."""
    from sqlalchemy import text

    from tests.factories import dataset_rows

    at, dataset_id = into_people(fresh_db, replace=True)
    [ask] = [b for b in at.button if b.label == "Replace the rows of People"]
    ask.click().run()
    assert not at.exception
    assert [b for b in at.button if b.label == "Replace"]  # the confirmation is open

    [how] = [r for r in at.radio if r.label == "How"]
    how.set_value("Add the rows (append)").run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Replace"]
    assert [b for b in at.button if b.label == "Append to People"]
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == 1  # the creation

    # Asked again, the replace goes through its confirmation as before.
    [how] = [r for r in at.radio if r.label == "How"]
    how.set_value("Replace all its rows").run()
    assert not [b for b in at.button if b.label == "Replace"]
    [ask] = [b for b in at.button if b.label == "Replace the rows of People"]
    ask.click().run()
    [replace] = [b for b in at.button if b.label == "Replace"]
    replace.click().run()
    assert not at.exception
    assert "The rows of “People” were replaced by 1 row (changeset #" in at.success[0].value
    assert dataset_rows(fresh_db.app, dataset_id, "name") == [("cy",)]
    with fresh_db.app.connect() as conn:
        changesets = conn.execute(
            text(
                "SELECT kind, inserted, deleted, detail->>'mode' FROM audit.changeset ORDER BY seq"
            )
        ).all()
    assert changesets == [("upload", 2, 0, "append"), ("upload", 1, 2, "replace")]


def test_a_rerun_asked_while_the_rows_are_stored_does_not_offer_the_file_again(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A click or keystroke sent while the upload is storing asks for a rerun, and Streamlit
    stops the running script at its next call into Streamlit: here, right after the commit, at
    the status's "Stored". The rerun must know the rows were stored (say so, clear the file),
    not offer the same file with its Append button again, which a second click would load twice."""
    import streamlit as st
    from sqlalchemy import text
    from streamlit.elements.lib.mutable_status_container import StatusContainer

    update = StatusContainer.update
    interrupted: list[bool] = []

    def interrupted_update(self: StatusContainer, **kwargs: object) -> None:
        if kwargs.get("state") == "complete" and not interrupted:
            interrupted.append(True)
            st.rerun()  # what a rerun request pending at this call does
        update(self, **kwargs)  # type: ignore[arg-type]

    at, _ = into_people(fresh_db)
    monkeypatch.setattr(StatusContainer, "update", interrupted_update)
    [store] = [b for b in at.button if b.label == "Append to People"]
    store.click().run()
    assert not at.exception
    assert interrupted
    assert "1 row loaded into “People”" in at.success[0].value
    assert not [b for b in at.button if b.label == "Append to People"]
    with fresh_db.app.connect() as conn:
        changesets = conn.execute(
            text("SELECT inserted, detail->>'mode' FROM audit.changeset ORDER BY seq")
        ).all()
    assert changesets == [(2, "append"), (1, "append")]


def test_the_encoding_preview_shows_the_file_read_as_the_encoding_chosen(
    fresh_db: DatabaseHandle,
) -> None:
    """The lines under the encoding picker are the file "read this way": they were always read
    as the proposed encoding, so choosing another showed what that one would not give."""
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    data = "Item,Price\nTea,€2\nCoffee,€3\n".encode("cp1252")
    at.file_uploader[0].set_value(("prices.csv", data, "text/csv")).run()
    assert not at.exception
    [picker] = [box for box in at.selectbox if box.label == "Encoding"]
    assert picker.value != "cp1252"  # charset-normalizer proposes a Mac or DOS code page
    assert "Tea,€2" not in at.code[0].value
    picker.set_value("cp1252").run()
    assert not at.exception
    assert at.code[0].value.splitlines()[1:] == ["Tea,€2", "Coffee,€3"]
    [convert] = [b for b in at.button if b.label.startswith("Convert from")]
    assert convert.label == "Convert from Windows-1252 (Western European)"
    convert.click().run()
    assert not at.exception
    assert "All 2 rows are valid." in texts(at, main_only=True)


def test_the_proposal_s_notes_on_the_columns_are_one_box_a_line_each(
    fresh_db: DatabaseHandle,
) -> None:
    at = upload_page(fresh_db)
    data = b"Code,Qty\n" + b"".join(b"c*%d,%d\n" % (i, i) for i in range(20))
    at.file_uploader[0].set_value(("ids.csv", data, "text/csv")).run()
    assert not at.exception
    [note] = at.info
    lines = note.value.splitlines()
    assert len(lines) == 2, lines
    assert all(line.startswith("- “") for line in lines), lines
    assert "“Code”: every value differs" in note.value
    assert "“Qty”: every value differs" in note.value


def test_the_errors_are_charted_by_rule_when_more_than_one_rule_is_broken(
    fresh_db: DatabaseHandle,
) -> None:
    at, _ = into_people(fresh_db)

    def charts() -> list[object]:
        return [e for e in at.main if getattr(e, "type", None) == "vega_lite_chart"]

    at.file_uploader[0].set_value(("one.csv", b"Name,Qty\np1,x\np2,y\n", "text/csv")).run()
    assert "2 cells break the rules" in texts(at, main_only=True)
    assert "change the column's rules" not in texts(at, main_only=True)  # an existing dataset's
    assert charts() == []  # a chart of one bar says nothing the list does not
    at.file_uploader[0].set_value(("two.csv", b"Name,Qty\np1,x\n,2\n", "text/csv")).run()
    assert not at.exception
    assert "2 cells break the rules" in texts(at, main_only=True)
    assert len(charts()) == 1
    counts = at.main.dataframe[0].value
    assert dict(zip(counts["rule"], counts["cells"], strict=True)) == {"type": 1, "required": 1}


def test_a_file_with_more_errors_than_are_listed_does_not_say_the_download_has_them_all(
    fresh_db: DatabaseHandle,
) -> None:
    """The check lists the first 10,000 errors and counts the rest: the page said "the download
    lists them all" of a file with 12,000."""
    at, _ = into_people(fresh_db)
    rows = b"".join(b"p%d,x\n" % i for i in range(12_000))
    at.file_uploader[0].set_value(("many.csv", b"Name,Qty\n" + rows, "text/csv")).run()
    assert not at.exception
    shown = texts(at, main_only=True)
    assert "12,000 cells break the rules" in shown
    assert "lists them all" not in shown
    assert "The first 1,000 are shown; the downloads list the first 10,000 of 12,000" in shown


def test_the_preview_shows_numbers_a_browser_would_round_as_written(
    fresh_db: DatabaseHandle,
) -> None:
    """A browser's grid shows numbers as 64-bit floats: the preview of what would be stored
    showed 9223372036854775807 as 9223372036854776000, and a 20-digit decimal rounded. Such a
    column is shown as text, exactly; the others stay numbers."""
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    data = b"big,long,small\n9223372036854775807,1234567890123456.7891,1\n-3,0.5,2\n"
    at.file_uploader[0].set_value(("big.csv", data, "text/csv")).run()
    assert not at.exception
    assert "All 2 rows are valid." in texts(at, main_only=True)
    preview = at.dataframe[-1]
    assert preview.value["big"].tolist() == ["9223372036854775807", "-3"]
    assert preview.value["long"].tolist() == ["1234567890123456.7891", "0.5000"]
    assert preview.value["small"].tolist() == [1, 2]
    assert "“big”, “long”: shown as text" in texts(at, main_only=True)


def test_a_confirmed_encoding_can_be_changed_for_the_same_file(fresh_db: DatabaseHandle) -> None:
    """Once an encoding was confirmed the picker was gone for that file, even chosen again: a
    wrong choice (the proposal, read as “Tea,Ä2”) could not be undone in the session."""
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    data = "Item,Price\nTea,€2\nCoffee,€3\n".encode("cp1252")
    at.file_uploader[0].set_value(("prices.csv", data, "text/csv")).run()
    [proposed] = [box for box in at.selectbox if box.label == "Encoding"]
    assert proposed.value != "cp1252"
    [convert] = [b for b in at.button if b.label.startswith("Convert from")]
    convert.click().run()
    assert not at.exception
    assert "Tea,€2" not in texts(at, main_only=True).replace('"', "")  # read the wrong way
    [again] = [b for b in at.button if b.label == "Choose another encoding"]
    again.click().run()
    assert not at.exception
    [picker] = [box for box in at.selectbox if box.label == "Encoding"]
    picker.set_value("cp1252").run()
    [convert] = [b for b in at.button if b.label.startswith("Convert from")]
    convert.click().run()
    assert not at.exception
    assert "Windows-1252 (Western European)" in texts(at, main_only=True)
    assert at.dataframe[-1].value["item"].tolist() == ["Tea", "Coffee"]
    assert at.dataframe[-1].value["price"].tolist() == ["€2", "€3"]


def test_the_preview_shows_fractions_of_a_second_it_would_hide_as_written(
    fresh_db: DatabaseHandle,
) -> None:
    """The grid shows date-times to the second (and a browser to the millisecond at best): a
    value stored with 0.123456 s was previewed without it. Such a column is shown as text."""
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    data = b"at,whole\n2024-01-05T10:00:00.123456Z,2024-01-05T10:00:00Z\n"
    at.file_uploader[0].set_value(("times.csv", data, "text/csv")).run()
    assert not at.exception
    preview = at.dataframe[-1]
    assert preview.value["at"].tolist() == ["2024-01-05 10:00:00.123456+00:00"]
    assert str(preview.value["whole"].dtype).startswith("timestamp")  # still a date-time
    assert "“at”: shown as text" in texts(at, main_only=True)


def test_the_chosen_dataset_stays_chosen_when_another_is_created_meanwhile(
    fresh_db: DatabaseHandle,
) -> None:
    """Someone creating a dataset changes the picker's list: the picker must keep
    "People", not fall back to the first dataset, whose name on the button an Append click
    would then load the file into."""
    from portal.actor import Actor
    from tests.factories import dataset_rows, upload_dataset

    at, people = into_people(fresh_db)
    other, _ = new_user(fresh_db, role="editor")
    owner = Actor(other, other, "editor")
    first = upload_dataset(owner, UPLOAD, name="Aardvarks", reason_required=False)
    at.run()  # any rerun: a keystroke in the reason field, say
    assert not at.exception
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    assert dataset.value == people
    [store] = [b for b in at.button if b.label.startswith("Append to")]
    assert store.label == "Append to People"
    store.click().run()
    assert not at.exception
    assert dataset_rows(fresh_db.app, first, "name") == [("ann",), ("bob",)]
    assert dataset_rows(fresh_db.app, people, "name") == [("ann",), ("bob",), ("cy",)]


def test_replace_deletes_no_more_rows_than_its_confirmation_said(fresh_db: DatabaseHandle) -> None:
    """The confirmation says "“People” has 2 rows now"; someone appends a row before Replace is
    clicked. Replace must not delete 3 rows on a confirmation of 2: nothing is written, the page
    says the dataset changed, and a second click confirms the count now shown."""
    from portal import uploads
    from portal.actor import Actor
    from tests.factories import dataset_rows

    at, people = into_people(fresh_db, replace=True)
    [ask] = [b for b in at.button if b.label == "Replace the rows of People"]
    ask.click().run()
    assert "“People” has 2 rows now." in texts(at)

    other, _ = new_user(fresh_db, role="editor")
    late = b"Name,Qty\ndee,4\n"
    parsed = uploads.read_file(late)
    spec = uploads.dataset_spec(people)
    uploads.import_file(
        actor=Actor(other, other, "editor"),
        filename="late.csv",
        data=late,
        parsed=parsed,
        spec=spec,
        result=uploads.check(parsed, spec),
        target=uploads.ExistingDataset(people),
    )

    [go] = [b for b in at.button if b.label == "Replace"]
    go.click().run()
    assert not at.exception
    assert dataset_rows(fresh_db.app, people, "name") == [("ann",), ("bob",), ("dee",)]
    assert "has 3 rows now, not the 2 this confirmation said" in texts(at)
    assert "“People” has 3 rows now. All of them will be deleted" in texts(at)

    [go] = [b for b in at.button if b.label == "Replace"]
    go.click().run()
    assert not at.exception
    assert dataset_rows(fresh_db.app, people, "name") == [("cy",)]


def test_after_storing_the_page_links_to_the_rows_and_their_history(
    fresh_db: DatabaseHandle,
) -> None:
    """The success message names the dataset and the changeset; the person then wants to see
    the rows: the page links to the dataset on the Edit page and to its history."""
    at, people = into_people(fresh_db)
    [store] = [b for b in at.button if b.label == "Append to People"]
    store.click().run()
    assert not at.exception
    assert "1 row loaded into “People” (changeset #2)." in at.success[0].value
    links = {link.proto.label: link.proto for link in at.main.page_link}
    edit = links["Open “People” on the Edit page"]
    assert (edit.page, edit.query_string) == ("edit", f"dataset={people}")
    history = links["History of “People”"]
    assert (history.page, history.query_string) == ("history", f"dataset={people}")

    at.run()  # said once: the next run shows the page afresh
    assert not at.success
    assert not at.main.page_link


def test_another_delimiter_draws_the_rules_afresh_without_blaming_the_browser(
    fresh_db: DatabaseHandle,
) -> None:
    """Rules edited for the file read as comma-separated do not fit it read as semicolon-
    separated (one column): the grid starts from the new proposal, without the warning that
    the browser sent a malformed grid."""
    at = upload_page(fresh_db)
    at = set_spec_state(
        at, {"edited_rows": {"1": {"max": "1"}}, "added_rows": [], "deleted_rows": []}
    )
    assert "1 cell breaks the rules" in texts(at, main_only=True)
    [delimiter] = [box for box in at.selectbox if box.label == "Delimiter"]
    delimiter.set_value(";").run()
    assert not at.exception
    shown = texts(at, main_only=True)
    assert RESET not in shown
    assert "All 2 rows are valid." in shown
    assert at.data_editor[0].value["label"].tolist() == ["Name,Qty"]


def test_the_decimal_comma_option_is_not_used_for_a_comma_separated_file(
    fresh_db: DatabaseHandle,
) -> None:
    """Ticked for a comma-separated file (against its help text), the option read quoted
    "1,200" as 1.2: the file was said valid and stored 1.200. It is now said not to apply and
    not used: the column stays text, with the note on its thousands separators."""
    at, _ = signed_in(fresh_db, "editor")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    data = b'store,amount\nA,"1,200"\nB,"2,500"\nC,"3,750"\n'
    at.file_uploader[0].set_value(("amounts.csv", data, "text/csv"))
    at.run()
    [option] = [c for c in at.checkbox if c.label.startswith("Numbers use a decimal comma")]
    option.check().run()
    assert not at.exception
    [warning] = [w.value for w in at.warning if "decimal-comma option" in w.value]
    assert warning.startswith("This file is comma-separated, so the decimal-comma option")
    rules = at.data_editor[0].value
    assert rules.set_index("label").loc["amount", "type"] == "text"
    assert "look like numbers with a thousands separator" in texts(at, main_only=True)


def test_a_spreadsheet_s_empty_unnamed_columns_are_said_to_be_left_out(
    fresh_db: DatabaseHandle,
) -> None:
    """Spreadsheets export empty columns past the last ("Name,Qty,,"): the file was refused
    for columns without a name. They are left out, and the page says so."""
    at = a_new_file(fresh_db, "sheet.csv", b"Name,Qty,,\r\nann,1,,\r\n")
    assert not at.exception
    assert "sheet\\.csv: 1 row, 2 columns ·" in at.caption[0].value
    assert [i.value for i in at.info if "left out" in i.value] == [
        "Columns 3 and 4 of the file have no name and no value (as spreadsheets export empty"
        " columns), so they are left out."
    ]
    assert list(at.data_editor[0].value["label"]) == ["Name", "Qty"]
    assert "The row is valid." in texts(at, main_only=True)


def test_a_spreadsheet_s_blank_rows_are_left_out_and_said_to_be(fresh_db: DatabaseHandle) -> None:
    """Rows of only delimiters (",", as spreadsheets save blank rows) were stored as empty rows,
    and made every column optional."""
    at = a_new_file(fresh_db, "blank.csv", b"Name,Qty\r\nann,1\r\n,\r\nbob,2\r\n,\r\n")
    assert not at.exception
    assert "blank\\.csv: 2 rows, 2 columns ·" in at.caption[0].value
    assert [i.value for i in at.info if "left out" in i.value] == [
        "2 rows of the file have no value in any column (lines 3, 5: as spreadsheets export"
        " blank rows), so they are left out, as blank lines are."
    ]
    rules = at.data_editor[0].value.set_index("label")
    assert rules["required"].tolist() == [True, True]


def test_a_one_row_file_is_counted_as_one_row(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's caption, the replace confirmation and the storing steps said "1 rows"."""
    from portal import uploads

    steps: list[str] = []
    import_file = uploads.import_file

    def recorded(**kwargs: Any) -> uploads.ImportOutcome:
        return import_file(**{**kwargs, "progress": steps.append})

    monkeypatch.setattr(uploads, "import_file", recorded)
    at, _ = into_people(fresh_db, replace=True)
    assert "more\\.csv: 1 row, 2 columns ·" in at.caption[0].value
    [ask] = [b for b in at.button if b.label == "Replace the rows of People"]
    ask.click().run()
    assert "replaced by the 1 row of more" in texts(at)
    [go] = [b for b in at.button if b.label == "Replace"]
    go.click().run()
    assert not at.exception
    assert "Replacing the rows with 1 row (COPY, recorded as one bulk load)" in steps


def _into_codes(
    db: DatabaseHandle, data: bytes, how: str = "Add the rows (append)", name: str = "Codes"
) -> tuple[AppTest, int]:
    """An editor on the Upload page adding ``data`` to "Codes" (Code unique: A1 row 1, B2 row 2)."""
    from portal.actor import Actor
    from portal.spec import ColumnSpec, DatasetSpec
    from tests.factories import upload_dataset

    at, username = signed_in(db, "editor")
    spec = DatasetSpec(
        (ColumnSpec("Code", "code", "text", unique=True), ColumnSpec("Qty", "qty", "integer"))
    )
    dataset_id = upload_dataset(
        Actor(username, username, "editor"),
        b"Code,Qty\nA1,1\nB2,2\n",
        spec=spec,
        name=name,
        reason_required=False,
    )
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.radio[0].set_value("An existing dataset").run()
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    dataset.set_value(dataset_id).run()
    [mode] = [r for r in at.radio if r.label == "How"]
    mode.set_value(how).run()
    at.file_uploader[0].set_value(("more.csv", data, "text/csv"))
    at.run()
    assert not at.exception
    return at, dataset_id


def test_values_the_dataset_has_already_are_in_the_report_before_storing(
    fresh_db: DatabaseHandle,
) -> None:
    """A unique column's values were checked within the file only: one the dataset held already
    passed the check and stopped the store at the first one, so each try showed one more."""
    at, _ = _into_codes(fresh_db, b"Code,Qty\nB2,5\nC3,6\nA1,7\n")
    assert [b for b in at.button if b.label.startswith("Append")] == []
    assert "2 cells break the rules" in at.error[0].value
    [report] = [f.value for f in at.main.dataframe if "problem" in f.value.columns]
    assert report[["line", "column", "value", "rule"]].values.tolist() == [
        [2, "Code", "B2", "unique"],
        [4, "Code", "A1", "unique"],
    ]
    assert report["problem"][0] == (
        "“B2” is in the dataset already (row 2), and values of “Code” must be unique: change it "
        "in the file, or that row on the Edit page."
    )
    # Replacing the rows, the file's values do not meet the old ones.
    at, _ = _into_codes(fresh_db, b"Code,Qty\nB2,5\n", how="Replace all its rows", name="More")
    assert "The row is valid." in texts(at, main_only=True)


def test_a_store_refused_at_the_table_leaves_no_box_saying_it_is_storing(
    fresh_db: DatabaseHandle,
) -> None:
    """A value added to the dataset after the file was checked: the table refuses it when the
    rows are stored; the progress box says nothing was stored, under the refusal."""
    from sqlalchemy import text

    from tests.factories import table_name

    at, dataset_id = _into_codes(fresh_db, b"Code,Qty\nC3,5\n")
    with fresh_db.app.begin() as conn:  # someone else's C3, meanwhile
        conn.execute(
            text(f"INSERT INTO data.{table_name(fresh_db.app, dataset_id)} (code) VALUES ('C3')")
        )
    [store] = [b for b in at.button if b.label == "Append to Codes"]
    store.click().run()
    assert not at.exception
    assert "is already in the dataset" in at.error[0].value
    [status] = at.get("status")
    assert status.label == "Nothing was stored"


def test_a_taken_name_is_said_as_it_is_typed_not_after_creating_the_table(
    fresh_db: DatabaseHandle,
) -> None:
    from portal.actor import Actor
    from tests.factories import upload_dataset

    at, username = signed_in(fresh_db, "editor")
    upload_dataset(Actor(username, username, "editor"), UPLOAD, name="People")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.file_uploader[0].set_value(("people.csv", UPLOAD, "text/csv")).run()
    assert not at.exception
    [create] = [b for b in at.button if b.label == "Create the dataset"]
    assert create.disabled
    assert (  # the name it has, and how names are compared
        "A dataset named “People” exists already (names are compared ignoring case); choose "
        "another name." in [e.value for e in at.error]
    )
    [name] = [t for t in at.text_input if t.label == "Dataset name"]
    name.input("People 2").run()
    assert not at.error
    [create] = [b for b in at.button if b.label == "Create the dataset"]
    assert not create.disabled


def test_the_stored_message_shows_the_dataset_s_name_as_written(fresh_db: DatabaseHandle) -> None:
    """A name of Markdown came out bold in "1 row loaded into …"."""
    from portal.actor import Actor
    from tests.factories import upload_dataset

    at, name = signed_in(fresh_db, "editor")
    dataset_id = upload_dataset(
        Actor(name, name, "editor"), UPLOAD, name="**Bold** x", reason_required=False
    )
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.radio[0].set_value("An existing dataset").run()
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    dataset.set_value(dataset_id).run()
    at.file_uploader[0].set_value(("more.csv", b"Name,Qty\ncy,3\n", "text/csv")).run()
    [store] = [b for b in at.button if b.label.startswith("Append to")]
    store.click().run()
    assert not at.exception
    assert r"1 row loaded into “\*\*Bold\*\* x” (changeset #2)." in at.success[0].value


def test_a_dataset_just_created_is_the_one_chosen_for_the_next_file(
    fresh_db: DatabaseHandle,
) -> None:
    """ "An existing dataset" chose the first dataset by name, not the one just created, into
    which a second file most often goes."""
    from portal.actor import Actor
    from tests.factories import upload_dataset

    at, username = signed_in(fresh_db, "editor")
    upload_dataset(Actor(username, username, "editor"), UPLOAD, name="Apples")
    show_app(at)
    at.switch_page("pages/2_upload.py").run()
    at.file_uploader[0].set_value(("zebras.csv", UPLOAD, "text/csv")).run()
    [name] = [t for t in at.text_input if t.label == "Dataset name"]
    name.input("Zebras").run()
    [create] = [b for b in at.button if b.label == "Create the dataset"]
    create.click().run()
    assert not at.exception
    assert "loaded into “Zebras”" in texts(at, main_only=True)
    at.radio[0].set_value("An existing dataset").run()
    [dataset] = [box for box in at.selectbox if box.label == "Dataset"]
    assert dataset.format_func(dataset.value) == "Zebras"
