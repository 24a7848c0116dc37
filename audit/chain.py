"""The hash chain over changesets: canonical encoding, verification, head.

Every changeset is sealed at COMMIT by the database (``audit.seal()``, migrations 0002 and 0003;
the ``audit.changeset_digest`` and ``audit.changeset_header`` it calls are version 3's since
migration 0009), which gives it the next gap-free ``seq`` and ``hash = H(prev_hash, header,
rows)``. This module
re-implements the encoding independently in Python, so ``portal audit verify`` does not trust any
function stored in the database it checks. Audit events have a chain of their own
(``audit/event_chain.py``).

Canonical encoding, version 3 (``portal-audit/3``, sealed since migration 0009)
-------------------------------------------------------------------------------
All text is UTF-8. ``sha256`` is SHA-256; ``hex`` is lower-case hexadecimal. JSON is written the
way PostgreSQL prints ``jsonb``: arrays as ``[a, b]`` (comma and one space), objects with keys
sorted by length then bytewise and ``"key": value``, strings with only ``"``, ``\\``, ``\\b``,
``\\f``, ``\\n``, ``\\r``, ``\\t`` and other characters below U+0020 (as ``\\u00xx``) escaped,
non-ASCII left as is. The ``before``, ``after``, ``client_info``, ``detail``, ``columns`` and
``report`` values are used exactly as PostgreSQL prints them (``column::text``), since jsonb text
output is canonical. Times are UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

1. For each row change of the changeset, in ascending ``row_change.id``::

       row_line = [id, dataset_id, row_id, op, before, after]        (before/after: object or null)

   then for each bulk load of the changeset (``audit.bulk_load`` joined to its
   ``audit.bulk_content``), in ascending id::

       bulk_line = ["bulk", id, dataset_id, first_row_id, last_row_id, row_count, columns,
                    upload_id, compression, content_sha256]

   (``columns`` is the jsonb array of ``[name, type]`` pairs; ``content_sha256`` is the SHA-256
   of the decompressed COPY stream, which the verifier also recomputes from the stored bytes.)
   No line contains a newline (JSON escapes it inside strings).

2. The lines fall into blocks: row lines by ``id // 1024`` (row changes whose ids share that
   quotient, in id order; at most 1,024 lines), then all bulk lines as one last block. Each
   block's digest is ``sha256`` of its lines, each followed by ``"\\n"``. Then
   ``rows_hash_v2 = sha256(digest_1 || digest_2 || ...)`` over the raw 32-byte digests of the
   blocks in that order; with no lines, ``sha256("")``. (Hashing blocks rather than single
   lines spares the database one SHA-256 call per row change; blocks keep each hashed text, and
   so the seal's memory, bounded however large the changeset.)
3. For each kept upload of the changeset (``audit.upload``), in ascending id::

       upload_line = ["upload", id, dataset_id, actor_username, filename, size_bytes, sha256,
                      mime_type, encoding, compression, report, received_at]

   (``sha256`` is the SHA-256 of the file as received, which the verifier also recomputes from
   the kept bytes.) ``rows_hash = sha256(rows_hash_v2 || sha256(upload lines, each followed by
   "\\n"))``, both raw 32-byte digests (the second is ``sha256("")`` with no upload).
4. ::

       header = ["portal-audit/3", seq, id, kind, dataset_id, actor_username, actor_display_name,
                 reason, client_info, detail, correlation_id, opened_at, committed_at, txid,
                 inserted, updated, deleted]

   ``correlation_id`` is the UUID's canonical text or null; ``dataset_id`` is an integer or
   null; ``txid`` is the integer id of the transaction that opened the changeset.
5. ``hash = hex(sha256(prev_hash + "\\n" + header + "\\n" + hex(rows_hash)))``, where
   ``prev_hash`` is the previous changeset's ``hash`` (by ``seq``) and, for ``seq`` 1, 64 zeros.

Earlier versions, still verified for the changesets sealed under them: version 2
(``portal-audit/2``, migrations 0003 to 0008) has no step 3 (``rows_hash`` is ``rows_hash_v2``)
and its header has neither ``opened_at`` nor ``txid``. Version 1 (``portal-audit/1``, migration
0002) is version 2 but for step 2 and the tag: ``rows_hash = sha256(sha256(line_1) ||
sha256(line_2) || ...)``, one digest per line in the same order, no newlines. A changeset does
not store its version: the verifier recomputes the hash under each and accepts the one that
matches. That is as strong as one version alone: the messages differ in their tag, so matching
any still takes a SHA-256 second preimage. A changeset sealed under version 1 or 2 does not
cover its uploads (the verifier still checks their bytes against their recorded SHA-256).

A verifier walks changesets by ``seq`` from 1 and checks: seq has no gap; ``prev_hash`` equals the
previous hash; the recomputed hash equals the stored one; no committed changeset is left unsealed;
no row change, kept upload, bulk load or bulk content lies outside the changesets; the head
row ``audit.chain_head`` records the last changeset (its seq, hash and id); and, if given, that
a head kept outside the database (an earlier ``hash``) is still in the chain, which catches a
removed tail even when the head row was rewritten to match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from audit.bulk import read_content, read_upload
from portal.errors import AuditError

GENESIS_HASH = "0" * 64
ENCODING_V1 = "portal-audit/1"
ENCODING_V2 = "portal-audit/2"
ENCODING_V3 = "portal-audit/3"
ENCODING_TAG = ENCODING_V3  # what the seal writes now
ENCODINGS = (ENCODING_V3, ENCODING_V2, ENCODING_V1)
BLOCK_IDS = 1024  # v2: row lines are hashed in blocks of ids sharing id // BLOCK_IDS


def json_scalar(value: Any) -> str:
    """A scalar as jsonb prints it (also used by ``audit.event_chain``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # pragma: no cover - no boolean fields in v1
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def json_array(items: Iterable[str]) -> str:
    """Encoded items as a jsonb array prints: comma and one space."""
    return "[" + ", ".join(items) + "]"


def format_timestamp(ts: datetime) -> str:
    """``committed_at`` as the encoding writes it: UTC, microseconds, trailing Z."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row_line(
    *, id: int, dataset_id: int, row_id: int, op: str, before: str | None, after: str | None
) -> str:
    """One row change's canonical line; ``before``/``after`` are jsonb text or None."""
    return json_array(
        [str(id), str(dataset_id), str(row_id), json_scalar(op), before or "null", after or "null"]
    )


def bulk_line(
    *,
    id: int,
    dataset_id: int,
    first_row_id: int,
    last_row_id: int,
    row_count: int,
    columns: str,
    upload_id: int | None,
    compression: str | None,
    content_sha256: str | None,
) -> str:
    """One bulk load's canonical line; ``columns`` is jsonb text."""
    return json_array(
        [
            json_scalar("bulk"),
            str(id),
            str(dataset_id),
            str(first_row_id),
            str(last_row_id),
            str(row_count),
            columns,
            json_scalar(upload_id),
            json_scalar(compression),
            json_scalar(content_sha256),
        ]
    )


def upload_line(
    *,
    id: int,
    dataset_id: int | None,
    actor_username: str,
    filename: str,
    size_bytes: int,
    sha256: str,
    mime_type: str,
    encoding: str | None,
    compression: str,
    report: str,
    received_at: datetime,
) -> str:
    """One kept upload's canonical line (v3); ``report`` is jsonb text."""
    return json_array(
        [
            json_scalar("upload"),
            str(id),
            json_scalar(dataset_id),
            json_scalar(actor_username),
            json_scalar(filename),
            str(size_bytes),
            json_scalar(sha256),
            json_scalar(mime_type),
            json_scalar(encoding),
            json_scalar(compression),
            report,
            json_scalar(format_timestamp(received_at)),
        ]
    )


@dataclass(frozen=True)
class Header:
    """The sealed fields of a changeset, as read back from the database."""

    seq: int
    id: int
    kind: str
    dataset_id: int | None
    actor_username: str
    actor_display_name: str
    reason: str
    client_info: str  # jsonb text
    detail: str  # jsonb text
    correlation_id: str | None
    opened_at: datetime
    committed_at: datetime
    txid: int
    inserted: int
    updated: int
    deleted: int

    def encode(self, tag: str = ENCODING_TAG) -> str:
        opened = [json_scalar(format_timestamp(self.opened_at))] if tag == ENCODING_V3 else []
        txid = [str(self.txid)] if tag == ENCODING_V3 else []
        return json_array(
            [
                json_scalar(tag),
                str(self.seq),
                str(self.id),
                json_scalar(self.kind),
                json_scalar(self.dataset_id),
                json_scalar(self.actor_username),
                json_scalar(self.actor_display_name),
                json_scalar(self.reason),
                self.client_info,
                self.detail,
                json_scalar(self.correlation_id),
                *opened,
                json_scalar(format_timestamp(self.committed_at)),
                *txid,
                str(self.inserted),
                str(self.updated),
                str(self.deleted),
            ]
        )


class RowsHasher:
    """Accumulates one changeset's ``rows_hash`` under encoding ``tag``, line by line: its row
    lines in id order (``add_row``), then its bulk lines (``add_bulk``), then its upload lines
    (``add_upload``; part of v3 only)."""

    def __init__(self, tag: str = ENCODING_TAG) -> None:
        if tag not in ENCODINGS:
            raise ValueError(f"unknown encoding {tag!r}")
        self._v1 = tag == ENCODING_V1
        self._uploads = hashlib.sha256() if tag == ENCODING_V3 else None
        self._h = hashlib.sha256()
        self._block: Any = None  # v2: the open block's digest
        self._block_key: int | None = None  # its id // BLOCK_IDS; None for the bulk block

    def add_row(self, id: int, line: str) -> None:
        self._add(id // BLOCK_IDS, line)

    def add_bulk(self, line: str) -> None:
        self._add(None, line)

    def add_upload(self, line: str) -> None:
        if self._uploads is not None:
            self._uploads.update(line.encode() + b"\n")

    def _add(self, key: int | None, line: str) -> None:
        if self._v1:
            self._h.update(hashlib.sha256(line.encode()).digest())
            return
        if self._block is None or key != self._block_key:
            self._close_block()
            self._block, self._block_key = hashlib.sha256(), key
        self._block.update(line.encode() + b"\n")

    def _close_block(self) -> None:
        if self._block is not None:
            self._h.update(self._block.digest())
            self._block = None

    def hexdigest(self) -> str:
        self._close_block()
        if self._uploads is None:
            return self._h.hexdigest()
        return hashlib.sha256(self._h.digest() + self._uploads.digest()).hexdigest()


def changeset_hash(prev_hash: str, header: Header, rows_hash: str, tag: str = ENCODING_TAG) -> str:
    """The hash a changeset must carry under encoding ``tag``, given its predecessor's."""
    message = f"{prev_hash}\n{header.encode(tag)}\n{rows_hash}"
    return hashlib.sha256(message.encode()).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    seq: int
    hash: str
    changeset_id: int | None


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of walking the chain: ``ok`` or the first problem found."""

    ok: bool
    changesets: int
    head: ChainHead
    problem: str | None = None
    failed_seq: int | None = None
    failed_changeset_id: int | None = None

    def summary(self) -> str:
        if self.ok:
            return f"chain intact: {self.changesets} changesets, head {self.head.hash}"
        where = f"changeset seq {self.failed_seq}" if self.failed_seq is not None else "chain"
        if self.failed_changeset_id is not None:
            where += f" (id {self.failed_changeset_id})"
        return f"chain broken at {where}: {self.problem}"


def readable_time(column: str) -> str:
    """SQL selecting the ``timestamptz`` column as itself if Python has a ``datetime`` for it
    (years 1 to 9999, in any session time zone), else NULL, and as ``<column>_text``.

    The portal records only the server's clock; a superuser can store any time (``infinity``,
    year 12000, 44 BC), which psycopg2 fails to read with a ValueError that would end a walk
    with a traceback instead of a report. Also used by ``audit.event_chain``.
    """
    name = column.rpartition(".")[2]  # without the table's alias
    return (
        f"CASE WHEN {column} BETWEEN '0001-01-03Z' AND '9999-12-29Z' THEN {column} END AS {name},"
        f" {column}::text AS {name}_text"
    )


_CHANGESETS = text(
    f"""
    SELECT id, seq, kind, dataset_id, actor_username, actor_display_name, reason,
           client_info::text AS client_info, detail::text AS detail,
           correlation_id::text AS correlation_id,
           {readable_time("opened_at")}, {readable_time("committed_at")},
           txid, inserted, updated, deleted, prev_hash, hash
      FROM audit.changeset WHERE seq IS NOT NULL AND seq <= :upto ORDER BY seq
    """
)
_ROWS = text(
    """
    SELECT r.changeset_id, r.id, r.dataset_id, r.row_id, r.op,
           r.before::text AS before, r.after::text AS after
      FROM audit.row_change r JOIN audit.changeset c ON c.id = r.changeset_id
     WHERE c.seq IS NOT NULL
     ORDER BY c.seq, r.id
    """
)


_BULKS = text(
    """
    SELECT b.changeset_id, b.id, b.dataset_id, b.first_row_id, b.last_row_id, b.row_count,
           b.columns::text AS columns, k.upload_id, k.compression, k.content_sha256
      FROM audit.bulk_load b JOIN audit.changeset c ON c.id = b.changeset_id
      LEFT JOIN audit.bulk_content k ON k.bulk_load_id = b.id
     WHERE c.seq IS NOT NULL
     ORDER BY c.seq, b.id
    """
)


_UPLOADS = text(
    f"""
    SELECT u.changeset_id, u.id, u.dataset_id, u.actor_username, u.filename, u.size_bytes,
           u.sha256, u.mime_type, u.encoding, u.compression, u.report::text AS report,
           {readable_time("u.received_at")}
      FROM audit.upload u JOIN audit.changeset c ON c.id = u.changeset_id
     WHERE c.seq IS NOT NULL
     ORDER BY c.seq, u.id
    """
)


# The first kept upload, bulk load or bulk load's content whose parent is missing.
_OUTSIDE_THE_CHAIN = text(
    """
    SELECT 'upload ' || u.id AS what, 'changeset' AS parent, u.changeset_id AS parent_id
      FROM audit.upload u
     WHERE NOT EXISTS (SELECT 1 FROM audit.changeset c WHERE c.id = u.changeset_id)
    UNION ALL
    SELECT 'bulk load ' || b.id, 'changeset', b.changeset_id FROM audit.bulk_load b
     WHERE NOT EXISTS (SELECT 1 FROM audit.changeset c WHERE c.id = b.changeset_id)
    UNION ALL
    SELECT 'a bulk load''s content', 'bulk load', k.bulk_load_id FROM audit.bulk_content k
     WHERE NOT EXISTS (SELECT 1 FROM audit.bulk_load b WHERE b.id = k.bulk_load_id)
     LIMIT 1
    """
)


def _by_changeset(session: Session, query: Any) -> dict[int, list[Any]]:
    by_changeset: dict[int, list[Any]] = {}
    for row in session.execute(query):
        by_changeset.setdefault(row.changeset_id, []).append(row)
    return by_changeset


def _rows_by_changeset(session: Session) -> Iterator[tuple[int, int, str]]:
    result = session.execute(_ROWS, execution_options={"yield_per": 5000, "stream_results": True})
    for r in result:
        yield (
            r.changeset_id,
            r.id,
            row_line(
                id=r.id,
                dataset_id=r.dataset_id,
                row_id=r.row_id,
                op=r.op,
                before=r.before,
                after=r.after,
            ),
        )


def read_head(*, session: Session) -> ChainHead:
    """The newest sealed changeset's seq and hash, as the chain head row records it.

    Raises:
        AuditError: the head row is missing (only a superuser with triggers off can delete it).
    """
    row = session.execute(
        text("SELECT seq, hash, changeset_id FROM audit.chain_head")
    ).one_or_none()
    if row is None:
        raise AuditError("the chain head row (audit.chain_head) is missing: it was deleted")
    return ChainHead(seq=row.seq, hash=row.hash, changeset_id=row.changeset_id)


def is_changeset_hash(*, session: Session, digest: str) -> bool:
    """True if some changeset carries ``digest`` as its hash (a head kept from ``portal audit
    head`` given where an events head was asked for, say)."""
    found = session.execute(
        text("SELECT EXISTS (SELECT 1 FROM audit.changeset WHERE hash = :h)"), {"h": digest}
    ).scalar_one()
    return bool(found)


def verify(*, session: Session, expect_head: str | None = None) -> VerifyResult:
    """Recompute the whole chain and report the first changeset that no longer matches.

    The chain is checked up to the head as it is when the check starts: changesets sealed
    meanwhile (the check reads in several statements) are left for the next check, not taken
    for a tail that does not match its head.
    """
    try:
        head = read_head(session=session)
    except AuditError as exc:
        return VerifyResult(False, 0, ChainHead(0, GENESIS_HASH, None), str(exc))
    bulks = _by_changeset(session, _BULKS)
    uploads = _by_changeset(session, _UPLOADS)
    rows = _rows_by_changeset(session)
    pending = next(rows, None)
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    wanted = expect_head.strip().lower() if expect_head is not None else None
    seen_wanted = wanted == GENESIS_HASH
    last = ChainHead(seq=0, hash=GENESIS_HASH, changeset_id=None)

    def broken(problem: str, seq: int | None, cid: int | None) -> VerifyResult:
        return VerifyResult(False, count, last, problem, seq, cid)

    changesets = session.execute(
        _CHANGESETS, {"upto": head.seq}, execution_options={"yield_per": 1000}
    )
    for c in changesets:
        if c.seq != expected_seq:
            return broken(  # the missing one's id is not known; the one found is intact
                f"expected seq {expected_seq} next, found {c.seq} (changeset id {c.id}): "
                f"changesets {expected_seq}..{c.seq - 1} are missing or renumbered",
                expected_seq,
                None,
            )
        if c.committed_at_text is None:  # the seal sets both; a NULL has no encoding to check
            return broken("it has a seq but no commit time: its seal was altered", c.seq, c.id)
        if c.opened_at is None or c.committed_at is None:
            return broken(
                f"it was opened at {c.opened_at_text} and committed at {c.committed_at_text}, "
                "times the portal never records: they were altered after sealing",
                c.seq,
                c.id,
            )
        hashers = {tag: RowsHasher(tag) for tag in ENCODINGS}
        while pending is not None and pending[0] == c.id:
            for hasher in hashers.values():
                hasher.add_row(pending[1], pending[2])
            pending = next(rows, None)
        for b in bulks.get(c.id, []):
            line = bulk_line(
                id=b.id,
                dataset_id=b.dataset_id,
                upload_id=b.upload_id,
                first_row_id=b.first_row_id,
                last_row_id=b.last_row_id,
                row_count=b.row_count,
                columns=b.columns,
                compression=b.compression,
                content_sha256=b.content_sha256,
            )
            for hasher in hashers.values():
                hasher.add_bulk(line)
            try:
                read_content(session=session, bulk_load_id=b.id)
            except AuditError as exc:
                return broken(
                    f"{exc}: the bulk-loaded rows were altered after sealing", c.seq, c.id
                )
        for u in uploads.get(c.id, []):
            if u.received_at is None:
                return broken(
                    f"upload {u.id} was received at {u.received_at_text}, a time the portal "
                    "never records: it was altered after sealing",
                    c.seq,
                    c.id,
                )
            line = upload_line(
                id=u.id,
                dataset_id=u.dataset_id,
                actor_username=u.actor_username,
                filename=u.filename,
                size_bytes=u.size_bytes,
                sha256=u.sha256,
                mime_type=u.mime_type,
                encoding=u.encoding,
                compression=u.compression,
                report=u.report,
                received_at=u.received_at,
            )
            for hasher in hashers.values():
                hasher.add_upload(line)
            try:
                read_upload(session=session, upload_id=u.id)
            except AuditError as exc:
                return broken(f"{exc}: the uploaded file was altered after sealing", c.seq, c.id)
        header = Header(
            seq=c.seq,
            id=c.id,
            kind=c.kind,
            dataset_id=c.dataset_id,
            actor_username=c.actor_username,
            actor_display_name=c.actor_display_name,
            reason=c.reason,
            client_info=c.client_info,
            detail=c.detail,
            correlation_id=c.correlation_id,
            opened_at=c.opened_at,
            committed_at=c.committed_at,
            txid=c.txid,
            inserted=c.inserted,
            updated=c.updated,
            deleted=c.deleted,
        )
        if c.prev_hash != prev_hash:
            return broken(
                f"its prev_hash {c.prev_hash} is not the hash of seq {c.seq - 1} ({prev_hash}): "
                "a changeset before it was removed, reordered or altered",
                c.seq,
                c.id,
            )
        recomputed = {
            tag: changeset_hash(prev_hash, header, hasher.hexdigest(), tag)
            for tag, hasher in hashers.items()
        }
        if c.hash not in recomputed.values():
            return broken(
                f"its contents no longer match its hash (stored {c.hash}, recomputed "
                + ", ".join(f"{digest} under {tag}" for tag, digest in recomputed.items())
                + "): its header or row changes were altered after sealing",
                c.seq,
                c.id,
            )
        prev_hash, expected_seq, count = c.hash, expected_seq + 1, count + 1
        seen_wanted = seen_wanted or c.hash == wanted
        last = ChainHead(seq=c.seq, hash=c.hash, changeset_id=c.id)

    unsealed = session.execute(
        text(
            "SELECT id FROM audit.changeset WHERE seq IS NULL AND txid <> txid_current() "
            "ORDER BY id LIMIT 1"
        )
    ).scalar()
    if unsealed is not None:
        return broken(f"changeset id {unsealed} was committed without a seal", None, unsealed)
    orphan = session.execute(
        text(
            "SELECT r.changeset_id FROM audit.row_change r"
            " WHERE NOT EXISTS (SELECT 1 FROM audit.changeset c WHERE c.id = r.changeset_id)"
            " LIMIT 1"
        )
    ).scalar()
    if orphan is not None:
        return broken(
            f"row changes name changeset id {orphan}, which does not exist: it was deleted, or "
            "the row changes were added by hand",
            None,
            orphan,
        )
    # Foreign keys bind these, but not a superuser with session_replication_role = replica.
    outside = session.execute(_OUTSIDE_THE_CHAIN).first()
    if outside is not None:
        named = (
            f"names {outside.parent} id {outside.parent_id}, which does not exist"
            if outside.parent_id is not None
            else f"is of no {outside.parent}"
        )
        return broken(
            f"{outside.what} {named}: no sealed changeset covers it; it was added by hand, or "
            f"its {outside.parent} was deleted",
            None,
            outside.parent_id if outside.parent == "changeset" else None,
        )
    if (head.seq, head.hash) == (last.seq, last.hash) and head.changeset_id != last.changeset_id:
        return broken(
            f"the chain head names changeset id {head.changeset_id} for seq {head.seq}, which is "
            f"changeset id {last.changeset_id}: the head row was altered",
            head.seq,
            last.changeset_id,
        )
    if (head.seq, head.hash) != (last.seq, last.hash):
        return broken(
            f"the chain head records seq {head.seq} ({head.hash}) but the newest changeset is "
            f"seq {last.seq} ({last.hash}): changesets were removed from the end",
            head.seq,
            head.changeset_id,
        )
    # Changesets past the head read first are new ones, if the head has moved on past them
    # since (read in this order, a commit in between moves both).
    newest = session.execute(text("SELECT max(seq) FROM audit.changeset")).scalar() or 0
    head_now = read_head(session=session)
    if newest > head_now.seq:
        return broken(
            f"changesets up to seq {newest} exist past the chain head (seq {head_now.seq}): "
            "the head was moved back",
            head_now.seq + 1,
            None,
        )
    if wanted is not None and not seen_wanted:
        return broken(
            f"the head recorded earlier ({wanted}) is not in the chain, whose newest hash is "
            f"{last.hash} at seq {last.seq}: changesets were removed from the end, or the log "
            "was rewritten, since that head was recorded",
            last.seq + 1,
            None,
        )
    return VerifyResult(True, count, last)
