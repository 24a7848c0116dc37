"""Bulk loads: many rows into a dataset table in one COPY, audited as one record.

Capturing a million inserted rows as a million JSONB images costs several times the load itself.
In bulk mode the capture trigger writes one ``audit.bulk_load`` row instead, from what COPY
really inserted (the ``_row_id`` range, the count, the column types), and this module stores the
exact COPY stream beside it in ``audit.bulk_content`` (hashed and compressed with zstd in a
thread while COPY loads it; streams stored before migration 0003 are zlib, and still read).
The seal refuses a bulk load without content, the hash chain covers both, and ``audit.trail``
rebuilds the rows by replaying the stream through COPY into the recorded types.

    first = reserve_row_ids(session=s, table_name=t, count=n)
    csv_bytes = ...  # CSV, no header: _row_id (first, first+1, ...), then the user columns
    bulk_insert(session=s, changeset_id=cs, table_name=t, columns=cols, csv_bytes=csv_bytes)
"""

from __future__ import annotations

import hashlib
import io
import queue
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit.capture import DATA_SCHEMA, qualified_table
from portal.errors import AuditError
from portal.models import BulkContent, BulkLoad, Upload

# zstd level 1: the stream is kept for audit and read back rarely. Measured on a 100 MB CSV:
# about 3x faster than zlib level 1 and a third of its size. Each slice is one zstd frame; the
# frames together are one standard zstd stream (``zstd -d`` reads it).
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
SLICE_SIZE = 1 << 20  # COPY starts on the first slice while the thread hashes and packs the rest
BULK_WORK_MEM = "1GB"
COPY_READ_SIZE = 1 << 20
PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


@dataclass(frozen=True)
class BulkLoadResult:
    bulk_load_id: int | None  # None when there were no rows
    first_row_id: int | None
    last_row_id: int | None
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


def user_columns(*, session: Session, table_name: str) -> list[str]:
    """The table's columns other than ``_row_id`` and ``_version``, in table order."""
    return list(
        session.scalars(
            text(
                "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0"
                " AND NOT a.attisdropped AND a.attname NOT IN ('_row_id', '_version')"
                " ORDER BY a.attnum"
            ),
            {"schema": DATA_SCHEMA, "table": table_name},
        )
    )


def bulk_insert(
    *,
    session: Session,
    changeset_id: int,
    table_name: str,
    columns: Sequence[str],
    csv_bytes: bytes | Iterable[bytes],
    upload_id: int | None = None,
) -> BulkLoadResult:
    """COPY the CSV into ``data.<table_name>`` as one audited bulk load.

    The CSV has no header: ``_row_id`` (consecutive values, from ``reserve_row_ids``), then every
    user column in table order; an unquoted empty field is NULL. It may come in chunks
    (``csv_bytes`` an iterable of bytes), which are produced, hashed and compressed in a thread
    while COPY loads the previous ones.

    Raises:
        AuditError: ``columns`` are not the table's user columns in order.
        sqlalchemy.exc.DBAPIError: a value breaks the table's types or constraints, or the
            ``_row_id`` values are not consecutive.
    """
    expected = user_columns(session=session, table_name=table_name)
    if list(columns) != expected:
        raise AuditError(
            f"a bulk load into data.{table_name} must carry its columns {expected} in that order,"
            f" not {list(columns)}"
        )
    chunks = [csv_bytes] if isinstance(csv_bytes, bytes) else csv_bytes
    session.execute(select(func.set_config("portal.bulk_load", "on", True)))
    # The capture trigger's transition table holds every inserted row; with the default
    # work_mem (4 MB) it spills to a temporary file. Keep it in memory for this transaction.
    session.execute(select(func.set_config("work_mem", BULK_WORK_MEM, True)))
    # A failed COPY aborts the transaction, and with it these transaction-local settings.
    digest, content = _streamed_copy(
        session, qualified_table(session, table_name), ["_row_id", *columns], chunks
    )
    session.execute(select(func.set_config("portal.bulk_load", "off", True)))
    bulk = session.execute(
        select(BulkLoad.id, BulkLoad.first_row_id, BulkLoad.last_row_id, BulkLoad.row_count)
        .where(BulkLoad.changeset_id == changeset_id)
        .order_by(BulkLoad.id.desc())
        .limit(1)
    ).one_or_none()
    if bulk is None:  # no rows: nothing was loaded, nothing to record
        return BulkLoadResult(None, None, None, 0)
    _insert_content(session, bulk.id, upload_id, content, digest)
    return BulkLoadResult(bulk.id, bulk.first_row_id, bulk.last_row_id, bulk.row_count)


class _ChunkReader(io.RawIOBase):
    """A file for ``copy_expert`` that reads the chunks a producer thread puts in a queue."""

    def __init__(self, chunks: queue.Queue[bytes | memoryview | BaseException | None]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._pending and not self._done:
            item = self._chunks.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._pending = memoryview(item)
        n = len(self._pending) if size is None or size < 0 else size
        out, self._pending = self._pending[:n], self._pending[n:]
        return bytes(out)


def _streamed_copy(
    session: Session, table: str, columns: Sequence[str], chunks: Iterable[bytes]
) -> tuple[str, bytes]:
    """COPY the chunks while a thread produces them; return their SHA-256 and zstd stream."""
    pending: queue.Queue[bytes | memoryview | BaseException | None] = queue.Queue(maxsize=4)
    stop = threading.Event()
    sha, codec = hashlib.sha256(), pa.Codec(COMPRESSION, compression_level=COMPRESSION_LEVEL)
    packed: list[bytes] = []

    def put(item: bytes | memoryview | BaseException | None) -> None:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for piece in _slices(chunks):
                if stop.is_set():
                    return
                put(piece)  # COPY sends it while this thread hashes and compresses it
                sha.update(piece)
                packed.append(codec.compress(piece, asbytes=True))
            put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the COPY side, which raises it
            put(exc)

    producer = threading.Thread(target=produce, name="bulk-copy-producer", daemon=True)
    producer.start()
    try:
        copy_into(session, table, columns, _ChunkReader(pending))
    finally:
        stop.set()
        producer.join()
    return sha.hexdigest(), b"".join(packed)


def _slices(chunks: Iterable[bytes]) -> Iterator[memoryview]:
    """The chunks cut into pieces of at most ``SLICE_SIZE`` bytes (views, not copies)."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), SLICE_SIZE):
            yield view[start : start + SLICE_SIZE]


def _insert_content(
    session: Session, bulk_load_id: int, upload_id: int | None, content: bytes, digest: str
) -> None:
    """Insert the ``audit.bulk_content`` row: tens of megabytes of bytea travel as raw bytes
    in a binary COPY, not as a hex literal the server must parse."""
    binary_copy(
        session,
        "audit.bulk_content",
        ["bulk_load_id", "upload_id", "compression", "content", "content_sha256"],
        [(bulk_load_id, upload_id, COMPRESSION, content, digest)],
    )


class Jsonb(str):
    """A JSON document to send as ``jsonb`` in ``binary_copy``."""


def binary_copy(
    session: Session, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT binary)`` for rows of ``int`` (bigint),
    ``str`` (text), ``Jsonb``, ``bytes`` (bytea) and ``None``. ``table`` is trusted SQL."""
    stream = io.BytesIO()
    stream.write(PGCOPY_SIGNATURE + struct.pack("!ii", 0, 0))
    for row in rows:
        stream.write(struct.pack("!h", len(row)))
        for value in row:
            field = _binary_field(value)
            stream.write(struct.pack("!i", -1) if field is None else struct.pack("!i", len(field)))
            stream.write(field or b"")
    stream.write(struct.pack("!h", -1))
    _copy(
        session,
        f"COPY {table} ({_column_list(session, columns)}) FROM STDIN WITH (FORMAT binary)",
        stream.getvalue(),
    )


def _binary_field(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):  # pragma: no cover - no boolean columns sent this way
        raise TypeError("booleans are not supported")
    if isinstance(value, int):
        return struct.pack("!q", value)
    if isinstance(value, Jsonb):
        return b"\x01" + value.encode()
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise TypeError(f"cannot send {type(value).__name__} in a binary COPY")


def copy_into(
    session: Session, table: str, columns: Sequence[str], csv_bytes: bytes | io.RawIOBase
) -> None:
    """``COPY table (columns) FROM STDIN (FORMAT csv)`` on the session's connection.

    Raises:
        sqlalchemy.exc.DBAPIError: as ``Session.execute`` would, for the same database errors.
    """
    _copy(
        session,
        f"COPY {table} ({_column_list(session, columns)}) FROM STDIN WITH (FORMAT csv)",
        csv_bytes,
    )


def _column_list(session: Session, columns: Sequence[str]) -> str:
    preparer = session.get_bind().dialect.identifier_preparer
    return ", ".join(preparer.quote(c) for c in columns)


def _copy(session: Session, statement: str, data: bytes | io.RawIOBase) -> None:
    dialect = session.get_bind().dialect
    raw: Any = session.connection().connection.dbapi_connection
    try:
        with raw.cursor() as cur:
            source = io.BytesIO(data) if isinstance(data, bytes) else data
            cur.copy_expert(statement, source, size=COPY_READ_SIZE)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            statement, None, exc, dialect.loaded_dbapi.Error, dialect=dialect
        ) from exc


def read_content(*, session: Session, bulk_load_id: int) -> bytes:
    """The bulk load's COPY stream, decompressed.

    Raises:
        AuditError: the content is missing or no longer matches its recorded SHA-256.
    """
    row = session.execute(
        select(BulkContent.compression, BulkContent.content, BulkContent.content_sha256).where(
            BulkContent.bulk_load_id == bulk_load_id
        )
    ).one_or_none()
    if row is None:
        raise AuditError(f"bulk load {bulk_load_id} has no stored rows")
    return _checked(
        row.compression, row.content, row.content_sha256, f"bulk load {bulk_load_id}: stored rows"
    )


def read_upload(*, session: Session, upload_id: int) -> bytes:
    """The file an upload kept, as received.

    Raises:
        AuditError: the kept bytes are corrupt or no longer match the file's SHA-256.
    """
    row = session.execute(
        select(Upload.compression, Upload.content, Upload.sha256).where(Upload.id == upload_id)
    ).one()
    return _checked(
        row.compression, row.content, row.sha256, f"the kept bytes of upload {upload_id}"
    )


def _checked(compression: str, content: bytes, sha256: str, what: str) -> bytes:
    """Stored bytes decompressed and checked against their recorded SHA-256; ``what`` names
    them (plural) in the error.

    Raises:
        AuditError: they are corrupt, or do not match.
    """
    try:
        data = decompress(compression, bytes(content))
    except (zlib.error, OSError, ValueError) as exc:  # pyarrow raises OSError on corrupt zstd
        raise AuditError(f"{what} are corrupt ({exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise AuditError(f"{what} do not match their SHA-256")
    return data


def decompress(compression: str, content: bytes) -> bytes:
    """A stored stream's bytes: ``zstd`` (since migration 0003), ``zlib`` (before), or as is.

    Raises:
        ValueError: an unknown compression.
        OSError, zlib.error: the content is corrupt.
    """
    if compression == "zstd":
        stream = pa.CompressedInputStream(pa.BufferReader(content), "zstd")
        return bytes(stream.read())
    if compression == "zlib":
        return zlib.decompress(content)
    if compression in ("", "none"):
        return content
    raise ValueError(f"unknown compression {compression!r}")
