"""Browsing datasets: the list with each dataset's last change; pages of rows filtered, sorted
and counted in PostgreSQL with every value bound; the CSV export streamed in chunks, formula-safe,
and recorded as exactly one ``export`` event."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import browse, estimates, uploads, writes
from portal.actor import Actor
from portal.browse import RowFilter, Sort
from portal.db import get_engine, session_scope
from portal.errors import ValidationError
from tests.conftest import DatabaseHandle
from tests.factories import make_user, statements_sent, upload_dataset

pytestmark = pytest.mark.db

ROWS = 250
HEADER = ["Name", "Code", "Qty", "Price", "Joined", "Note"]
SPECIAL_NOTES = {  # row number (1-based) -> the note as uploaded
    1: "=1+1",
    2: "+SUM(A1:A2)",
    3: "-5",
    4: "@cmd",
    5: "\tTAB",
    6: "\rCR",
    7: "<script>alert('x')</script><b>bold</b>",
    8: 'O\'Brien said "100%"',
    9: "50%_off",
    10: "x' OR '1'='1",
}
NEUTRALISED = {1: "'=1+1", 2: "'+SUM(A1:A2)", 3: "-5", 4: "'@cmd", 5: "'\tTAB", 6: "'\rCR"}
# (-5 is a plain number: spreadsheets read it as one, never as a formula)


def qty(i: int) -> int | None:
    return None if i % 10 == 0 else i % 7


def people_rows() -> list[list[str]]:
    """``ROWS`` rows; row i (from 1) is Person i."""
    rows = []
    for i in range(1, ROWS + 1):
        q = qty(i)
        rows.append(
            [
                f"Person {i:03d}",
                f"{i:04d}",
                "" if q is None else str(q),
                f"{i}.{i % 100:02d}",
                (date(2024, 1, 1) + timedelta(days=i)).isoformat(),
                SPECIAL_NOTES.get(i, f"note {i}"),
            ]
        )
    return rows


def people_csv(rows: list[list[str]] | None = None) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(HEADER)
    writer.writerows(people_rows() if rows is None else rows)
    return out.getvalue().encode()


def upload(actor: Actor, data: bytes, target: uploads.NewDataset | uploads.ExistingDataset):
    """Store ``data`` through the upload flow (as the Upload page does)."""
    parsed = uploads.read_file(data, delimiter=",")
    if isinstance(target, uploads.NewDataset):
        spec, _ = uploads.propose_spec(parsed)
    else:
        spec = uploads.dataset_spec(target.dataset_id)
    result = uploads.check(parsed, spec)
    assert result.ok, result.errors[:3]
    return uploads.import_file(
        actor=actor,
        filename="people.csv",
        data=data,
        parsed=parsed,
        spec=spec,
        result=result,
        target=target,
        reason="seed",
    )


def seed_people(db: DatabaseHandle, name: str = "People") -> tuple[int, Actor]:
    """A dataset of ``ROWS`` people uploaded by a new editor; returns its id and the editor."""
    with Session(db.app) as s, s.begin():
        username, _ = make_user(s, role="editor", display_name="Eddie Editor")
    editor = Actor(username, "Eddie Editor", "editor")
    return upload(editor, people_csv(), uploads.NewDataset(name, "everyone")).dataset_id, editor


@pytest.fixture
def people(fresh_db: DatabaseHandle) -> int:
    dataset_id, _ = seed_people(fresh_db)
    return dataset_id


def page(dataset_id: int, **kwargs) -> browse.RowsPage:
    with session_scope() as session:
        return browse.read_page(session=session, dataset_id=dataset_id, **kwargs)


def names(rows_page: browse.RowsPage) -> list[str]:
    return rows_page.rows["name"].tolist()


def ids(rows_page: browse.RowsPage) -> list[int]:
    return rows_page.rows["_row_id"].tolist()


def export_events(db: DatabaseHandle) -> list[dict]:
    with db.owner.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT actor_username, target, detail FROM audit.event WHERE kind = 'export'"
                " ORDER BY id"
            )
        )
        return [dict(r._mapping) for r in rows]


# -- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [7, 50, 100, 250, 1000])
def test_pages_cover_every_row_once_in_order(people: int, page_size: int) -> None:
    first = page(people, page_size=page_size)
    assert (first.total, first.page, first.page_size) == (ROWS, 1, page_size)
    assert first.pages == -(-ROWS // page_size)
    seen: list[int] = []
    for number in range(1, first.pages + 1):
        current = page(people, page=number, page_size=page_size)
        assert current.total == ROWS
        assert len(current.rows) == min(page_size, ROWS - (number - 1) * page_size)
        assert current.first_row == (number - 1) * page_size + 1
        seen += ids(current)
    all_ids = sorted(seen)
    assert seen == all_ids
    assert len(set(seen)) == ROWS
    assert names(page(people, page_size=page_size))[0] == "Person 001"


def test_a_page_past_the_end_is_the_last_page(people: int) -> None:
    last = page(people, page=99, page_size=100)
    assert (last.page, len(last.rows), last.first_row, last.last_row) == (3, 50, 201, 250)
    assert names(last)[-1] == "Person 250"
    for beyond in (2**62, 2**70):  # an offset past bigint's range, had it been sent
        assert page(people, page=beyond, page_size=100).page == 3


def test_a_large_total_is_estimated_not_counted(
    people: int, fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``COUNT_CAP`` rows beyond the page, and with far more rows expected, the total is
    PostgreSQL's estimate ("about"), and nothing is counted; the last page is still exact."""
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("ANALYZE data.ds_people"))
    monkeypatch.setattr(browse, "COUNT_CAP", 10)
    with statements_sent(get_engine(), lambda sql: "count(" in sql.lower()) as counts:
        first = page(people, page_size=10)  # 250 expected, more than four times 10 + 10
        assert (first.total, first.total_is_exact, len(first.rows)) == (ROWS, False, 10)
        assert (first.total_text, first.pages_text) == ("about 250", "about 25")
        assert counts == []
        # 36 rows hold a 3: fewer than four times the cap expected, so counted, but only to
        # 21, past the cap of 20: the total is the estimate (from the statistics).
        threes = page(people, page_size=10, row_filter=RowFilter("qty", "equals", "3"))
        assert len(counts) == 1
        assert "LIMIT" in counts[0]
        assert not threes.total_is_exact
        assert 21 <= threes.total <= 50
        counts.clear()
        last = page(people, page=25, page_size=10)  # no row follows: the total is known
        assert (last.total, last.total_is_exact, last.pages_text) == (ROWS, True, "25")
        assert counts == []
        near = page(people, page=24, page_size=10)  # 10 rows follow, within the cap: counted
        assert (near.total, near.total_is_exact, len(counts)) == (ROWS, True, 1)


def test_past_an_estimated_end_is_the_real_last_page(
    people: int, fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    with fresh_db.superuser.begin() as conn:  # the dataset's count now runs high
        conn.execute(
            text("UPDATE portal.datasets SET row_count = 1000 WHERE id = :i"), {"i": people}
        )
    monkeypatch.setattr(browse, "COUNT_CAP", 1)
    high = page(people, page_size=50)
    assert (high.total, high.total_is_exact, high.pages) == (1000, False, 20)
    last = page(people, page=20, page_size=50)
    assert (last.page, last.total, last.total_is_exact) == (5, ROWS, True)
    assert names(last)[-1] == "Person 250"


def test_rows_deleted_between_a_page_and_its_count_leave_the_page_within_the_total(
    people: int, fresh_db: DatabaseHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each statement sees the rows committed when it starts: rows deleted after the page was
    read but before they were counted gave a total short of the rows shown, so the page said
    "page 2 of 1" and its page box, whose largest page is the total's, jumped back to 1 under
    page 2's rows."""
    estimated = estimates.estimated_rows

    def deleting_meanwhile(**kwargs: object) -> int:
        with fresh_db.superuser.begin() as conn:
            conn.execute(text("DELETE FROM data.ds_people WHERE _row_id > 100"))
        return estimated(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(estimates, "estimated_rows", deleting_meanwhile)
    second = page(people, page=2, page_size=100)
    assert (second.page, len(second.rows)) == (2, 100)  # read before the delete
    assert second.total >= second.last_row + 1  # it saw one more row follow
    assert second.pages >= second.page


def test_the_page_holds_typed_values(people: int) -> None:
    row = page(people, page_size=50).rows.iloc[2]  # Person 003
    assert (row["name"], row["code"], row["qty"]) == ("Person 003", "0003", 3)
    assert row["price"] == Decimal("3.03")
    assert row["joined"] == date(2024, 1, 4)
    assert row["note"] == "-5"
    assert pd.isna(page(people, page_size=50).rows.iloc[9]["qty"])  # Person 010: missing


@pytest.mark.parametrize(("column", "descending"), [("name", True), ("qty", False), ("qty", True)])
def test_sort_by_a_column_with_ties_broken_by_row_id(
    people: int, column: str, descending: bool
) -> None:
    everyone = people_rows()
    position = HEADER.index(column.title())

    def key(i: int):
        value = everyone[i - 1][position]
        missing = value == ""
        if column == "qty":
            value = int(value) if value else 0
        # PostgreSQL: missing values last ascending, first descending; ties by _row_id.
        return (missing, value, i)

    expected = sorted(range(1, ROWS + 1), key=key, reverse=descending)
    got: list[str] = []
    for number in (1, 2, 3):
        got += names(page(people, page=number, page_size=100, sort=Sort(column, descending)))
    assert got == [f"Person {i:03d}" for i in expected]


def test_filters_contains_and_equals(people: int) -> None:
    contains = page(people, row_filter=RowFilter("name", "contains", "PERSON 01"))
    assert contains.total == 10
    assert names(contains) == [f"Person {i:03d}" for i in range(10, 20)]

    threes = page(people, page_size=7, page=2, row_filter=RowFilter("qty", "equals", "3"))
    expected = [i for i in range(1, ROWS + 1) if qty(i) == 3]
    assert threes.total == len(expected)
    assert names(threes) == [f"Person {i:03d}" for i in expected[7:14]]

    missing = page(people, row_filter=RowFilter("qty", "equals", ""))
    assert missing.total == ROWS // 10
    assert set(missing.rows["qty"].isna()) == {True}

    assert names(page(people, row_filter=RowFilter("price", "equals", "12.120"))) == ["Person 012"]
    assert names(page(people, row_filter=RowFilter("joined", "equals", "2024-01-06"))) == [
        "Person 005"
    ]
    assert names(page(people, row_filter=RowFilter("code", "equals", "0042"))) == ["Person 042"]
    assert page(people, row_filter=RowFilter("code", "equals", "42")).total == 0  # text: exact
    assert names(page(people, row_filter=RowFilter("_row_id", "equals", "4"))) == ["Person 004"]
    # A filter with a sort and a page together.
    sorted_filtered = page(
        people,
        page_size=3,
        sort=Sort("price", descending=True),
        row_filter=RowFilter("name", "contains", "person 2"),
    )
    assert sorted_filtered.total == 51  # Person 200 to Person 250
    assert names(sorted_filtered) == ["Person 250", "Person 249", "Person 248"]


def test_filter_values_are_bound_not_injected(people: int, fresh_db: DatabaseHandle) -> None:
    # LIKE wildcards match themselves: "100%" is not "100 followed by anything".
    assert names(page(people, row_filter=RowFilter("note", "contains", '"100%"'))) == ["Person 008"]
    assert names(page(people, row_filter=RowFilter("note", "contains", "%_"))) == ["Person 009"]
    assert page(people, row_filter=RowFilter("note", "contains", "%")).total == 2
    assert page(people, row_filter=RowFilter("name", "contains", "_")).total == 0
    # Quotes are data.
    assert names(page(people, row_filter=RowFilter("note", "equals", "x' OR '1'='1"))) == [
        "Person 010"
    ]
    assert page(people, row_filter=RowFilter("name", "equals", "x' OR '1'='1")).total == 0
    hostile = "'); DELETE FROM data.ds_people; --"
    assert page(people, row_filter=RowFilter("name", "contains", hostile)).total == 0
    assert page(people, row_filter=RowFilter("note", "equals", hostile)).total == 0
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text('SELECT count(*) FROM data."ds_people"')) == ROWS


def test_contains_on_a_date_time_reads_it_in_utc_whatever_the_session_s_time_zone(
    fresh_db: DatabaseHandle,
) -> None:
    """The page shows date-times in UTC, but ``contains`` matched their text in the session's
    time zone: in New York, "12:00" missed the row shown at 12:00 and "2024-06-02" missed one
    shown on that day. (The portal's own sessions are in UTC; the filter does not rely on it.)"""
    with Session(fresh_db.app) as s, s.begin():
        username, _ = make_user(s, role="editor")
    seen = upload_dataset(
        Actor(username, "Ed", "editor"),
        b"Name,Seen\nnoon,2024-06-01 12:00:00\nafter midnight,2024-06-02 01:30:00\n",
        name="Seen",
    )

    def found(needle: str) -> list[str]:
        with session_scope() as session:
            session.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
            return names(
                browse.read_page(
                    session=session,
                    dataset_id=seen,
                    row_filter=RowFilter("seen", "contains", needle),
                )
            )

    assert found("12:00") == ["noon"]
    assert found("2024-06-02") == ["after midnight"]
    assert found("2024-06-01 12:00:00") == ["noon"]


def test_the_first_moment_of_year_1_is_read_whatever_the_database_s_time_zone(
    fresh_db: DatabaseHandle,
) -> None:
    """Values came in the session's time zone (the server's or the role's ``timezone``): in
    New York 0001-01-01 00:00 UTC is a time in year 0, which Python cannot hold, and opening the
    dataset (or its Edit window) stopped with a ValueError traceback. The portal's sessions now
    read time in UTC."""
    with fresh_db.superuser.begin() as conn:
        conn.execute(
            text(
                f'ALTER ROLE portal_app IN DATABASE "{fresh_db.name}"'
                " SET timezone = 'America/New_York'"
            )
        )
    with Session(fresh_db.app) as s, s.begin():
        username, _ = make_user(s, role="editor")
    seen = upload_dataset(
        Actor(username, "Ed", "editor"), b"Name,Seen\nfirst,0001-01-01 00:00:00\n", name="Old"
    )
    [moment] = page(seen).rows["seen"].tolist()
    assert moment == pd.Timestamp("0001-01-01", tz="UTC")
    with session_scope() as session:
        window = writes.read_window(session=session, dataset_id=seen)
    assert window.rows[0][2] == datetime(1, 1, 1, tzinfo=UTC)


def test_a_row_id_filter_is_named_as_the_pages_name_the_column(people: int) -> None:
    """Both pages offer the column as "Row id"; its filter was described, and a wrong value
    refused, as "_row_id", a name shown nowhere else."""
    with session_scope() as session:
        spec = browse.open_dataset(session=session, dataset_id=people).spec
    assert RowFilter("_row_id", "equals", "4").describe(spec) == "Row id equals “4”"
    assert RowFilter("_row_id", "range", "", "9").describe(spec) == "Row id from “…” to “9”"
    with pytest.raises(ValidationError, match=r"^Filter on “Row id”: “four”"):
        page(people, row_filter=RowFilter("_row_id", "equals", "four"))


def test_bad_requests_are_refused_with_a_message(people: int) -> None:
    with pytest.raises(ValidationError, match="no column 'nope'"):
        page(people, sort=Sort("nope"))
    with pytest.raises(ValidationError, match="no column"):
        page(people, row_filter=RowFilter('name" OR 1=1 --', "contains", "x"))
    with pytest.raises(ValidationError, match="Filter on “Qty”"):
        page(people, row_filter=RowFilter("qty", "equals", "three"))
    # A filter reads no file: no advice about a file's decimal comma and the Upload page.
    with pytest.raises(ValidationError, match="Filter on “Price”") as refused:
        page(people, row_filter=RowFilter("price", "equals", "abc"))
    assert str(refused.value).endswith("(a point before the decimals, no thousands separators).")
    with pytest.raises(ValidationError, match="page size"):
        page(people, page_size=0)
    with pytest.raises(ValidationError, match="page size"):
        page(people, page_size=browse.MAX_PAGE_SIZE + 1)


# -- the export -------------------------------------------------------------------------------


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets read it as UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_export_streams_every_row_formula_safe_with_one_event(
    fresh_db: DatabaseHandle, people: int
) -> None:
    viewer = Actor(*new_viewer(fresh_db), "viewer")
    with session_scope() as session:
        export = browse.export_csv(session=session, actor=viewer, dataset_id=people, chunk_rows=40)
    assert (export.rows, export.file_name) == (ROWS, "People.csv")
    table = read_csv(export.data)
    assert table[0] == HEADER
    assert len(table) == ROWS + 1
    body = {int(r[0].split()[1]): r for r in table[1:]}
    for i, expected in NEUTRALISED.items():
        assert body[i][5] == expected, i
    assert body[7][5] == SPECIAL_NOTES[7]  # HTML kept verbatim
    assert body[8][5] == SPECIAL_NOTES[8]
    assert body[10][5] == SPECIAL_NOTES[10]
    assert body[3] == ["Person 003", "0003", "3", "3.03", "2024-01-04", "-5"]
    assert body[10][2] == ""  # a missing value is an empty cell
    assert [r[0] for r in table[1:]] == [f"Person {i:03d}" for i in range(1, ROWS + 1)]

    assert export_events(fresh_db) == [
        {
            "actor_username": viewer.username,
            "target": f"dataset:{people}",
            "detail": {
                "dataset_id": people,
                "dataset": "People",
                "format": "csv",
                "filter": None,
                "sort": None,
                "rows": ROWS,
            },
        }
    ]


def test_export_writes_the_rows_in_the_order_the_pages_show(
    fresh_db: DatabaseHandle, people: int
) -> None:
    """The download held the rows in ``_row_id`` order whatever order the page showed them in."""
    viewer = Actor(*new_viewer(fresh_db), "viewer")
    by_qty = Sort("qty", descending=True)
    with session_scope() as session:
        export = browse.export_csv(
            session=session, actor=viewer, dataset_id=people, sort=by_qty, chunk_rows=40
        )
        shown = browse.read_page(session=session, dataset_id=people, page_size=50, sort=by_qty)
    names = [r[0] for r in read_csv(export.data)[1:]]
    # Descending puts missing values first (as PostgreSQL does), ties by row id, descending too.
    missing = [i for i in range(ROWS, 0, -1) if qty(i) is None]
    by_value = sorted(
        (i for i in range(1, ROWS + 1) if qty(i) is not None), key=lambda i: (-(qty(i) or 0), -i)
    )
    assert names == [f"Person {i:03d}" for i in missing + by_value]
    assert names[:50] == shown.rows["name"].tolist()
    [event] = export_events(fresh_db)
    assert event["detail"]["sort"] == {"column": "qty", "descending": True}
    assert event["detail"]["rows"] == ROWS


def test_export_reads_in_chunks_through_a_server_side_cursor(
    fresh_db: DatabaseHandle, people: int
) -> None:
    with session_scope() as session:
        dataset = browse.open_dataset(session=session, dataset_id=people)
        chunks = browse._csv_chunks(session, "ds_people", dataset.spec, None, Sort(), 40)
        header, _ = next(chunks)
        assert header.startswith(b"\xef\xbb\xbfName,")
        _, count = next(chunks)
        assert count == 40
        # The rest is still in the cursor on the server, not in this process.
        cursors = session.execute(text("SELECT count(*) FROM pg_cursors")).scalar_one()
        assert cursors == 1
        counts = [count] + [n for _, n in chunks]
    assert counts == [40] * 6 + [10]


def test_filtered_export_records_the_filter(fresh_db: DatabaseHandle, people: int) -> None:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="admin")
    admin = Actor(name, name, "admin")
    row_filter = RowFilter("note", "contains", "%")
    with session_scope() as session:
        export = browse.export_csv(
            session=session, actor=admin, dataset_id=people, row_filter=row_filter
        )
    assert export.file_name == "People-filtered.csv"
    assert [r[0] for r in read_csv(export.data)[1:]] == ["Person 008", "Person 009"]
    [event] = export_events(fresh_db)
    assert event["actor_username"] == name
    assert event["detail"]["filter"] == {"column": "note", "op": "contains", "value": "%"}
    assert event["detail"]["rows"] == 2


def test_a_failed_export_records_nothing(fresh_db: DatabaseHandle, people: int) -> None:
    viewer = Actor(*new_viewer(fresh_db), "viewer")
    with pytest.raises(ValidationError), session_scope() as session:
        browse.export_csv(
            session=session,
            actor=viewer,
            dataset_id=people,
            row_filter=RowFilter("qty", "equals", "many"),
        )
    with pytest.raises(ValidationError, match="no column"), session_scope() as session:
        browse.export_csv(
            session=session, actor=viewer, dataset_id=people, sort=Sort("qty; DROP TABLE x")
        )
    assert export_events(fresh_db) == []


def new_viewer(db: DatabaseHandle) -> tuple[str, str]:
    with Session(db.app) as s, s.begin():
        name, _ = make_user(s, role="viewer", display_name="Vic Viewer")
    return name, "Vic Viewer"


# -- the list ---------------------------------------------------------------------------------


def test_list_shows_size_owner_and_the_last_sealed_change(fresh_db: DatabaseHandle) -> None:
    with session_scope() as session:
        assert browse.list_datasets(session=session) == []
    people_id, editor = seed_people(fresh_db)
    other_id, _ = seed_people(fresh_db, name="another set")
    with Session(fresh_db.app) as s, s.begin():
        second, _ = make_user(s, role="editor", display_name="Second Person")
    more = [[f"Extra {i}", f"9{i:03d}", "1", "1.00", "2024-05-01", "extra"] for i in range(5)]
    upload(
        Actor(second, "Second Person", "editor"),
        people_csv(more),
        uploads.ExistingDataset(people_id, "append"),
    )
    with session_scope() as session:
        listing = browse.list_datasets(session=session)
    with fresh_db.owner.connect() as conn:
        newest = dict(
            conn.execute(
                text(
                    "SELECT dataset_id, max(committed_at) FROM audit.changeset"
                    " WHERE dataset_id IS NOT NULL GROUP BY dataset_id"
                )
            ).all()
        )
    assert [d.name for d in listing] == ["another set", "People"]
    another, people = listing
    assert (people.id, people.description, people.row_count, people.columns) == (
        people_id,
        "everyone",
        ROWS + 5,
        len(HEADER),
    )
    assert (people.owner, people.owner_display_name) == (editor.username, "Eddie Editor")
    assert (people.last_change_at, people.last_change_by) == (newest[people_id], "Second Person")
    assert (another.id, another.row_count) == (other_id, ROWS)
    assert (another.last_change_at, another.last_change_by) == (newest[other_id], "Eddie Editor")
