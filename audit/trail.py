"""Reading the audit trail: a dataset's state as of any changeset, rebuilt from the log alone.

``dataset_state`` folds every captured change of a dataset, in chain order (``seq``; inside a
changeset, row changes by id, then bulk loads by id), into ``{_row_id: row image}``. Bulk loads
are replayed through ``COPY`` into a temporary table of the recorded column types, so their
images are exactly what the capture trigger would have recorded row by row.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.bulk import copy_into, read_content
from portal.errors import AuditError

RowImage = dict[str, Any]
# format_type() output such as "numeric(12,2)" or "timestamp with time zone"; anything else in a
# stored column list is refused rather than placed into DDL.
SQL_TYPE = re.compile(r"^[a-z][a-z0-9_ ]*(\([0-9, ]+\))?( with(out)? time zone)?(\[\])?$")

_EVENTS = text(
    """
    SELECT c.seq, 0 AS part, r.id, r.row_id, r.op, r.after
      FROM audit.row_change r JOIN audit.changeset c ON c.id = r.changeset_id
     WHERE r.dataset_id = :dataset AND c.seq IS NOT NULL AND c.seq <= :upto
    UNION ALL
    SELECT c.seq, 1 AS part, b.id, NULL, 'bulk', NULL
      FROM audit.bulk_load b JOIN audit.changeset c ON c.id = b.changeset_id
     WHERE b.dataset_id = :dataset AND c.seq IS NOT NULL AND c.seq <= :upto
     ORDER BY 1, 2, 3
    """
)


def dataset_state(
    *, session: Session, dataset_id: int, as_of_seq: int | None = None
) -> dict[int, RowImage]:
    """The dataset's rows right after changeset ``as_of_seq`` (default: the newest), by
    ``_row_id``, each image without ``_row_id`` and ``_version``."""
    upto = as_of_seq if as_of_seq is not None else 2**62
    state: dict[int, RowImage] = {}
    for event in session.execute(_EVENTS, {"dataset": dataset_id, "upto": upto}).all():
        if event.op == "bulk":
            state.update(bulk_rows(session=session, bulk_load_id=event.id))
        elif event.op == "delete":
            state.pop(event.row_id, None)
        elif event.op == "update":  # the changed cells only
            state[event.row_id] = {**state.get(event.row_id, {}), **event.after}
        else:
            state[event.row_id] = event.after
    return state


def bulk_rows(*, session: Session, bulk_load_id: int) -> dict[int, RowImage]:
    """The rows a bulk load inserted, rebuilt by replaying its COPY stream.

    Raises:
        AuditError: the stored stream does not match its SHA-256.
    """
    columns = session.execute(
        text("SELECT columns FROM audit.bulk_load WHERE id = :id"), {"id": bulk_load_id}
    ).scalar_one()
    bad = [type_ for _, type_ in columns if not SQL_TYPE.fullmatch(type_)]
    if bad:
        raise AuditError(f"bulk load {bulk_load_id} records an unexpected column type {bad[0]!r}")
    content = read_content(session=session, bulk_load_id=bulk_load_id)
    preparer = session.get_bind().dialect.identifier_preparer
    temp = preparer.quote(f"replay_bulk_{bulk_load_id}")
    definition = ", ".join(f"{preparer.quote(name)} {type_}" for name, type_ in columns)
    with session.begin_nested():
        session.execute(text(f"CREATE TEMPORARY TABLE {temp} (_row_id bigint, {definition})"))
        copy_into(session, temp, ["_row_id", *(name for name, _ in columns)], content)
        rows = session.execute(
            text(f"SELECT t._row_id, to_jsonb(t) - '_row_id' AS image FROM {temp} t")
        ).all()
        session.execute(text(f"DROP TABLE {temp}"))
    return {row._row_id: row.image for row in rows}
