"""Bulk loads: many rows into a dataset table in one COPY, audited as one record.

Capturing a million inserted rows as a million JSONB images costs several times the load
itself. A bulk load instead keeps the exact COPY stream once (``audit.bulk_load``, compressed,
with its SHA-256, the column names and types, and the ``_row_id`` range), inside the changeset's
hash. The capture trigger checks the rows COPY inserted are exactly that range, and
``audit.trail`` rebuilds them by replaying the stream through COPY into the same types.

    first = reserve_row_ids(session=s, table_name=t, count=len(frame))
    csv_bytes = ...   # no header; _row_id first (first, first+1, ...), then `columns` in order
    bulk_insert(session=s, changeset_id=cs, dataset_id=d, table_name=t, columns=cols,
                first_row_id=first, row_count=len(frame), csv_bytes=csv_bytes)
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.capture import DATA_SCHEMA, qualified_table
from portal.errors import AuditError
from portal.models import BulkLoad

COMPRESSION_LEVEL = 1  # fast: the stream is kept for audit, read back rarely


@dataclass(frozen=True)
class BulkLoadResult:
    bulk_load_id: int
    first_row_id: int
    last_row_id: int
    row_count: int


def reserve_row_ids(*, session: Session, table_name: str, count: int) -> int:
    """Lock ``data.<table_name>`` against other writers until COMMIT and reserve ``count``
    consecutive ``_row_id`` values; return the first."""
    table = qualified_table(session, table_name)
    session.execute(text(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
    sequence = session.scalar(select(func.pg_get_serial_sequence(table, "_row_id")))
    if sequence is None:
        raise AuditError(f"data.{table_name} has no _row_id identity column")
    first = int(session.execute(select(func.nextval(sequence))).scalar_one())
    if count > 1:
        session.execute(select(func.setval(sequence, first + count - 1, True)))
    return first


def column_types(*, session: Session, table_name: str, columns: Sequence[str]) -> list[list[str]]:
    """``[[name, type], ...]`` for ``columns`` of ``data.<table_name>``, types as PostgreSQL
    writes them (``numeric(12,2)``, ``timestamp with time zone``)."""
    rows = session.execute(
        text(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0"
            " AND NOT a.attisdropped"
        ),
        {"schema": DATA_SCHEMA, "table": table_name},
    ).all()
    types: dict[str, str] = {row[0]: row[1] for row in rows}
    missing = [c for c in columns if c not in types]
    if missing:
        raise AuditError(f"data.{table_name} has no column(s) {', '.join(missing)}")
    return [[c, types[c]] for c in columns]


def bulk_insert(
    *,
    session: Session,
    changeset_id: int,
    dataset_id: int,
    table_name: str,
    columns: Sequence[str],
    first_row_id: int,
    row_count: int,
    csv_bytes: bytes,
    upload_id: int | None = None,
) -> BulkLoadResult:
    """Record the bulk load, then COPY ``csv_bytes`` into ``data.<table_name>``.

    ``csv_bytes`` is CSV without a header: ``_row_id`` (``first_row_id`` onwards, one per row),
    then ``columns`` in order; an unquoted empty field is NULL.

    Raises:
        AuditError: a column does not exist.
        sqlalchemy.exc.DBAPIError: the rows inserted are not the declared range (the capture
            trigger refuses), or a value breaks the table's types or constraints.
    """
    typed = column_types(session=session, table_name=table_name, columns=columns)
    last_row_id = first_row_id + row_count - 1
    bulk_id: int = session.execute(
        insert(BulkLoad)
        .values(
            changeset_id=changeset_id,
            dataset_id=dataset_id,
            upload_id=upload_id,
            first_row_id=first_row_id,
            last_row_id=last_row_id,
            row_count=row_count,
            columns=typed,
            compression="zlib",
            content=zlib.compress(csv_bytes, COMPRESSION_LEVEL),
            content_sha256=hashlib.sha256(csv_bytes).hexdigest(),
        )
        .returning(BulkLoad.id)
    ).scalar_one()
    session.execute(select(func.set_config("portal.bulk_load_id", str(bulk_id), True)))
    copy_into(session, qualified_table(session, table_name), ["_row_id", *columns], csv_bytes)
    return BulkLoadResult(bulk_id, first_row_id, last_row_id, row_count)


def copy_into(session: Session, table: str, columns: Sequence[str], csv_bytes: bytes) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT csv)`` on the session's connection."""
    preparer = session.get_bind().dialect.identifier_preparer
    column_list = ", ".join(preparer.quote(c) for c in columns)
    statement = f"COPY {table} ({column_list}) FROM STDIN WITH (FORMAT csv)"
    dialect = session.get_bind().dialect
    raw: Any = session.connection().connection.dbapi_connection
    try:
        with raw.cursor() as cur:
            cur.copy_expert(statement, io.BytesIO(csv_bytes))
    except dialect.loaded_dbapi.Error as exc:  # the same exception types as session.execute
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
        ) from exc


def read_content(*, session: Session, bulk_load_id: int) -> bytes:
    """The bulk load's COPY stream, decompressed.

    Raises:
        AuditError: the stored stream no longer matches its recorded SHA-256.
    """
    row = session.execute(
        select(BulkLoad.compression, BulkLoad.content, BulkLoad.content_sha256).where(
            BulkLoad.id == bulk_load_id
        )
    ).one()
    data = zlib.decompress(row.content) if row.compression == "zlib" else bytes(row.content)
    if hashlib.sha256(data).hexdigest() != row.content_sha256:
        raise AuditError(f"bulk load {bulk_load_id}: stored rows do not match their SHA-256")
    return data
