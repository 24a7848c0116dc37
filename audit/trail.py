"""Reading the audit trail: a dataset's state as of any changeset, rebuilt from the log alone;
the rows of a bulk load (all of them, or a slice); every version of one row.

``dataset_state`` folds every captured change of a dataset, in chain order (``seq``; inside a
changeset, row changes by id, then bulk loads by id), into ``{_row_id: row image}``, and each
column added or removed after the dataset's creation (a ``schema`` changeset whose detail's
``action`` is ``add_column`` or ``remove_column``: ``portal.column_changes``) gives every row
then present that column with the value recorded for it, or takes it out. Bulk loads
are replayed through ``COPY`` into a temporary table of the recorded column types, so their
images are exactly what the capture trigger would have recorded row by row. A slice of a bulk
load (a page of it, or the one row a row's history needs) replays only that slice's records,
cut from the stream at record boundaries, so a page never costs a million-row replay.

Images are read from the ``jsonb`` text; with ``exact=True`` decimals come back as ``Decimal``
(``12.10`` stays ``12.10``), otherwise as ``float`` like psycopg2's default.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.bulk import copy_into, read_content
from audit.search import RowEvent, loads, row_history
from portal.errors import AuditError

RowImage = dict[str, Any]
# format_type() output such as "numeric(12,2)" or "timestamp with time zone"; anything else in a
# stored column list is refused rather than placed into DDL.
SQL_TYPE = re.compile(r"^[a-z][a-z0-9_ ]*(\([0-9, ]+\))?( with(out)? time zone)?(\[\])?$")

# A column added or removed after the dataset's creation (``portal.column_changes``), as a row
# image: the column added and the value every row then in the table got (the detail keeps a
# decimal as its exact text, which becomes the number the capture would have recorded), or the
# column removed (its value null). ``op`` is the detail's action.
_COLUMN_IMAGE = """
    CAST(jsonb_build_object(
      c.detail->'column'->>'name',
      CASE WHEN c.detail->>'action' = 'remove_column' THEN 'null'
           WHEN c.detail->'column'->>'type' = 'decimal'
                AND jsonb_typeof(c.detail->'fill') = 'string'
           THEN to_jsonb(CAST(c.detail->>'fill' AS numeric))
           ELSE coalesce(c.detail->'fill', 'null') END) AS text)
"""
_COLUMN_CHANGES = "c.kind = 'schema' AND c.detail->>'action' IN ('add_column', 'remove_column')"

_EVENTS = text(
    """
    SELECT c.seq, 0 AS part, r.id, r.row_id, r.op, r.after::text AS after
      FROM audit.row_change r JOIN audit.changeset c ON c.id = r.changeset_id
     WHERE r.dataset_id = :dataset AND c.seq IS NOT NULL AND c.seq <= :upto
    UNION ALL
    SELECT c.seq, 1 AS part, b.id, NULL, 'bulk', NULL
      FROM audit.bulk_load b JOIN audit.changeset c ON c.id = b.changeset_id
     WHERE b.dataset_id = :dataset AND c.seq IS NOT NULL AND c.seq <= :upto
    UNION ALL
    SELECT c.seq, 2 AS part, c.id, NULL, c.detail->>'action', ({IMAGE}) AS after
      FROM audit.changeset c
     WHERE c.dataset_id = :dataset AND c.seq IS NOT NULL AND c.seq <= :upto
       AND {COLUMN_CHANGES}
     ORDER BY 1, 2, 3
    """.replace("{IMAGE}", _COLUMN_IMAGE).replace("{COLUMN_CHANGES}", _COLUMN_CHANGES)
)


def dataset_state(
    *, session: Session, dataset_id: int, as_of_seq: int | None = None, exact: bool = False
) -> dict[int, RowImage]:
    """The dataset's rows right after changeset ``as_of_seq`` (default: the newest), by
    ``_row_id``, each image without ``_row_id`` and ``_version``.

    Raises:
        AuditError: a bulk load's stored rows no longer match their SHA-256 or no longer load
            into its recorded columns, or a row change's image is not a row.
    """
    upto = as_of_seq if as_of_seq is not None else 2**62
    state: dict[int, RowImage] = {}
    result = session.execute(
        _EVENTS, {"dataset": dataset_id, "upto": upto}, execution_options={"yield_per": 10_000}
    )
    for event in result:
        if event.op == "bulk":
            state.update(bulk_rows(session=session, bulk_load_id=event.id, exact=exact))
        elif event.op == "delete":
            state.pop(event.row_id, None)
        elif event.op == "update":  # the changed cells only
            state[event.row_id] = {**state.get(event.row_id, {}), **_image(event, exact)}
        elif event.op == "add_column":  # every row the table had then has the column
            added = _image(event, exact)
            for image in state.values():
                image.update(added)
        elif event.op == "remove_column":  # and no row has it any more
            for name in _image(event, exact):
                for image in state.values():
                    image.pop(name, None)
        else:
            state[event.row_id] = _image(event, exact)
    return state


def _image(event: Any, exact: bool) -> RowImage:
    """The row change's ``after`` image; the CHECK on ``audit.row_change`` requires one, but only
    the capture trigger makes it an object.

    Raises:
        AuditError: it is not an object (rewritten by hand, triggers off).
    """
    image = loads(event.after, exact=exact)
    if not isinstance(image, dict):
        shown = event.after if len(event.after) <= 40 else event.after[:40] + "…"
        raise AuditError(
            f"row change {event.id} of changeset seq {event.seq} holds {shown}, not a row: "
            "it was altered after sealing"
        )
    return image


def bulk_rows(*, session: Session, bulk_load_id: int, exact: bool = False) -> dict[int, RowImage]:
    """The rows a bulk load inserted, rebuilt by replaying its COPY stream.

    Raises:
        AuditError: the stored stream does not match its SHA-256, or does not load into the
            recorded columns.
    """
    content = read_content(session=session, bulk_load_id=bulk_load_id)
    return _replay(session, bulk_load_id, content, exact)


def bulk_rows_slice(
    *, session: Session, bulk_load_id: int, offset: int, limit: int, exact: bool = True
) -> dict[int, RowImage]:
    """Rows ``offset`` to ``offset + limit - 1`` (from 0, in load order) of a bulk load.

    The whole stream is read and checked against its SHA-256, but only the slice's records are
    replayed.

    Raises:
        AuditError: the stored stream does not match its SHA-256, or does not load into the
            recorded columns.
    """
    content = read_content(session=session, bulk_load_id=bulk_load_id)
    return _replay(session, bulk_load_id, record_slice(content, offset, limit), exact)


def record_slice(content: bytes, offset: int, limit: int) -> bytes:
    """Records ``offset`` .. ``offset + limit - 1`` of a CSV stream (``"`` quotes, doubled
    inside a field), cut at record ends: a newline outside quotes."""
    pos, index, quotes, start = 0, 0, 0, None
    end = len(content)
    while pos < end and index < offset + limit:
        newline = content.find(b"\n", pos)
        line_end = end if newline == -1 else newline + 1
        quotes += content.count(b'"', pos, line_end)
        pos = line_end
        if quotes % 2 == 0:  # the record ends here
            index += 1
            quotes = 0
            if index == offset:
                start = pos
    if offset == 0:
        start = 0
    return b"" if start is None else content[start:pos]


def _replay(
    session: Session, bulk_load_id: int, content: bytes, exact: bool
) -> dict[int, RowImage]:
    columns = session.execute(
        text("SELECT columns FROM audit.bulk_load WHERE id = :id"), {"id": bulk_load_id}
    ).scalar_one()
    if not _column_list(columns):
        shown = json.dumps(columns, ensure_ascii=False)
        raise AuditError(
            f"bulk load {bulk_load_id} records no usable column list ({shown[:80]}): it was "
            "altered after sealing"
        )
    bad = [type_ for _, type_ in columns if not SQL_TYPE.fullmatch(type_)]
    if bad:
        raise AuditError(f"bulk load {bulk_load_id} records an unexpected column type {bad[0]!r}")
    if not content:
        return {}
    preparer = session.get_bind().dialect.identifier_preparer
    temp = preparer.quote(f"replay_bulk_{bulk_load_id}")
    definition = ", ".join(f"{preparer.quote(name)} {type_}" for name, type_ in columns)
    try:
        with session.begin_nested():
            session.execute(text(f"CREATE TEMPORARY TABLE {temp} (_row_id bigint, {definition})"))
            copy_into(session, temp, ["_row_id", *(name for name, _ in columns)], content)
            rows = session.execute(
                text(f"SELECT t._row_id, (to_jsonb(t) - '_row_id')::text AS image FROM {temp} t")
            ).all()
            session.execute(text(f"DROP TABLE {temp}"))
    except DBAPIError as exc:
        # The stream matched its SHA-256, so a stream the recorded columns cannot read (a type
        # that is none, a value of another type, a field too many or too few) means the columns.
        code = getattr(exc.orig, "pgcode", None) or ""
        if not (code.startswith("22") or code == "42704"):
            raise
        said = getattr(getattr(exc.orig, "diag", None), "message_primary", None) or code
        raise AuditError(
            f"the rows of bulk load {bulk_load_id} do not load into the columns it records "
            f"({said}): its column list was altered after sealing"
        ) from None
    return {row._row_id: loads(row.image, exact=exact) for row in rows}


def _column_list(columns: Any) -> bool:
    """``columns`` is what ``audit.bulk_load.columns`` holds when sealed: a non-empty list of
    distinct ``[name, type]`` text pairs."""
    return (
        isinstance(columns, list)
        and bool(columns)
        and all(
            isinstance(c, list) and len(c) == 2 and all(isinstance(p, str) for p in c)
            for c in columns
        )
        and len({c[0] for c in columns}) == len(columns)
    )


_COLUMN_EVENTS = text(
    """
    SELECT c.seq, c.id, c.committed_at, c.kind, c.actor_username, c.actor_display_name,
           c.reason, c.detail->>'action' AS op, ({IMAGE}) AS image
      FROM audit.changeset c
     WHERE c.dataset_id = :dataset AND c.seq IS NOT NULL AND {COLUMN_CHANGES}
     ORDER BY c.seq
    """.replace("{IMAGE}", _COLUMN_IMAGE).replace("{COLUMN_CHANGES}", _COLUMN_CHANGES)
)


def columns_changed_since(session: Session, dataset_id: int, seq: int) -> dict[str, set[str]]:
    """The physical names of the columns added to the dataset (``"add_column"``) and removed
    from it (``"remove_column"``) after its changeset ``seq``."""
    found: dict[str, set[str]] = {"add_column": set(), "remove_column": set()}
    for event in _column_events(session, dataset_id):
        if event.seq > seq:
            found[event.op].update(event.after or {})
    return found


def _column_events(session: Session, dataset_id: int) -> list[RowEvent]:
    """Each column added to the dataset or removed from it after its creation, as an event of
    op ``add_column`` or ``remove_column``: ``after`` the column and the value the rows then in
    the table got (null when removed)."""
    events = []
    for r in session.execute(_COLUMN_EVENTS, {"dataset": dataset_id}):
        after = loads(r.image)
        events.append(
            RowEvent(
                r.seq,
                r.id,
                r.committed_at,
                r.kind,
                r.actor_username,
                r.actor_display_name,
                r.reason,
                r.op,
                dict.fromkeys(after),
                after,
            )
        )
    return events


@dataclass(frozen=True)
class RowVersion:
    """One version of a row: the change that made it and the whole row right after it
    (``None`` once deleted)."""

    change: RowEvent
    row: RowImage | None
    changed: dict[str, tuple[Any, Any]]  # column -> (before, after) for the cells it changed


def row_versions(*, session: Session, dataset_id: int, row_id: int) -> list[RowVersion]:
    """Every version of one row of a dataset, oldest first, with who made it, when and why.

    Raises:
        AuditError: the bulk load that inserted the row no longer matches its SHA-256.
    """
    versions: list[RowVersion] = []
    current: RowImage | None = None
    events = row_history(session=session, dataset_id=dataset_id, row_id=row_id)
    if events:  # sorted by seq alone: stable, so a changeset's own events keep their order
        events = sorted([*events, *_column_events(session, dataset_id)], key=lambda e: e.seq)
    for event in events:
        if event.op in ("add_column", "remove_column"):
            if current is None:  # the row was not in the table then
                continue
            if event.op == "add_column":
                changed = {k: (None, v) for k, v in (event.after or {}).items()}
                current = {**current, **(event.after or {})}
            else:
                changed = {k: (current.get(k), None) for k in event.after or {}}
                current = {k: v for k, v in current.items() if k not in changed}
            # A column added or removed empty is no new version of the row.
            changed = {k: (b, a) for k, (b, a) in changed.items() if (b, a) != (None, None)}
            if changed:
                versions.append(RowVersion(event, dict(current), changed))
            continue
        if event.bulk_load_id is not None:
            first = session.execute(
                text("SELECT first_row_id FROM audit.bulk_load WHERE id = :id"),
                {"id": event.bulk_load_id},
            ).scalar_one()
            rows = bulk_rows_slice(
                session=session, bulk_load_id=event.bulk_load_id, offset=row_id - first, limit=1
            )
            current = rows.get(row_id, {})
            changed = {k: (None, v) for k, v in current.items()}
        elif event.op == "insert":
            current = dict(event.after or {})
            changed = {k: (None, v) for k, v in current.items()}
        elif event.op == "update":
            before, after = event.before or {}, event.after or {}
            current = {**(current or {}), **after}
            changed = {k: (before.get(k), after.get(k)) for k in after}
        else:
            changed = {k: (v, None) for k, v in (event.before or {}).items()}
            current = None
        versions.append(RowVersion(event, None if current is None else dict(current), changed))
    return versions


def removed_columns(session: Session, dataset_id: int) -> dict[str, dict[str, Any]]:
    """The columns removed from the dataset, by physical name, as its spec held each (the
    latest removal of a name wins): to name them in the rows they were part of."""
    rows = session.execute(
        text(
            "SELECT c.detail->'column' FROM audit.changeset c"
            " WHERE c.dataset_id = :dataset AND c.seq IS NOT NULL AND c.kind = 'schema'"
            " AND c.detail->>'action' = 'remove_column' ORDER BY c.seq"
        ),
        {"dataset": dataset_id},
    ).scalars()
    return {c["name"]: c for c in rows if isinstance(c, dict) and isinstance(c.get("name"), str)}
