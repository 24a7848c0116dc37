"""The Datasets page: an empty state that points editors to Upload; the list with each dataset's
last change; a dataset opened read-only, paged, sorted and filtered in PostgreSQL; a prepared
download recorded as an export event."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from portal import diffs, profile, writes
from portal.actor import Actor
from portal.db import session_scope
from portal.spec import ColumnSpec, DatasetSpec
from portal.ui.markdown import WORD_JOINER
from tests.app.conftest import (
    app_test,
    events,
    localized,
    new_user,
    show_app,
    shows_missing_as_empty,
    sign_in,
    signed_in,
    texts,
)
from tests.conftest import DatabaseHandle
from tests.db.test_browse import ROWS, seed_people
from tests.factories import add_column, make_user, table_name, upload_dataset

pytestmark = pytest.mark.app

PAGE = "pages/3_datasets.py"


def datasets_page(db: DatabaseHandle, role: str) -> tuple[AppTest, str]:
    at, name = signed_in(db, role)
    show_app(at)
    at.switch_page(PAGE).run()
    assert not at.exception
    return at, name


def open_dataset(at: AppTest, dataset_id: int) -> AppTest:
    at.selectbox(key="datasets.open").select(dataset_id).run()
    assert not at.exception
    return at


def rows_frame(at: AppTest):
    """The opened dataset's rows: the table after the list."""
    _listing, rows = at.main.dataframe
    return rows


def upload_links(at: AppTest) -> list[str]:
    """The URL paths of the page's links to Upload."""
    return [link.proto.page for link in at.main.page_link if link.proto.page == "upload"]


def test_empty_state_points_editors_to_upload(fresh_db: DatabaseHandle) -> None:
    at, _ = datasets_page(fresh_db, "editor")
    assert at.title[0].value == "Datasets"
    assert [i.value for i in at.info] == ["No datasets yet."]
    assert upload_links(at) == ["upload"]
    assert not at.dataframe


def test_empty_state_for_a_viewer_has_no_upload_link(fresh_db: DatabaseHandle) -> None:
    at, _ = datasets_page(fresh_db, "viewer")
    assert [i.value for i in at.info] == ["No datasets yet."]
    assert upload_links(at) == []
    assert "Editors create datasets" in texts(at, main_only=True)


@pytest.mark.parametrize("page", ["pages/4_edit.py", "pages/5_history.py"])
@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_the_edit_and_history_pages_say_what_to_do_when_there_are_no_datasets(
    fresh_db: DatabaseHandle, page: str, role: str
) -> None:
    """As the Datasets page does: an editor gets a link to Upload, a viewer (who cannot upload)
    is told who can. The Edit page told a viewer to upload a CSV file, and gave an editor no
    link; the History page said nothing of what to do."""
    at, _ = signed_in(fresh_db, role)
    show_app(at)
    at.switch_page(page).run()
    assert not at.exception
    [info] = [i.value for i in at.info]
    assert info.startswith("No datasets yet")
    assert "upload" not in info.lower()
    shown = texts(at, main_only=True)
    if role == "editor":
        assert upload_links(at) == ["upload"]
        assert "A dataset is created by uploading a CSV file." in shown
    else:
        assert upload_links(at) == []
        assert "Editors create datasets by uploading CSV files." in shown


def test_list_shows_a_seeded_dataset_with_its_last_change(fresh_db: DatabaseHandle) -> None:
    seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "editor")
    [listing] = at.dataframe
    row = listing.value.iloc[0].to_dict()
    assert (row["Name"], row["Description"], row["Rows"], row["Columns"]) == (
        "People",
        "everyone",
        ROWS,
        6,
    )
    assert (row["Owner"], row["By"]) == ("Eddie Editor", "Eddie Editor")
    assert localized(listing) == ["Rows", "Columns"]  # 2,500 rows, as the metrics show counts
    assert row["Last change"].endswith("UTC")
    assert upload_links(at) == ["upload"]
    assert at.selectbox(key="datasets.open").options == ["People"]
    assert at.selectbox(key="datasets.open").value is None


def test_a_viewer_opens_a_dataset_read_only_and_pages_through_it(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    frame = rows_frame(at)
    assert frame.editing_mode == "read_only"
    assert shows_missing_as_empty(frame)
    assert frame.proto.alt == "Rows of People"
    assert not at.data_editor
    assert upload_links(at) == []
    first = frame.value
    assert len(first) == 100
    assert first["_row_id"].tolist()[:3] == [1, 2, 3]
    assert first["name"].tolist()[:3] == ["Person 001", "Person 002", "Person 003"]
    assert "Rows 1–100 of 250" in texts(at, main_only=True)
    assert "<script>" in texts(at, main_only=True)  # HTML is a value, shown as text

    at.number_input(key=f"datasets.{dataset_id}.page").set_value(3).run()
    assert rows_frame(at).value["name"].tolist()[-1] == "Person 250"
    assert len(rows_frame(at).value) == 50
    assert "Rows 201–250 of 250" in texts(at, main_only=True)

    # Sorting or filtering goes back to the first page.
    at.selectbox(key=f"datasets.{dataset_id}.sort").select("name").run()
    at.radio(key=f"datasets.{dataset_id}.order").set_value("Descending").run()
    assert rows_frame(at).value["name"].tolist()[0] == "Person 250"
    assert at.number_input(key=f"datasets.{dataset_id}.page").value == 1

    at.selectbox(key=f"datasets.{dataset_id}.filter.column").select("name").run()
    at.text_input(key=f"datasets.{dataset_id}.filter.value").input("person 01").run()
    assert rows_frame(at).value["name"].tolist() == [f"Person {i:03d}" for i in range(19, 9, -1)]
    assert "Rows 1–10 of 10 (Name contains “person 01”)" in texts(at, main_only=True)

    at.selectbox(key=f"datasets.{dataset_id}.page_size").select(50).run()
    assert at.number_input(key=f"datasets.{dataset_id}.page").value == 1


def emptied_dataset(db: DatabaseHandle) -> tuple[int, str]:
    """A dataset whose every row was deleted by a commit: columns, no rows."""
    dataset_id, editor = seed_people(db, "Emptied")
    with session_scope() as session:
        read = writes.read_window(session=session, dataset_id=dataset_id, limit=ROWS)
        writes.commit(
            session=session,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=diffs.ChangeSet(
                deletes=tuple(diffs.RowDelete(r[0], read.versions[r[0]], {}) for r in read.rows)
            ),
            reason="start over",
        )
    return dataset_id, "Emptied"


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_dataset_with_no_rows_says_so_and_what_to_do(fresh_db: DatabaseHandle, role: str) -> None:
    """As the Edit page does; the Datasets page said "No rows match (no filter).", as if a
    filter had found nothing."""
    dataset_id, _ = emptied_dataset(fresh_db)
    at, _ = datasets_page(fresh_db, role)
    open_dataset(at, dataset_id)
    shown = texts(at, main_only=True)
    assert "No rows match" not in shown
    assert "The dataset has no rows yet." in shown
    assert ("Add rows on the Edit page" in shown) == (role == "editor")


def test_a_filter_that_matches_nothing_says_how_to_see_rows_again(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.filter.column").select("name").run()
    at.text_input(key=f"datasets.{dataset_id}.filter.value").input("nobody").run()
    assert not at.exception
    assert "No rows match (Name contains “nobody”): change or clear the filter" in texts(
        at, main_only=True
    )
    # No file of no rows is offered (it was, and recorded as a download for nothing).
    assert not [b for b in at.button if b.key == f"datasets.{dataset_id}.prepare"]
    assert "nothing to download" in texts(at, main_only=True)


def test_a_filter_value_of_the_wrong_type_is_explained(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.filter.column").select("qty").run()
    at.selectbox(key=f"datasets.{dataset_id}.filter.op").select("equals").run()
    at.text_input(key=f"datasets.{dataset_id}.filter.value").input("three").run()
    assert not at.exception
    assert at.error[0].value.startswith("Filter on “Qty”:")
    at.text_input(key=f"datasets.{dataset_id}.filter.value").input("").run()
    assert not at.error  # nothing to equal: no filter, as on the Edit page
    assert "(no filter)" in texts(at, main_only=True)
    at.selectbox(key=f"datasets.{dataset_id}.filter.op").select("empty").run()
    assert "Qty is empty" in texts(at, main_only=True)
    assert len(rows_frame(at).value) == ROWS // 10


def test_the_edit_page_s_matches_filter_here_too_a_range_with_either_end_open(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    key = f"datasets.{dataset_id}.filter"
    assert at.selectbox(key=f"{key}.op").options == ["contains", "equals", "range", "empty"]
    assert at.text_input(key=f"{key}.upper").disabled  # "To" is for a range only
    at.selectbox(key=f"{key}.column").select("_row_id").run()
    at.selectbox(key=f"{key}.op").select("range").run()
    at.text_input(key=f"{key}.upper").input("7").run()
    assert not at.exception
    assert rows_frame(at).value["_row_id"].tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert "(Row id from “…” to “7”)" in texts(at, main_only=True)
    at.text_input(key=f"{key}.value").input("5").run()
    assert rows_frame(at).value["_row_id"].tolist() == [5, 6, 7]
    at.text_input(key=f"{key}.upper").input("").run()
    assert len(rows_frame(at).value) == min(100, ROWS - 4)
    assert f"Rows 1–100 of {ROWS - 4}" in texts(at, main_only=True)


def test_preparing_a_download_records_an_export_event(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, viewer = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    assert not at.download_button
    assert events(fresh_db, "export") == []

    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    assert not at.exception
    [download] = at.download_button
    assert download.label == f"Download People.csv ({ROWS} rows)"
    assert events(fresh_db, "export") == [
        {
            "kind": "export",
            "actor_username": viewer,
            "target": f"dataset:{dataset_id}",
            "detail": {
                "dataset_id": dataset_id,
                "dataset": "People",
                "format": "csv",
                "filter": None,
                "sort": None,
                "rows": ROWS,
            },
        }
    ]
    # The prepared file stays on offer across reruns, but not for another filter.
    at.run()
    assert at.download_button
    at.selectbox(key=f"datasets.{dataset_id}.filter.column").select("name").run()
    at.text_input(key=f"datasets.{dataset_id}.filter.value").input("person 2").run()
    assert not at.download_button
    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    assert at.download_button[0].label == "Download People-filtered.csv (51 rows)"
    filtered = events(fresh_db, "export")[-1]["detail"]
    assert (filtered["filter"], filtered["rows"]) == (
        {"column": "name", "op": "contains", "value": "person 2"},
        51,
    )
    assert len(events(fresh_db, "export")) == 2
    # Nor for another order: the file holds the rows in the order the page shows them.
    at.radio(key=f"datasets.{dataset_id}.order").set_value("Descending").run()
    assert not at.download_button
    assert "in the order chosen above" in texts(at, main_only=True)
    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    assert at.download_button
    assert events(fresh_db, "export")[-1]["detail"]["sort"] == {
        "column": "_row_id",
        "descending": True,
    }


def test_a_column_chosen_with_no_text_to_contain_downloads_as_no_filter(
    fresh_db: DatabaseHandle,
) -> None:
    """The rows said "no filter", but the download was named People-filtered.csv, said it held
    the rows matching the filter, and its export event recorded a filter that filtered nothing."""
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.filter.column").select("name").run()
    assert "(no filter)" in texts(at, main_only=True)
    assert "A CSV file of every row" in texts(at, main_only=True)
    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    assert at.download_button[0].label == f"Download People.csv ({ROWS} rows)"
    assert events(fresh_db, "export")[-1]["detail"]["filter"] is None


def test_a_download_prepared_before_the_rows_changed_is_not_offered_after(
    fresh_db: DatabaseHandle,
) -> None:
    """The prepared file stayed on offer, with its old row count, after the rows changed (an
    edit made on the Edit page meanwhile, say): downloading it gave rows the dataset no longer
    had. The page now says the dataset changed and asks to prepare the file again."""
    dataset_id, editor = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    assert at.download_button[0].label == f"Download People.csv ({ROWS} rows)"
    with session_scope() as session:
        read = writes.read_window(session=session, dataset_id=dataset_id, limit=100)
        first = read.rows[0][0]
        writes.commit(
            session=session,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=read.spec_version,
            changes=diffs.ChangeSet(deletes=(diffs.RowDelete(first, read.versions[first], {}),)),
            reason="gone",
        )
    at.run()
    assert not at.exception
    assert not at.download_button
    assert "has changed since the file was prepared" in texts(at, main_only=True)
    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    assert at.download_button[0].label == f"Download People.csv ({ROWS - 1} rows)"
    assert "has changed since the file was prepared" not in texts(at, main_only=True)


def test_the_page_file_opened_directly_works_after_sign_in(fresh_db: DatabaseHandle) -> None:
    """A URL on a fresh server runs the file without app.py: no navigation to link into."""
    seed_people(fresh_db)
    name, password = new_user(fresh_db, role="editor")
    at = sign_in(app_test(PAGE).run(), name, password)
    assert not at.exception
    assert at.dataframe[0].value["Name"].tolist() == ["People"]


def test_an_opened_dataset_links_to_its_rows_history(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    shown = [int(i) for i in rows_frame(at).value["_row_id"]]
    box = at.selectbox(key=f"datasets.{dataset_id}.history_row")
    assert box.options == [str(i) for i in shown]
    box.select(shown[-1]).run()
    links = {link.proto.label: link.proto for link in at.main.page_link}
    row = links[f"Every version of row {shown[-1]}"]
    assert (row.page, row.query_string) == ("history", f"dataset={dataset_id}&row={shown[-1]}")


def test_a_large_total_is_shown_as_an_estimate(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the counting cap the page says "about" and offers the estimated pages; the last
    page is exact again."""
    from portal import browse

    dataset_id, _ = seed_people(fresh_db)
    monkeypatch.setattr(browse, "COUNT_CAP", 5)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.page_size").select(50).run()
    shown = texts(at, main_only=True)
    assert "Rows 1–50 of about 250 (no filter) · page 1 of about 5" in shown
    at.number_input(key=f"datasets.{dataset_id}.page").set_value(5).run()
    assert "Rows 201–250 of 250 (no filter) · page 5 of 5" in texts(at, main_only=True)


def test_a_page_past_an_estimate_that_ran_low_can_be_asked_for(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Page field stopped at the estimated pages: with "page 1 of about 4" for 5 pages,
    typing 5 was refused and the last page could not be reached but one page at a time."""
    from portal import browse, estimates

    dataset_id, _ = seed_people(fresh_db)
    monkeypatch.setattr(browse, "COUNT_CAP", 5)
    counted = estimates.matching_total

    def running_low(*args: object, **kwargs: object) -> tuple[int, bool]:
        total, exact = counted(*args, **kwargs)  # type: ignore[arg-type]
        return (total, exact) if exact else (total - 60, exact)

    monkeypatch.setattr(browse.estimates, "matching_total", running_low)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.page_size").select(50).run()
    assert "Rows 1–50 of about 190 (no filter) · page 1 of about 4" in texts(at, main_only=True)
    at.number_input(key=f"datasets.{dataset_id}.page").set_value(5).run()
    assert not at.exception
    assert "Rows 201–250 of 250 (no filter) · page 5 of 5" in texts(at, main_only=True)


def test_an_admin_lets_changes_go_without_a_reason_after_saying_why(
    fresh_db: DatabaseHandle,
) -> None:
    from sqlalchemy import text

    dataset_id, _ = seed_people(fresh_db)
    for role in ("viewer", "editor"):
        at = open_dataset(datasets_page(fresh_db, role)[0], dataset_id)
        assert not [b for b in at.button if b.key == f"datasets.{dataset_id}.setting"]
    at, admin = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    assert "Every change needs a reason." in texts(at, main_only=True)
    [setting] = [b for b in at.button if b.key == f"datasets.{dataset_id}.setting"]
    setting.click().run()
    [change] = [b for b in at.button if b.label == "Change it"]
    change.click().run()  # without a reason
    assert "Say why you are changing this setting" in " ".join(e.value for e in at.error)
    # Not capped in the browser (which drops a longer paste whole, without a word): refused.
    at.text_input(key=f"datasets.{dataset_id}.setting.reason").input("x" * 2_001).run()
    [change] = [b for b in at.button if b.label == "Change it"]
    change.click().run()
    assert "The reason is 2,001 characters; use at most 2,000." in [e.value for e in at.error]
    at.text_input(key=f"datasets.{dataset_id}.setting.reason").input("bulk fixes").run()
    [change] = [b for b in at.button if b.label == "Change it"]
    change.click().run()
    assert not at.exception
    assert "may be made without a reason" in at.success[0].value
    assert "Changes may be made without a reason." in texts(at, main_only=True)
    with fresh_db.app.connect() as conn:
        assert not conn.scalar(
            text("SELECT reason_required FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
        )
        assert conn.execute(
            text("SELECT actor_username, reason FROM audit.changeset ORDER BY id DESC LIMIT 1")
        ).one() == (admin, "bulk fixes")


def test_numbers_a_browser_would_round_are_shown_as_text_exactly(fresh_db: DatabaseHandle) -> None:
    """The grid holds numbers as 64-bit floats: 9223372036854775807 showed as
    9223372036854776000, and a 20-digit decimal rounded. Such a column is shown as text, as
    stored; the others stay numbers."""
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    spec = DatasetSpec(
        (
            ColumnSpec("Big", "big", "integer"),
            ColumnSpec("Long", "long", "decimal"),
            ColumnSpec("Qty", "qty", "integer"),
            ColumnSpec("Rate", "rate", "decimal"),  # no scale: the grid shows 4 decimals
        )
    )
    csv = b"Big,Long,Qty,Rate\n9223372036854775807,1234567890123456.7891,1,0.123456\n-3,0.5,,1\n"
    dataset_id = upload_dataset(Actor(name, name, "editor"), csv, spec=spec, name="Long numbers")
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    frame = rows_frame(at)
    assert frame.value["big"].tolist() == ["9223372036854775807", "-3"]
    assert frame.value["long"].tolist() == ["1234567890123456.7891", "0.5"]
    assert frame.value["qty"].tolist()[0] == 1
    assert frame.value["rate"].tolist() == ["0.123456", "1"]
    columns = json.loads(frame.proto.columns)
    assert columns["big"]["type_config"]["type"] == "text"
    assert columns["qty"]["type_config"]["type"] == "number"
    assert "“Big”, “Long”, “Rate”: shown as text, exactly as stored" in texts(at, main_only=True)


def test_a_viewer_profiles_a_column(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.profile").select("qty").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.main.metric}
    empty = ROWS // 10  # qty(i) is empty for every tenth row
    assert metrics == {"Empty cells": f"{empty:,} ({empty / ROWS:.0%})", "Distinct values": "7"}
    assert f"Every one of the {ROWS:,} rows." in texts(at, main_only=True)
    charts = [e for e in at.main if getattr(e, "type", None) == "vega_lite_chart"]
    assert len(charts) == 2  # the most frequent values, and the spread of the numbers
    assert "from the smallest (0) to the largest (6)" in texts(at, main_only=True)
    assert "Of the whole dataset" not in texts(at, main_only=True)  # no filter
    key = f"datasets.{dataset_id}.filter"
    at.selectbox(key=f"{key}.column").select("_row_id").run()
    at.selectbox(key=f"{key}.op").select("range").run()
    at.text_input(key=f"{key}.upper").input("7").run()
    assert "Of the whole dataset: the filter above chooses the rows shown" in texts(
        at, main_only=True
    )
    assert f"Every one of the {ROWS:,} rows." in texts(at, main_only=True)

    at.selectbox(key=f"datasets.{dataset_id}.profile").select("name").run()
    assert "No value is there twice." in texts(at, main_only=True)
    assert not [e for e in at.main if getattr(e, "type", None) == "vega_lite_chart"]


def test_a_column_of_one_value_is_profiled_in_words_not_a_chart_of_one_bar(
    fresh_db: DatabaseHandle,
) -> None:
    with session_scope() as s:
        name, _ = make_user(s, role="editor")
    dataset_id = upload_dataset(
        Actor(name, name, "editor"), b"Name,Qty\na,3\nb,3\nc,\nd,3\n", name="Same"
    )
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.profile").select("qty").run()
    assert not at.exception
    assert {m.label: m.value for m in at.main.metric} == {
        "Empty cells": "1 (25%)",
        "Distinct values": "1",
    }
    assert "Its only value is “3”, in 3 rows." in texts(at, main_only=True)
    assert not [e for e in at.main if getattr(e, "type", None) == "vega_lite_chart"]


def test_a_profile_stopped_at_its_time_limit_is_not_run_again_by_every_click(
    fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    runs: list[str] = []
    real = profile._profile

    def slow(session, source, c, sampled):  # type: ignore[no-untyped-def]
        runs.append(c.name)
        session.execute(text("SELECT pg_sleep(0.2)"))
        return real(session, source, c, sampled)

    monkeypatch.setattr(profile, "TIME_LIMIT", "1ms")
    monkeypatch.setattr(profile, "_profile", slow)
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.profile").select("qty").run()
    assert [e.value for e in at.error if "took longer than 1ms" in e.value]
    assert runs == ["qty"]

    at.run()  # any click on the page: paging the rows, a filter, preparing the download
    assert not at.exception
    assert [e.value for e in at.error if "took longer than 1ms" in e.value]  # still said
    assert runs == ["qty"]  # not another 5 s of the person's and the database's time

    monkeypatch.setattr(profile, "TIME_LIMIT", "5s")
    at.button(key=f"datasets.{dataset_id}.profile_again").click().run()
    assert not at.exception
    assert runs == ["qty", "qty"]
    assert not [e.value for e in at.error if "took longer" in e.value]
    assert {m.label for m in at.main.metric} == {"Empty cells", "Distinct values"}


def test_the_profile_of_a_dataset_without_rows_says_so(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    table = table_name(fresh_db.app, dataset_id)
    with fresh_db.superuser.begin() as conn:  # every row deleted (from psql, or on Edit)
        conn.execute(text(f"DELETE FROM data.{table}"))
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.selectbox(key=f"datasets.{dataset_id}.profile").select("qty").run()
    assert not at.exception
    assert [i.value for i in at.main.info] == ["There are no rows to profile."]
    assert not at.main.metric  # not "Empty cells: 0" beside "every cell of it is empty"


def test_a_column_labelled_row_id_is_told_apart_from_the_portal_s_row_id(
    fresh_db: DatabaseHandle,
) -> None:
    """A file with its own "Row id" column (another system's row numbers) gave the page two
    columns named "Row id": in Filter on and Sort by, and as two grid headers, so filtering the
    file's row 10 could pick the portal's row id and find nothing. The file's column is now
    "Row id (column)" wherever the page names it, and the filter's words say which one."""
    with session_scope() as session:
        username, _ = make_user(session, role="editor")
    editor = Actor(username, "Eddie", "editor")
    dataset_id = upload_dataset(editor, b"Row id,Name\n10,ann\n20,bob\n", name="Imported")
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    key = f"datasets.{dataset_id}"
    for widget in ("filter.column", "sort"):
        box = at.selectbox(key=f"{key}.{widget}")
        assert box.options == ["Row id", "Row id (column)", "Name"]
    assert at.selectbox(key=f"{key}.profile").options == ["Row id (column)", "Name"]
    config = json.loads(rows_frame(at).proto.columns)
    assert [config[n]["label"] for n in ("_row_id", "row_id", "name")] == [
        "Row id",
        "Row id (column)",
        "Name",
    ]

    at.selectbox(key=f"{key}.filter.column").select("row_id").run()
    at.selectbox(key=f"{key}.filter.op").select("equals").run()
    at.text_input(key=f"{key}.filter.value").input("10").run()
    assert rows_frame(at).value["name"].tolist() == ["ann"]
    assert "(Row id (column) equals “10”)" in texts(at, main_only=True)
    at.text_input(key=f"{key}.filter.value").input("ten").run()
    [error] = at.error
    assert error.value.startswith("Filter on “Row id (column)”:")


def test_one_row_or_one_value_is_counted_as_one(fresh_db: DatabaseHandle) -> None:
    """A one-row download was offered as "Download Pair-filtered.csv (1 rows)", the profile of
    a one-row dataset said "Every one of the 1 rows." and a column of one value repeated was
    charted under "The 1 most frequent values"."""
    with session_scope() as session:
        username, _ = make_user(session, role="editor")
    editor = Actor(username, "Eddie", "editor")
    pair = upload_dataset(editor, b"Name,Kind\nann,x\nbob,x\n", name="Pair")
    one = upload_dataset(editor, b"Name\nann\n", name="One")
    at, _ = datasets_page(fresh_db, "viewer")

    open_dataset(at, pair)
    at.selectbox(key=f"datasets.{pair}.profile").select("kind").run()
    assert "Its only value" in texts(at, main_only=True)
    assert "most frequent values" not in texts(at, main_only=True)
    at.selectbox(key=f"datasets.{pair}.filter.column").select("name").run()
    at.text_input(key=f"datasets.{pair}.filter.value").input("ann").run()
    at.button(key=f"datasets.{pair}.prepare").click().run()
    assert at.download_button[0].label == "Download Pair-filtered.csv (1 row)"

    open_dataset(at, one)
    at.selectbox(key=f"datasets.{one}.profile").select("name").run()
    assert "The dataset's one row." in texts(at, main_only=True)
    at.button(key=f"datasets.{one}.prepare").click().run()
    assert at.download_button[0].label == "Download One.csv (1 row)"


def test_the_download_s_file_name_is_shown_as_it_is_not_as_markdown(
    fresh_db: DatabaseHandle,
) -> None:
    """The button's label is Markdown: a dataset named "__init__ _draft_" was offered as
    "Download **init**-*draft*.csv", bold and italic, not the file the browser saves."""
    with session_scope() as session:
        username, _ = make_user(session, role="editor")
    dataset_id = upload_dataset(
        Actor(username, "Eddie", "editor"), b"Name\nann\n", name="__init__ _draft_"
    )
    at, _ = datasets_page(fresh_db, "viewer")
    open_dataset(at, dataset_id)
    at.button(key=f"datasets.{dataset_id}.prepare").click().run()
    [download] = at.download_button
    assert download.label == "Download \\_\\_init\\_\\_-\\_draft\\_.csv (1 row)"


def _describe_fields(at: AppTest) -> dict[str, Any]:
    """The name and description form's fields by label (their keys hold what they were filled
    with)."""
    fields = [*at.text_input, *at.text_area]
    return {f.label: f for f in fields if str(f.key).startswith("datasets.describe.")}


def test_an_admin_renames_and_describes_a_dataset_after_saying_why(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    name = "People"
    for role in ("viewer", "editor"):
        at = open_dataset(datasets_page(fresh_db, role)[0], dataset_id)
        assert not _describe_fields(at)
    at, admin = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    fields = _describe_fields(at)
    assert set(fields) == {"Name", "Description", "Reason (required)"}
    assert (fields["Name"].value, fields["Description"].value) == (name, "everyone")
    fields["Name"].input("Staff")
    fields["Description"].input("Everyone on the payroll")
    [save] = [b for b in at.button if b.label == "Save name and description"]
    save.click().run()
    assert not at.exception
    assert "Say why you are making this change; nothing was written." in [e.value for e in at.error]
    with fresh_db.app.connect() as conn:
        assert (
            conn.scalar(text("SELECT name FROM portal.datasets WHERE id = :i"), {"i": dataset_id})
            == name
        )
    _describe_fields(at)["Reason (required)"].input("clearer names")
    [save] = [b for b in at.button if b.label == "Save name and description"]
    save.click().run()
    assert not at.exception
    assert "name and description are in the audit log" in at.success[0].value
    assert at.subheader[0].value == "Staff"
    assert "Everyone on the payroll" in [c.value for c in at.caption]
    assert "Staff" in at.main.dataframe[0].value["Name"].tolist()
    with fresh_db.app.connect() as conn:
        assert conn.execute(
            text("SELECT actor_username, reason, detail FROM audit.changeset ORDER BY id DESC")
        ).first() == (
            admin,
            "clearer names",
            {
                "action": "settings",
                "name": {"before": name, "after": "Staff"},
                "description": {"before": "everyone", "after": "Everyone on the payroll"},
            },
        )
    fields = _describe_fields(at)  # filled afresh from what is stored
    assert (fields["Name"].value, fields["Reason (required)"].value) == ("Staff", "")


def test_a_rename_made_meanwhile_by_someone_else_is_not_overwritten(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    name = "People"
    at, _ = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    with fresh_db.app.begin() as conn:  # another admin's rename, after this page was drawn
        conn.execute(
            text("UPDATE portal.datasets SET name = 'Persons' WHERE id = :i"), {"i": dataset_id}
        )
    fields = _describe_fields(at)
    fields["Name"].input("Staff")
    fields["Reason (required)"].input("clearer")
    [save] = [b for b in at.button if b.label == "Save name and description"]
    save.click().run()
    assert not at.exception
    [error] = at.error
    assert f"Someone renamed “{name}” or changed its description" in error.value
    assert "it is now “Persons”" in error.value
    at.run()  # the next click: the form shows the dataset as it is now
    fields = _describe_fields(at)
    assert (fields["Name"].value, fields["Reason (required)"].value) == ("Persons", "")
    with fresh_db.app.connect() as conn:
        assert (
            conn.scalar(text("SELECT name FROM portal.datasets WHERE id = :i"), {"i": dataset_id})
            == "Persons"
        )


def _save_rules(at: AppTest, key: str, edits: dict[int, dict[str, Any]], reason: str) -> AppTest:
    """The rules grid's state as the browser would send it (AppTest cannot type into a grid),
    a reason, and the save button."""
    at.session_state[key] = {"edited_rows": edits, "added_rows": [], "deleted_rows": []}
    at.run()
    at.text_input(key=f"{key}.reason").input(reason)
    at.button(key=f"{key}.save").click().run()
    assert not at.exception
    return at


def test_an_admin_changes_a_column_rule_checked_against_the_rows_first(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.rules.1.0"
    for role in ("viewer", "editor"):
        at = open_dataset(datasets_page(fresh_db, role)[0], dataset_id)
        assert not [b for b in at.button if b.key == f"{key}.save"]
    at, admin = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    qty = 2  # the grid's row of the Qty column
    _save_rules(at, key, {qty: {"max": "3", "required": True}}, "orders come in threes")
    [error] = at.error
    assert error.value.startswith("Rows of the dataset break the new rules")
    assert (
        "“Qty”, required: 25 rows break it — row 10 (no value), 20 (no value), 30 (no value), "
        "40 (no value), 50 (no value), and 20 more\n" in error.value
    )
    assert (
        "“Qty”, max: 96 rows break it — row 4 (4), 5 (5), 6 (6), 11 (4), 12 (5), and 91 more"
        in error.value
    )
    with fresh_db.app.connect() as conn:
        assert (
            conn.scalar(
                text("SELECT spec_version FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
            )
            == 1
        )
    _save_rules(at, key, {qty: {"max": "6", "label": "Quantity"}}, "orders come in sixes")
    assert "the new column rules are in force" in at.success[0].value
    with fresh_db.app.connect() as conn:
        kind, who, reason, detail = conn.execute(
            text(
                "SELECT kind, actor_username, reason, detail FROM audit.changeset"
                " ORDER BY id DESC LIMIT 1"
            )
        ).one()
    assert (kind, who, reason) == ("schema", admin, "orders come in sixes")
    assert [(c["rule"], c["before"], c["after"]) for c in detail["changes"]] == [
        ("label", "Qty", "Quantity"),
        ("max", None, 6),
    ]
    # The grid now starts from the new rules, under the new version's key.
    assert at.button(key=f"datasets.{dataset_id}.rules.2.0.save")


def rows_frame_of(at: AppTest) -> Any:
    """The opened dataset's rows, for an admin: the table after the list and the rules grid."""
    *_, rows = at.main.dataframe
    assert "_row_id" in rows.value.columns
    return rows.value


def _add_column_fields(at: AppTest, key: str, **typed: str) -> None:
    for field, value in typed.items():
        at.text_input(key=f"{key}.{field}").input(value)


def test_an_admin_adds_a_column_with_a_value_for_every_row(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.add_column.0"
    for role in ("viewer", "editor"):
        at = open_dataset(datasets_page(fresh_db, role)[0], dataset_id)
        assert not [b for b in at.button if b.label == "Add column"]
    at, admin = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    [fill] = [t for t in at.text_input if t.key == f"{key}.fill"]
    assert fill.label == f"Value for the {ROWS} rows it has now (optional)"
    _add_column_fields(at, key, label="T" * 121, options="red | blue", fill="blue", reason="teams")
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()  # not capped in the browser (which drops a longer paste whole): refused
    assert [e.value for e in at.error] == [
        "The label is 121 characters; use at most 120. Nothing was changed."
    ]
    _add_column_fields(at, key, label="Team", options="red | blue", fill="green", reason="teams")
    at.selectbox(key=f"{key}.type").select("category")
    at.checkbox(key=f"{key}.required").check()
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()
    assert not at.exception
    [error] = at.error
    assert "The value for the existing rows does not fit “Team”" in error.value
    assert at.text_input(key=f"{key}.fill").value == "green"  # kept, to correct
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT max(spec_version) FROM portal.datasets")) == 1
    at.text_input(key=f"{key}.fill").input("blue")
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()
    assert not at.exception
    assert "Added the column “Team”" in at.success[0].value
    assert set(rows_frame_of(at)["team"]) == {"blue"}
    table = table_name(fresh_db.app, dataset_id)
    with fresh_db.app.connect() as conn:
        assert conn.execute(text(f"SELECT DISTINCT team FROM data.{table}")).all() == [("blue",)]
        who, reason, detail = conn.execute(
            text("SELECT actor_username, reason, detail FROM audit.changeset ORDER BY id DESC")
        ).first()
    assert (who, reason, detail["action"], detail["fill"]) == (admin, "teams", "add_column", "blue")
    assert detail["column"] == {
        "label": "Team",
        "name": "team",
        "type": "category",
        "required": True,
        "unique": False,
        "options": ["red", "blue"],
    }
    # The form starts afresh for the next column.
    assert at.text_input(key=f"datasets.{dataset_id}.add_column.1.label").value == ""


def test_an_admin_removes_a_column_after_confirming_why(fresh_db: DatabaseHandle) -> None:
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.remove_column"
    at, admin = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    at.selectbox(key=key).select("note").run()
    at.button(key=f"{key}.ask").click().run()
    assert not at.exception
    dialog_text = " ".join(m.value for m in at.markdown)
    assert "“Note” leaves “People” with every value it holds and its rules" in dialog_text
    [remove] = [b for b in at.button if b.label == "Remove column"]
    remove.click().run()  # without a reason
    assert "Say why you are removing the column" in " ".join(e.value for e in at.error)
    [cancel] = [b for b in at.button if b.label == "Cancel"]
    cancel.click().run()
    assert not [b for b in at.button if b.label == "Remove column"]
    at.button(key=f"{key}.ask").click().run()
    at.text_input(key=f"datasets.{dataset_id}.remove_column.reason").input("never used").run()
    [remove] = [b for b in at.button if b.label == "Remove column"]
    remove.click().run()
    assert not at.exception
    assert "Removed the column “Note”" in at.success[0].value
    assert "note" not in rows_frame_of(at).columns
    table = table_name(fresh_db.app, dataset_id)
    with fresh_db.app.connect() as conn:
        columns = conn.execute(text(f"SELECT * FROM data.{table} LIMIT 0")).keys()
        who, reason, detail = conn.execute(
            text("SELECT actor_username, reason, detail FROM audit.changeset ORDER BY id DESC")
        ).first()
    assert "note" not in columns
    assert (who, reason, detail["action"], detail["column"]["label"]) == (
        admin,
        "never used",
        "remove_column",
        "Note",
    )


def test_a_column_is_added_with_its_date_format_or_decimal_places(
    fresh_db: DatabaseHandle,
) -> None:
    """The form had neither, and the rules grid keeps them fixed: a decimal column added stayed
    without decimal places for good, a date column read only YYYY-MM-DD."""
    dataset_id, _ = seed_people(fresh_db)
    at, _ = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    key = f"datasets.{dataset_id}.add_column.0"
    _add_column_fields(at, key, label="Due", fill="05/03/2024", reason="deadlines")
    at.selectbox(key=f"{key}.type").select("date")
    at.selectbox(key=f"{key}.format").select("DD/MM/YYYY")
    at.number_input(key=f"{key}.scale").set_value(2)  # a decimal's only: not sent for a date
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()
    assert not at.exception
    assert "Added the column “Due”" in at.success[0].value
    key = f"datasets.{dataset_id}.add_column.1"
    _add_column_fields(at, key, label="Cost", fill="1.5", reason="costs")
    at.selectbox(key=f"{key}.type").select("decimal")
    at.number_input(key=f"{key}.scale").set_value(2)
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()
    assert not at.exception
    table = table_name(fresh_db.app, dataset_id)
    with fresh_db.app.connect() as conn:
        assert conn.execute(text(f"SELECT DISTINCT due, cost FROM data.{table}")).all() == [
            (date(2024, 3, 5), Decimal("1.50"))
        ]
        columns = conn.scalar(text("SELECT spec FROM portal.datasets"))["columns"][-2:]
    assert [(c.get("format"), c.get("scale")) for c in columns] == [("DD/MM/YYYY", None), (None, 2)]


def test_a_column_label_is_shown_as_written_in_the_messages(fresh_db: DatabaseHandle) -> None:
    """A label of Markdown came out as a link and bold text in "Added the column …"."""
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.add_column.0"
    at, _ = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    _add_column_fields(
        at, key, label="**Evil** [here](http://127.0.0.1:9/x) :red[hi]", reason="test"
    )
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()
    assert not at.exception
    # Every character Markdown or Streamlit would read is escaped: the ":" of ":red[…]" too,
    # and the URL's autolink is broken by an invisible word joiner.
    assert at.success[0].value.startswith(
        r"Added the column “\*\*Evil\*\* \[here\]\(http"
        + WORD_JOINER
        + r"://127\.0\.0\.1:9/x\) \:red\[hi\]”"
    )


def _another_admin_adds(db: DatabaseHandle, dataset_id: int, label: str, version: int) -> None:
    with session_scope() as s:
        other, _ = make_user(s, role="admin")
    add_column(Actor(other, other, "admin"), dataset_id, label, expected_version=version)


def _schema_changes(db: DatabaseHandle) -> list[str]:
    with db.app.connect() as conn:
        return list(
            conn.scalars(
                text(
                    "SELECT detail->>'action' FROM audit.changeset WHERE kind = 'schema'"
                    " ORDER BY id"
                )
            )
        )


def test_a_column_added_while_another_admin_changed_the_columns_is_refused_not_lost(
    fresh_db: DatabaseHandle,
) -> None:
    """The form was keyed by the columns' version: the click that added came back to a new,
    empty form, and nothing was said or added."""
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.add_column.0"
    at, _ = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    _add_column_fields(at, key, label="Team", fill="blue", reason="teams")  # sent at Add
    _another_admin_adds(fresh_db, dataset_id, "Shift", version=1)
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "Someone changed the columns of “People” or their rules since you loaded the page" in (
        error
    )
    assert at.text_input(key=f"{key}.label").value == "Team"  # kept
    assert _schema_changes(fresh_db) == ["add_column"]  # the other admin's only
    [add] = [b for b in at.button if b.label == "Add column"]
    add.click().run()  # looked at: added now
    assert "Added the column “Team”" in at.success[0].value
    assert _schema_changes(fresh_db) == ["add_column", "add_column"]


def test_rules_saved_while_another_admin_changed_the_columns_are_refused_not_lost(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.rules.1.0"
    at, _ = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    at.session_state[key] = {"edited_rows": {2: {"max": "6"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    _another_admin_adds(fresh_db, dataset_id, "Shift", version=1)
    at.run()  # the page is drawn again (any click): the grid keeps the edit and its key
    at.text_input(key=f"{key}.reason").input("sixes")
    at.button(key=f"{key}.save").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "Someone changed the columns of “People” or their rules" in error
    assert _schema_changes(fresh_db) == ["add_column"]
    at.run()  # the next run shows the rules as they are now, in a grid afresh
    assert at.button(key=f"datasets.{dataset_id}.rules.2.1.save")


def test_a_removal_confirmed_after_another_admin_changed_the_columns_is_refused_first(
    fresh_db: DatabaseHandle,
) -> None:
    dataset_id, _ = seed_people(fresh_db)
    key = f"datasets.{dataset_id}.remove_column"
    at, _ = datasets_page(fresh_db, "admin")
    open_dataset(at, dataset_id)
    at.selectbox(key=key).select("note").run()
    at.button(key=f"{key}.ask").click().run()
    _another_admin_adds(fresh_db, dataset_id, "Shift", version=1)
    at.text_input(key=f"{key}.reason").input("never used").run()
    [remove] = [b for b in at.button if b.label == "Remove column"]
    remove.click().run()
    assert not at.exception
    assert "Someone changed the columns of “People” or their rules" in at.error[0].value
    assert _schema_changes(fresh_db) == ["add_column"]
    [remove] = [b for b in at.button if b.label == "Remove column"]
    remove.click().run()  # read: removed now
    assert "Removed the column “Note”" in at.success[0].value
    assert _schema_changes(fresh_db) == ["add_column", "remove_column"]
