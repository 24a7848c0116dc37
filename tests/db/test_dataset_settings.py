"""A dataset's settings hold for every way its rows change: one that requires a reason gets
one for an upload that appends to or replaces its rows, as for an edit (a revert always needs
one). Whether it
requires one is chosen at its creation and changed by admins only, each change itself an
audited changeset; a change made on a stale view, without a reason, or by an editor is
refused and writes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.chain import verify
from portal import datasets, uploads, writes
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import PermissionDenied, ValidationError
from tests.conftest import DatabaseHandle
from tests.factories import make_user, upload_dataset

pytestmark = pytest.mark.db

CSV = b"Name,Qty\nAnn,1\nBob,2\n"


@pytest.mark.parametrize("mode", ["append", "replace"])
def test_an_upload_into_a_dataset_that_requires_a_reason_needs_one(
    fresh_db: DatabaseHandle, mode: str
) -> None:
    with Session(fresh_db.app) as s, s.begin():
        username, _ = make_user(s, role="editor")
    editor = Actor(username, "Eddie", "editor")
    dataset_id = upload_dataset(editor, CSV, name="People")
    with fresh_db.owner.connect() as conn:
        assert conn.execute(
            text("SELECT reason_required FROM portal.datasets WHERE id = :id"), {"id": dataset_id}
        ).scalar_one()
        before = conn.execute(text("SELECT count(*) FROM audit.changeset")).scalar_one()
    parsed = uploads.read_file(b"Name,Qty\nCy,3\n")
    spec = uploads.dataset_spec(dataset_id)
    with pytest.raises(ValidationError, match="reason"):
        uploads.import_file(
            actor=editor,
            filename="more.csv",
            data=b"Name,Qty\nCy,3\n",
            parsed=parsed,
            spec=spec,
            result=uploads.check(parsed, spec),
            target=uploads.ExistingDataset(dataset_id, mode),  # type: ignore[arg-type]
            reason="   ",
        )
    with fresh_db.owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit.changeset")).scalar_one() == before


@pytest.mark.parametrize("mode", ["new", "append", "replace"])
def test_an_upload_with_a_reason_longer_than_an_edits_is_refused(
    fresh_db: DatabaseHandle, mode: str
) -> None:
    """An upload's reason is kept in the changeset like an edit's, under the same limit."""
    with Session(fresh_db.app) as s, s.begin():
        username, _ = make_user(s, role="editor")
    editor = Actor(username, "Eddie", "editor")
    dataset_id = upload_dataset(editor, CSV, name="People")
    with fresh_db.owner.connect() as conn:
        before = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM audit.changeset), (SELECT count(*) FROM"
                " audit.upload), (SELECT count(*) FROM portal.datasets)"
            )
        ).one()
    data = b"Name,Qty\nCy,3\n"
    parsed = uploads.read_file(data)
    spec = uploads.dataset_spec(dataset_id)
    target = (
        uploads.NewDataset("More people")
        if mode == "new"
        else uploads.ExistingDataset(dataset_id, mode)  # type: ignore[arg-type]
    )
    with pytest.raises(ValidationError, match="The reason is 2,001 characters; use at most 2,000"):
        uploads.import_file(
            actor=editor,
            filename="more.csv",
            data=data,
            parsed=parsed,
            spec=spec,
            result=uploads.check(parsed, spec),
            target=target,
            reason="x" * 2_001,
        )
    with fresh_db.owner.connect() as conn:
        assert (
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM audit.changeset), (SELECT count(*) FROM"
                    " audit.upload), (SELECT count(*) FROM portal.datasets)"
                )
            ).one()
            == before
        )


def _people(db: DatabaseHandle, reason_required: bool = True) -> tuple[Actor, Actor, int]:
    """An admin, an editor, and a dataset the editor uploaded."""
    with Session(db.app) as s, s.begin():
        boss, _ = make_user(s, role="admin")
        eddie, _ = make_user(s, role="editor")
    admin, editor = Actor(boss, "Boss", "admin"), Actor(eddie, "Eddie", "editor")
    dataset_id = upload_dataset(editor, CSV, name="People", reason_required=reason_required)
    return admin, editor, dataset_id


def _required(db: DatabaseHandle, dataset_id: int) -> bool:
    with db.app.connect() as conn:
        return bool(
            conn.scalar(
                text("SELECT reason_required FROM portal.datasets WHERE id = :i"), {"i": dataset_id}
            )
        )


def _edit_without_reason(editor: Actor, dataset_id: int) -> None:
    from portal.diffs import ChangeSet, RowUpdate

    with session_scope() as s:
        writes.commit(
            session=s,
            actor=editor,
            dataset_id=dataset_id,
            spec_version=1,
            changes=ChangeSet(updates=(RowUpdate(1, 1, {"qty": 1}, {"qty": 5}),)),
            reason="",
        )


def test_an_admin_lets_a_datasets_changes_go_without_a_reason_as_an_audited_change(
    fresh_db: DatabaseHandle,
) -> None:
    admin, editor, dataset_id = _people(fresh_db)
    with pytest.raises(ValidationError, match="needs a reason"):
        _edit_without_reason(editor, dataset_id)
    with session_scope() as s:
        changeset_id = datasets.set_reason_required(
            session=s,
            actor=admin,
            dataset_id=dataset_id,
            required=False,
            expected=True,
            reason="bulk corrections this week",
        )
    assert not _required(fresh_db, dataset_id)
    with fresh_db.app.connect() as conn:
        recorded = conn.execute(
            text(
                "SELECT kind, dataset_id, actor_username, reason, detail, seq FROM audit.changeset"
                " WHERE id = :i"
            ),
            {"i": changeset_id},
        ).one()
    assert recorded[:4] == ("dataset", dataset_id, admin.username, "bulk corrections this week")
    assert recorded.detail == {
        "action": "settings",
        "reason_required": {"before": True, "after": False},
    }
    assert recorded.seq is not None  # sealed into the chain
    _edit_without_reason(editor, dataset_id)  # now allowed
    with session_scope() as s:
        assert verify(session=s).ok


@pytest.mark.parametrize(
    ("who", "expected", "reason", "refusal"),
    [
        ("editor", True, "why", PermissionDenied),
        ("admin", False, "why", ValidationError),  # changed since it was read
        ("admin", True, "  ", ValidationError),  # no reason
        ("admin", True, "x" * 2_001, ValidationError),  # longer than an edit's may be
    ],
)
def test_a_setting_change_that_is_refused_writes_nothing(
    fresh_db: DatabaseHandle, who: str, expected: bool, reason: str, refusal: type[Exception]
) -> None:
    admin, editor, dataset_id = _people(fresh_db)
    with fresh_db.app.connect() as conn:
        before = conn.scalar(text("SELECT count(*) FROM audit.changeset"))
    with session_scope() as s, pytest.raises(refusal):
        datasets.set_reason_required(
            session=s,
            actor=admin if who == "admin" else editor,
            dataset_id=dataset_id,
            required=False,
            expected=expected,
            reason=reason,
        )
    assert _required(fresh_db, dataset_id)
    with fresh_db.app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit.changeset")) == before


def test_a_dataset_created_without_reasons_says_so_in_its_creation(
    fresh_db: DatabaseHandle,
) -> None:
    _, editor, dataset_id = _people(fresh_db, reason_required=False)
    assert not _required(fresh_db, dataset_id)
    with fresh_db.app.connect() as conn:
        created = conn.scalar(
            text("SELECT detail FROM audit.changeset WHERE dataset_id = :i ORDER BY id LIMIT 1"),
            {"i": dataset_id},
        )
    assert created["created"]["reason_required"] is False
    _edit_without_reason(editor, dataset_id)
