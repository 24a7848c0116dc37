"""History's frames: the as-of view and its export, a row's versions and a changeset's rows
keep a dataset's own columns apart from the columns the frames add (``Row id``, ``When``,
``Version``…); an as-of export of the newest changeset reads like the Datasets page's export of
the table now."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import browse, trail_views
from portal.actor import Actor
from portal.db import session_scope
from portal.diffs import ChangeSet, RowUpdate
from tests.conftest import DatabaseHandle
from tests.db.test_revert import edit
from tests.factories import make_user, table_name, upload_dataset

pytestmark = pytest.mark.db


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        name, _ = make_user(s, role="editor", username="eddie", display_name="Eddie E.")
    return Actor(name, "Eddie E.", "editor")


def head_seq(db: DatabaseHandle) -> int:
    with db.app.connect() as conn:
        return int(conn.scalar(text("SELECT seq FROM audit.chain_head")))


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_as_of_and_its_export_keep_a_column_labelled_row_id(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """A CSV whose header has a "Row id" column (an order reference, say): the as-of view still
    shows each row's _row_id, and the download still holds that column and its values."""
    ds = upload_dataset(editor, b"Row id,Name\nA-17,ann\nB-22,bob\n", name="Orders")
    seq = head_seq(fresh_db)
    with session_scope() as s:
        state = trail_views.as_of(session=s, actor=editor, dataset_id=ds, seq=seq)
        export = trail_views.export_as_of(session=s, actor=editor, dataset_id=ds, seq=seq)
    assert state.frame.iloc[:, 0].tolist() == [1, 2]  # the row ids
    assert ["A-17", "B-22"] in [state.frame[c].tolist() for c in state.frame.columns]
    assert read_csv(export.data) == [["Row id", "Name"], ["A-17", "ann"], ["B-22", "bob"]]


def test_row_history_keeps_its_columns_apart_from_columns_named_like_them(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Columns named Version, When, Who, Kind or Why are ordinary headers; a row's history
    still says which version, when, who, what kind and why, and shows the row's values."""
    ds = upload_dataset(
        editor, b"Version,When,Who,Kind,Why,Name\nv1,soon,me,big,none,ann\n", name="Notes"
    )
    with session_scope() as s:
        frame = trail_views.row_versions_frame(session=s, actor=editor, dataset_id=ds, row_id=1)
    [record] = frame.to_dict("records")
    assert record["Version"] == 1
    assert record["Who"] == f"Eddie E. ({editor.username})"
    assert record["Kind"] == "Upload"
    assert record["When"].endswith(" UTC")
    assert {"v1", "soon", "me", "big", "none", "ann"} <= set(record.values())


def test_a_changeset_s_updated_rows_keep_columns_named_row_id_and_state(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    ds = upload_dataset(editor, b"Row id,State,Name\nA-1,open,ann\n", name="Tickets")
    changed = edit(
        editor,
        ds,
        ChangeSet(
            updates=(
                RowUpdate(
                    1, 0, {"row_id": "A-1", "state": "open"}, {"row_id": "A-2", "state": "closed"}
                ),
            )
        ),
    )
    with session_scope() as s:
        detail = trail_views.changeset(session=s, actor=editor, changeset_id=changed)
        frames = trail_views.change_frames(session=s, actor=editor, detail=detail, op="update")
    assert frames.updates is not None
    shown = frames.updates.data
    assert shown.iloc[:, 0].tolist() == [1, 1]  # the row id
    assert shown.iloc[:, 1].tolist() == ["before", "after"]
    values = {v for c in shown.columns[2:] for v in shown[c].tolist()}
    assert {"A-1", "A-2", "open", "closed"} <= values


def test_the_as_of_export_of_the_newest_changeset_reads_like_the_export_of_the_table_now(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Both files describe the same rows; a date and time is written the same way in both
    (the Datasets page's UTC form), whoever wrote it and in whatever time zone."""
    ds = upload_dataset(
        editor, b"Name,At\nann,2024-01-02 03:04:05+00:00\nbob,2024-06-30 23:59:59+00:00\n"
    )
    table = table_name(fresh_db.app, ds)
    with fresh_db.superuser.begin() as conn:  # psql in another time zone
        conn.execute(text("SET TIME ZONE 'Asia/Kolkata'"))
        conn.execute(
            text(f'UPDATE data."{table}" SET "at" = \'2024-03-03 10:00+05:30\' WHERE _row_id = 2')
        )
    with session_scope() as s:
        as_of = trail_views.export_as_of(
            session=s, actor=editor, dataset_id=ds, seq=head_seq(fresh_db)
        )
        now = browse.export_csv(session=s, actor=editor, dataset_id=ds)
    assert read_csv(as_of.data) == read_csv(now.data)


def test_as_of_rebuilds_a_table_only_up_to_its_row_limit(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The rebuilt table is held in memory: its size is read from the changesets' counts first
    (inserts less deletes up to that changeset), and a larger one is refused."""
    from portal.diffs import RowDelete, RowInsert
    from portal.errors import ValidationError

    ds = upload_dataset(editor, b"Name,Qty\nann,1\nbob,2\ncy,3\n", name="Counted")
    uploaded = head_seq(fresh_db)
    edit(
        editor,
        ds,
        ChangeSet(
            inserts=(RowInsert({"name": "dee", "qty": 4}), RowInsert({"name": "eve", "qty": 5})),
            deletes=(RowDelete(1, 0, {"name": "ann", "qty": 1}),),
        ),
    )
    edited = head_seq(fresh_db)
    with session_scope() as s:
        for seq, rows in ((uploaded, 3), (edited, 4)):
            assert (
                trail_views.as_of(
                    session=s, actor=editor, dataset_id=ds, seq=seq, max_rows=rows
                ).rows
                == rows
            )
            with pytest.raises(ValidationError, match=f"had {rows} rows right after #{seq}"):
                trail_views.as_of(
                    session=s, actor=editor, dataset_id=ds, seq=seq, max_rows=rows - 1
                )


def test_a_change_between_no_value_and_an_empty_text_reads_as_one(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """Written from psql, an empty text is not "no value": the changeset's rows and the row's
    versions show ``∅ → ""``, never ``∅ → ∅`` (a change that looks like none)."""
    ds = upload_dataset(editor, b"Name,Note\nann,\n", name="Notes")
    table = table_name(fresh_db.app, ds)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE data.\"{table}\" SET note = '' WHERE _row_id = 1"))
    seq = head_seq(fresh_db)
    with session_scope() as s:
        changeset_id = s.scalar(text("SELECT id FROM audit.changeset WHERE seq = :s"), {"s": seq})
        detail = trail_views.changeset(session=s, actor=editor, changeset_id=changeset_id)
        frames = trail_views.change_frames(session=s, actor=editor, detail=detail, op="update")
        versions = trail_views.row_versions_frame(session=s, actor=editor, dataset_id=ds, row_id=1)
    assert frames.updates is not None
    assert frames.updates.data["Note"].tolist() == ["∅", '""']
    assert versions["Changed cells"].tolist() == ["", 'Note: ∅ → ""']


def test_an_as_of_download_too_large_says_what_can_be_done_on_the_history_page(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The table as of a changeset cannot be filtered: a download past the size limit says so
    and points to what the page offers, not to a filter it does not have; nothing recorded."""
    from portal.errors import ValidationError

    rows = "".join(f"row-{n:06d},{'x' * 60}\n" for n in range(20_000))
    ds = upload_dataset(editor, ("Name,Note\n" + rows).encode(), name="Wide")
    with pytest.raises(ValidationError) as refused, session_scope() as s:
        trail_views.export_as_of(
            session=s, actor=editor, dataset_id=ds, seq=head_seq(fresh_db), max_mb=1
        )
    message = str(refused.value)
    assert "larger than 1 MB" in message
    assert "filter the rows" not in message
    assert "cannot be filtered" in message
    assert "page by page" in message
    assert "Row history" in message
    assert "Nothing was recorded" in message
    with fresh_db.app.connect() as conn:
        assert not conn.scalar(text("SELECT count(*) FROM audit.event WHERE kind = 'export'"))


def test_row_history_and_a_changeset_s_rows_show_date_times_in_utc_whoever_wrote_them(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """A psql session in another time zone writes its date-times into the log with its own
    offset (``2024-03-03T15:30:00+05:30``); a row's versions and a changeset's rows show them
    in UTC, as the table as of the changeset (and the Datasets page) does, not in that zone."""
    ds = upload_dataset(editor, b"Name,At\nann,2024-03-03 10:00:00\n", name="Times")
    table = table_name(fresh_db.app, ds)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text("SET TIME ZONE 'Asia/Kolkata'"))
        conn.execute(text(f"UPDATE data.\"{table}\" SET at = at + interval '1 hour'"))
        conn.execute(
            text(f"INSERT INTO data.\"{table}\" (name, at) VALUES ('bob', '2024-03-03 12:00Z')")
        )
    seq = head_seq(fresh_db)
    with session_scope() as s:
        changeset_id = s.scalar(text("SELECT id FROM audit.changeset WHERE seq = :s"), {"s": seq})
        detail = trail_views.changeset(session=s, actor=editor, changeset_id=changeset_id)
        updated = trail_views.change_frames(session=s, actor=editor, detail=detail, op="update")
        inserted = trail_views.change_frames(session=s, actor=editor, detail=detail, op="insert")
        versions = trail_views.row_versions_frame(session=s, actor=editor, dataset_id=ds, row_id=1)
        state = trail_views.as_of(session=s, actor=editor, dataset_id=ds, seq=seq)
    ten, eleven, noon = (f"2024-03-03 {h}:00:00+00:00" for h in (10, 11, 12))
    assert state.frame["At"].tolist() == [eleven, noon]
    assert versions["At"].tolist() == [ten, eleven]
    assert versions["Changed cells"].tolist() == ["", f"At: {ten} → {eleven}"]
    assert updated.updates is not None
    assert updated.updates.data["At"].tolist() == [ten, eleven]
    assert inserted.inserted is not None
    assert inserted.inserted["At"].tolist() == [noon]


def test_date_times_at_the_ends_of_the_range_written_far_from_utc_are_shown_in_utc(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """9999-12-31 23:00 UTC written by a psql session at +14:00 is logged as year 10000, and
    0001-01-01 01:00 UTC at -12:00 as year 1 BC, which Python's datetime cannot read: the table
    as of that changeset stopped with a ValueError (a traceback on the History page)."""
    ds = upload_dataset(editor, b"Name,At\nann,2024-03-03 10:00:00\nbob,2024-03-03 10:00:00\n")
    table = table_name(fresh_db.app, ds)
    with fresh_db.superuser.begin() as conn:
        set_at = text(f'UPDATE data."{table}" SET at = :at WHERE _row_id = :row')
        conn.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        conn.execute(set_at, {"at": "9999-12-31 23:00Z", "row": 1})
        conn.execute(text("SET TIME ZONE 'Etc/GMT+12'"))
        conn.execute(set_at, {"at": "0001-01-01 01:00Z", "row": 2})
        logged = conn.scalars(text("SELECT after->>'at' FROM audit.row_change ORDER BY id")).all()
    assert logged == ["10000-01-01T13:00:00+14:00", "0001-12-31T13:00:00-12:00 BC"]
    seq = head_seq(fresh_db)
    with session_scope() as s:
        state = trail_views.as_of(session=s, actor=editor, dataset_id=ds, seq=seq)
        first = trail_views.row_versions_frame(session=s, actor=editor, dataset_id=ds, row_id=1)
        second = trail_views.row_versions_frame(session=s, actor=editor, dataset_id=ds, row_id=2)
    last, earliest = "9999-12-31 23:00:00+00:00", "0001-01-01 01:00:00+00:00"
    assert state.frame["At"].tolist() == [last, earliest]
    assert first["At"].tolist()[-1] == last
    assert second["Changed cells"].tolist()[-1] == f"At: 2024-03-03 10:00:00+00:00 → {earliest}"


def test_whole_rows_tell_no_value_from_an_empty_text(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """The table as of a changeset, a row's versions and a changeset's rows in full showed no
    value and an empty text (written from psql) both as a blank cell; no value is now a missing
    cell (shown as the Datasets page shows one), an empty text a blank one. The download
    still writes both as an empty field."""
    ds = upload_dataset(editor, b"Name,Note\nann,\nbob,\n", name="Notes")
    table = table_name(fresh_db.app, ds)
    with fresh_db.superuser.begin() as conn:
        conn.execute(text(f"UPDATE data.\"{table}\" SET note = '' WHERE _row_id = 2"))
        conn.execute(
            text(f"INSERT INTO data.\"{table}\" (name, note) VALUES ('cy', ''), ('dee', NULL)")
        )
    seq = head_seq(fresh_db)
    with session_scope() as s:
        state = trail_views.as_of(session=s, actor=editor, dataset_id=ds, seq=seq)
        export = trail_views.export_as_of(session=s, actor=editor, dataset_id=ds, seq=seq)
        versions = trail_views.row_versions_frame(session=s, actor=editor, dataset_id=ds, row_id=2)
        changeset_id = s.scalar(text("SELECT id FROM audit.changeset WHERE seq = :s"), {"s": seq})
        detail = trail_views.changeset(session=s, actor=editor, changeset_id=changeset_id)
        inserted = trail_views.change_frames(session=s, actor=editor, detail=detail, op="insert")
    assert state.frame["Note"].isna().tolist() == [True, False, False, True]
    assert state.frame["Note"].tolist()[1:3] == ["", ""]
    assert versions["Note"].isna().tolist() == [True, False]
    assert versions["Note"].tolist()[1] == ""
    assert inserted.inserted is not None
    assert inserted.inserted["Note"].isna().tolist() == [False, True]
    assert inserted.inserted["Note"].tolist()[0] == ""
    assert read_csv(export.data)[1:] == [["ann", ""], ["bob", ""], ["cy", ""], ["dee", ""]]
