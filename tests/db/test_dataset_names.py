"""Dataset names that differ but share a physical table name: two creations at once must both
land (on different tables) or be refused with a message, never crash on the unique table name."""

from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import datasets, uploads
from portal.actor import Actor
from portal.csv_import import ImportRefused
from portal.db import session_scope
from portal.errors import ValidationError
from portal.spec import ColumnSpec, DatasetSpec
from tests.conftest import DatabaseHandle
from tests.factories import make_user, upload_dataset, waiting_on_locks

pytestmark = pytest.mark.db

CSV = b"Name,Qty\nAnn,1\nBob,2\n"


@pytest.fixture
def editor(fresh_db: DatabaseHandle) -> Actor:
    with Session(fresh_db.app) as s, s.begin():
        username, _ = make_user(s, role="editor")
    return Actor(username, "Eddie", "editor")


def datasets_stored(db: DatabaseHandle) -> int:
    with db.owner.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM portal.datasets")).scalar_one())


def test_two_names_with_one_table_name_created_at_once_both_land(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    spec = DatasetSpec.from_json({"columns": [{"label": "Name", "name": "name", "type": "text"}]})
    outcome: list[object] = []

    def second() -> None:
        try:
            outcome.append(upload_dataset(editor, CSV, name="sales-2024"))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    with session_scope() as session:
        first = datasets.create_dataset(session=session, actor=editor, name="sales 2024", spec=spec)
        assert first.table_name == "ds_sales_2024"
        worker = threading.Thread(target=second)
        worker.start()
        deadline = time.monotonic() + 20
        while waiting_on_locks(fresh_db.superuser) == 0 and worker.is_alive():
            assert time.monotonic() < deadline, "the second creation never waited"
            time.sleep(0.05)
    worker.join(timeout=60)
    [result] = outcome
    assert isinstance(result, int), f"the second creation failed: {result!r}"
    with fresh_db.owner.connect() as conn:
        tables = conn.execute(
            text("SELECT name, table_name FROM portal.datasets ORDER BY id")
        ).all()
    assert [t for _, t in tables] == ["ds_sales_2024", "ds_sales_2024_2"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("ΟΔΟΣ", "ΟΔΟΣ"),  # Python lower-cases the final Σ to ς, PostgreSQL to σ
        ("straße istanbul", "Straße İstanbul"),  # İ: Python "i̇", PostgreSQL "i"
        # é as one character (as typed) and as e with a combining accent (as a file's name
        # may come from macOS, and the Upload page proposes it): the same name on screen.
        ("Café", "Cafe\u0301"),
        ("Cafe\u0301", "CAFÉ"),
    ],
)
def test_a_taken_unicode_name_is_refused_with_a_message(
    fresh_db: DatabaseHandle, editor: Actor, first: str, second: str
) -> None:
    upload_dataset(editor, CSV, name=first)
    with pytest.raises(ValidationError, match=r"exists already \(names are compared ignoring"):
        upload_dataset(editor, CSV, name=second)
    assert datasets_stored(fresh_db) == 1


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("Sales\u200b 2024", "U+200B"),  # zero-width space: looks like "Sales 2024"
        ("\u202eSales", "U+202E"),  # right-to-left override
        ("Sales\x1b[31m", "U+001B"),  # a terminal escape
        ("Sales\u3164", "U+3164"),  # Hangul filler: a letter that draws nothing
    ],
)
def test_a_name_with_an_invisible_character_is_refused(
    fresh_db: DatabaseHandle, editor: Actor, name: str, shown: str
) -> None:
    with pytest.raises(
        ValidationError, match=re.escape(f"invisible or control character ({shown}")
    ):
        upload_dataset(editor, CSV, name=name)
    assert datasets_stored(fresh_db) == 0


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        (
            "Name,Qty\u200b",
            "Column 2 (“Qty”) has an invisible or control character in its label"
            " (U+200B, character 4)",
        ),  # reads as a second "Qty" beside a real one
        ("\u202eName,Qty", "Column 1 (“Name”) has an invisible"),  # bidi override, left out
        (
            "Name,Q\x1bty",
            "Column 2 (“Q ty”) has an invisible or control character in its label"
            " (U+001B, character 2)",
        ),  # a terminal escape, shown as a space
    ],
)
def test_a_column_label_with_an_invisible_character_is_refused(
    fresh_db: DatabaseHandle, editor: Actor, header: str, shown: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(shown)) as refused:
        upload_dataset(editor, f"{header}\nAnn,1\n".encode(), name="Stock")
    assert "remove it from the file's header" in str(refused.value)
    assert datasets_stored(fresh_db) == 0


def test_column_labels_that_differ_only_in_how_an_accent_is_written_are_one_label(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """ "Café" with é as one character and as e with a combining accent look the same: a header
    with both made two columns of one name on screen, and a file whose header wrote the accent
    the other way did not fit the dataset ("missing Café; not in the dataset Café")."""
    with pytest.raises(ImportRefused, match="columns 1 and 2 are both named"):
        upload_dataset(editor, "Café,Cafe\u0301\n1,2\n".encode(), name="Twice")
    assert datasets_stored(fresh_db) == 0
    dataset_id = upload_dataset(editor, "Name,Café\nAnn,1\n".encode(), name="Menu")
    data = "Name,Cafe\u0301\nBob,2\n".encode()
    parsed = uploads.read_file(data)
    spec = uploads.dataset_spec(dataset_id)
    result = uploads.check(parsed, spec)
    assert not result.errors
    assert result.typed["cafe"].tolist() == [2]


def test_a_column_label_broken_over_lines_is_kept(editor: Actor) -> None:
    dataset_id = upload_dataset(editor, b'Name,"Qty\r\non hand"\nAnn,1\n', name="Stock")
    with session_scope() as s:
        labels = [
            c.label
            for c in datasets.dataset_spec(
                datasets.get_dataset(session=s, dataset_id=dataset_id)
            ).columns
        ]
    assert labels == ["Name", "Qty\r\non hand"]


def test_a_description_over_the_limit_is_refused(editor: Actor) -> None:
    with session_scope() as s, pytest.raises(ValidationError, match="description is 2,001"):
        datasets.create_dataset(
            session=s,
            actor=editor,
            name="Notes",
            spec=DatasetSpec((ColumnSpec("Name", "name", "text"),)),
            description="x" * 2_001,
        )
