"""A CSV the portal hands out uploads back to the values it was made from: the ``'`` that keeps
a spreadsheet from running a cell as a formula (``csv_safe.neutralise``) is taken off again on
upload. The revert of a large changeset advises exactly that route (download the table as of
an earlier changeset, upload it with Replace), and people edit exports in a spreadsheet. So a
download may be as large as an upload, no larger."""

from __future__ import annotations

import pytest

from portal import browse, trail_views, uploads
from portal.actor import Actor
from portal.db import session_scope
from portal.errors import ValidationError
from tests.conftest import DatabaseHandle
from tests.db.test_history_frames import editor, head_seq
from tests.db.test_trail_views import event_rows
from tests.factories import upload_dataset

pytestmark = pytest.mark.db

__all__ = ["editor"]

DATA = (
    b"Name,Qty,Price,Note,=Formula\n"
    b"ann,-5,-1.25,=1+1,@x\n"
    b"bob,3,2.50,-minus,'=quoted\n"
    b"cy,+7,0.10,'plain,+\n"
)


def test_the_as_of_and_the_datasets_export_upload_back_to_the_same_rows(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    ds = upload_dataset(editor, DATA, name="Stock")
    with session_scope() as s:
        spec = trail_views.dataset_spec(trail_views.get_dataset(session=s, dataset_id=ds))
        as_of = trail_views.export_as_of(
            session=s, actor=editor, dataset_id=ds, seq=head_seq(fresh_db)
        ).data
        now = browse.export_csv(session=s, actor=editor, dataset_id=ds).data
    original = uploads.check(uploads.read_file(DATA), spec)
    assert not original.errors
    for exported in (as_of, now):
        assert b"'-minus" in exported  # still safe to open in a spreadsheet
        assert b"ann,-5,-1.25," in exported  # numbers as numbers, not text
        parsed = uploads.read_file(exported)
        assert parsed.header == ["Name", "Qty", "Price", "Note", "=Formula"]
        again = uploads.check(parsed, spec)
        assert not again.errors, [(e.column, e.value, e.rule) for e in again.errors[:5]]
        assert again.typed.equals(original.typed)


def test_a_download_larger_than_an_upload_may_be_is_refused_and_not_recorded(
    fresh_db: DatabaseHandle, editor: Actor
) -> None:
    """A download is built in the server's memory: it may grow to the upload limit (so it can
    be uploaded back), no further, whoever asks."""
    rows = b"".join(b"person number %06d,%d,1.00,some note text\n" % (i, i) for i in range(30_000))
    ds = upload_dataset(editor, b"Name,Qty,Price,Note\n" + rows, name="Big")  # about 1.3 MB
    seq = head_seq(fresh_db)
    exports = (
        lambda s, mb: browse.export_csv(session=s, actor=editor, dataset_id=ds, max_mb=mb),
        lambda s, mb: trail_views.export_as_of(
            session=s, actor=editor, dataset_id=ds, seq=seq, max_mb=mb
        ),
    )
    for export in exports:
        with session_scope() as s, pytest.raises(ValidationError, match="larger than 1 MB"):
            export(s, 1)
        assert len(event_rows(fresh_db, "export")) == 0
    for export in exports:
        with session_scope() as s:
            assert export(s, 2).rows == 30_000
    assert len(event_rows(fresh_db, "export")) == 2
