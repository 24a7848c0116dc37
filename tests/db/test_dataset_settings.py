"""A dataset's settings hold for every way its rows change: one that requires a reason gets
one for an upload that appends to or replaces its rows, as for an edit or a revert."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from portal import uploads
from portal.actor import Actor
from portal.errors import ValidationError
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
