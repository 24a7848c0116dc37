"""Renaming a dataset and changing its description (admins only): each change is itself an
audited ``dataset`` changeset with the values before and after; the table, its rows and their
history stay; a name another dataset has (in any case), an empty or invisible one, a change made
on a stale view, without a reason or by an editor is refused and writes nothing."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from audit.reconcile import check_datasets
from portal import datasets, trail_views
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import PermissionDenied, ValidationError
from tests.conftest import DatabaseHandle
from tests.factories import make_user, table_name, upload_dataset, waiting_on_locks

pytestmark = pytest.mark.db

CSV = b"Name,Qty\nAnn,1\nBob,2\n"


@pytest.fixture
def people(fresh_db: DatabaseHandle) -> tuple[Actor, Actor, int]:
    """An admin, an editor, and the editor's dataset "People" (no description)."""
    with Session(fresh_db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
        eddie, _ = make_user(s, role="editor")
    admin, editor = Actor(boss, "Boss", "admin"), Actor(eddie, "Eddie", "editor")
    return admin, editor, upload_dataset(editor, CSV, name="People")


def _describe(
    actor: Actor,
    dataset_id: int,
    name: str,
    description: str = "",
    *,
    expected: tuple[str, str] = ("People", ""),
    reason: str = "clearer for the team",
) -> int:
    with session_scope() as s:
        return datasets.describe_dataset(
            session=s,
            actor=actor,
            dataset_id=dataset_id,
            name=name,
            description=description,
            expected=expected,
            reason=reason,
        )


def _stored(db: DatabaseHandle, dataset_id: int) -> tuple[str, str, str]:
    with db.app.connect() as conn:
        row = conn.execute(
            text("SELECT name, description, table_name FROM portal.datasets WHERE id = :i"),
            {"i": dataset_id},
        ).one()
    return row.name, row.description, row.table_name


def _changesets(db: DatabaseHandle) -> int:
    with db.app.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM audit.changeset")) or 0)


def test_an_admin_renames_and_describes_a_dataset_as_an_audited_change(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    table = _stored(fresh_db, dataset_id)[2]
    changeset_id = _describe(admin, dataset_id, "  Staff   list ", " Everyone on the payroll. ")
    assert _stored(fresh_db, dataset_id) == ("Staff list", "Everyone on the payroll.", table)
    with fresh_db.app.connect() as conn:
        recorded = conn.execute(
            text(
                "SELECT kind, dataset_id, actor_username, reason, detail, seq"
                " FROM audit.changeset WHERE id = :i"
            ),
            {"i": changeset_id},
        ).one()
    assert recorded[:4] == ("dataset", dataset_id, admin.username, "clearer for the team")
    assert recorded.detail == {
        "action": "settings",
        "name": {"before": "People", "after": "Staff list"},
        "description": {"before": "", "after": "Everyone on the payroll."},
    }
    assert recorded.seq is not None  # sealed into the chain
    assert trail_views.setup_lines(recorded.detail) == [
        "Name: “People” → “Staff list”",
        "Description: (none) → “Everyone on the payroll.”",
    ]
    with session_scope() as s:
        assert verify(session=s).ok
    with Session(fresh_db.app) as s, s.begin():
        [drift] = check_datasets(session=s)  # the rows are the log's, under the new name
    assert drift.ok
    assert drift.name == "Staff list"


def test_only_what_changed_is_recorded_and_a_name_may_change_case(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    changeset_id = _describe(admin, dataset_id, "PEOPLE")
    with fresh_db.app.connect() as conn:
        detail = conn.scalar(
            text("SELECT detail FROM audit.changeset WHERE id = :i"), {"i": changeset_id}
        )
    assert detail == {"action": "settings", "name": {"before": "People", "after": "PEOPLE"}}
    changeset_id = _describe(admin, dataset_id, "PEOPLE", "Staff", expected=("PEOPLE", ""))
    with fresh_db.app.connect() as conn:
        detail = conn.scalar(
            text("SELECT detail FROM audit.changeset WHERE id = :i"), {"i": changeset_id}
        )
    assert detail == {"action": "settings", "description": {"before": "", "after": "Staff"}}
    assert _stored(fresh_db, dataset_id)[:2] == ("PEOPLE", "Staff")


@pytest.mark.parametrize(
    ("who", "name", "description", "expected", "reason", "refusal"),
    [
        ("editor", "Staff", "", ("People", ""), "why", "Only admins can rename"),
        ("admin", "Staff", "", ("Persons", ""), "why", "Someone renamed “Persons”"),
        ("admin", "Staff", "", ("People", "old text"), "why", "since you loaded the page"),
        ("admin", "Staff", "", ("People", ""), "   ", "Say why"),
        ("admin", "Staff", "", ("People", ""), "x" * 2_001, "The reason is 2,001 characters"),
        ("admin", "stock", "", ("People", ""), "why", "A dataset named “Stock” exists already"),
        ("admin", "   ", "", ("People", ""), "why", "Give the dataset a name"),
        ("admin", "P" * 121, "", ("People", ""), "why", "use at most 120"),
        ("admin", "Sta\u200bff", "", ("People", ""), "why", "invisible or control character"),
        ("admin", "Staff", "d" * 2_001, ("People", ""), "why", "use at most 2,000"),
        ("admin", " People ", "  ", ("People", ""), "why", "has that name and description"),
    ],
)
def test_a_refused_rename_writes_nothing(
    fresh_db: DatabaseHandle,
    people: tuple[Actor, Actor, int],
    who: str,
    name: str,
    description: str,
    expected: tuple[str, str],
    reason: str,
    refusal: str,
) -> None:
    admin, editor, dataset_id = people
    upload_dataset(editor, CSV, name="Stock")
    before = _changesets(fresh_db), _stored(fresh_db, dataset_id)
    with pytest.raises((PermissionDenied, ValidationError), match=refusal):
        _describe(
            admin if who == "admin" else editor,
            dataset_id,
            name,
            description,
            expected=expected,
            reason=reason,
        )
    assert (_changesets(fresh_db), _stored(fresh_db, dataset_id)) == before


def test_two_datasets_renamed_to_one_name_at_once_the_second_is_told(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    """The second rename waits for the first to commit, then sees the name taken: a message,
    not the unique constraint's error."""
    admin, editor, first = people
    second = upload_dataset(editor, CSV, name="Stock")
    outcome: list[BaseException | int] = []

    def rename_second() -> None:
        try:
            outcome.append(_describe(admin, second, "staff", expected=("Stock", "")))
        except BaseException as exc:  # reported below
            outcome.append(exc)

    with session_scope() as s:
        datasets.describe_dataset(
            session=s,
            actor=admin,
            dataset_id=first,
            name="Staff",
            description="",
            expected=("People", ""),
            reason="why",
        )
        worker = threading.Thread(target=rename_second)
        worker.start()
        deadline = time.monotonic() + 20
        while waiting_on_locks(fresh_db.superuser) == 0 and worker.is_alive():
            assert time.monotonic() < deadline, "the second rename never waited"
            time.sleep(0.05)
    worker.join(timeout=60)
    [result] = outcome
    assert isinstance(result, ValidationError), result
    assert "A dataset named “Staff” exists already" in str(result)
    assert _stored(fresh_db, second)[0] == "Stock"


def test_a_renamed_dataset_removed_outside_the_portal_is_named_as_last_renamed(
    fresh_db: DatabaseHandle, people: tuple[Actor, Actor, int]
) -> None:
    admin, _, dataset_id = people
    _describe(admin, dataset_id, "Staff")
    _describe(admin, dataset_id, "Staff", "payroll", expected=("Staff", ""))
    table = table_name(fresh_db.app, dataset_id)
    with fresh_db.app.begin() as conn:
        conn.execute(text("DELETE FROM portal.datasets WHERE id = :id"), {"id": dataset_id})
        conn.execute(text(f"DROP TABLE data.{table}"))
    with Session(fresh_db.app) as s, s.begin():
        [drift] = check_datasets(session=s)
    assert (drift.dataset_id, drift.name, drift.missing) == (dataset_id, "Staff", 2)
