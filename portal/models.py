"""ORM models of the portal's own tables (schemas ``portal`` and ``audit``).

Dataset tables in schema ``data`` are not modelled here: each is built at run time from its schema
spec. Migrations in ``migrations/versions`` create everything below; ``alembic check`` keeps the two
in step. Audit tables are append-only, by the triggers of migration 0002 (``0002_audit_core.py``)
and, for the event chain's head, 0008.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Text,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("viewer", "editor", "admin")
CHANGESET_KINDS = ("upload", "edit", "revert", "schema", "out_of_band", "dataset")
ROW_OPS = ("insert", "update", "delete")
EVENT_KINDS = (
    "sign_in",
    "sign_in_failed",
    "lock_out",
    "sign_out",
    "user_admin",
    "export",
    "audit_view",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dict[str, Any]: JSONB,
        datetime: DateTime(timezone=True),
    }


class User(Base):
    """A person who signs in. Usernames are stored lower-case (the sign-in form lower-cases)."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(
            "username = lower(username) AND length(username) BETWEEN 1 AND 64",
            name="username_lower",
        ),
        CheckConstraint(_in("role", ROLES), name="role_valid"),
        CheckConstraint("failed_attempts >= 0", name="failed_attempts_nonnegative"),
        {"schema": "portal"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    username: Mapped[str] = mapped_column(Text, unique=True)
    display_name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(server_default=true())
    failed_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    locked_until: Mapped[datetime | None]
    must_change_password: Mapped[bool] = mapped_column(server_default=false())
    last_sign_in_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Dataset(Base):
    """A dataset: its name, its physical table ``data.<table_name>`` and its schema spec."""

    __tablename__ = "datasets"
    __table_args__ = (
        CheckConstraint("table_name ~ '^[a-z_][a-z0-9_]{0,62}$'", name="table_name_safe"),
        CheckConstraint("spec_version >= 1", name="spec_version_positive"),
        {"schema": "portal"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    table_name: Mapped[str] = mapped_column(Text, unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    owner: Mapped[str] = mapped_column(
        Text, ForeignKey("portal.users.username", onupdate="CASCADE")
    )
    spec: Mapped[dict[str, Any]]
    spec_version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    row_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reason_required: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Changeset(Base):
    """One committed unit of work, sealed into the hash chain when its transaction commits.

    ``seq``, ``prev_hash``, ``hash`` and ``committed_at`` are filled by the seal trigger; nothing
    else may set them. No foreign key to datasets: the audit log outlives what it describes.
    """

    __tablename__ = "changeset"
    __table_args__ = (
        CheckConstraint(_in("kind", CHANGESET_KINDS), name="kind_valid"),
        # Newest first with a tie-breaker, one per filter of the Audit page (migration 0004).
        Index("ix_changeset_committed_seq", text("committed_at DESC"), text("seq DESC")),
        Index(
            "ix_changeset_dataset_committed_seq",
            "dataset_id",
            text("committed_at DESC"),
            text("seq DESC"),
        ),
        Index(
            "ix_changeset_actor_committed_seq",
            "actor_username",
            text("committed_at DESC"),
            text("seq DESC"),
        ),
        Index(
            "ix_changeset_dataset_actor_committed_seq",
            "dataset_id",
            "actor_username",
            text("committed_at DESC"),
            text("seq DESC"),
        ),
        Index(
            "ix_changeset_kind_committed_seq", "kind", text("committed_at DESC"), text("seq DESC")
        ),
        {"schema": "audit"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    dataset_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    actor_username: Mapped[str] = mapped_column(Text)
    actor_display_name: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text, server_default="")
    client_info: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # What the changeset did beyond row changes: a dataset created (its spec), a spec changed
    # (before and after), the changeset a revert undoes.
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    correlation_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    txid: Mapped[int] = mapped_column(BigInteger, server_default=text("txid_current()"))
    inserted: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    deleted: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    opened_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    committed_at: Mapped[datetime | None]
    prev_hash: Mapped[str | None] = mapped_column(Text)
    hash: Mapped[str | None] = mapped_column(Text)


class RowChange(Base):
    """One row's change in a changeset.

    Inserts carry the whole new row in ``after``, deletes the whole old row in ``before``;
    updates carry only the changed cells, their old values in ``before`` and new in ``after``.
    """

    __tablename__ = "row_change"
    __table_args__ = (
        CheckConstraint(_in("op", ROW_OPS), name="op_valid"),
        CheckConstraint(
            "(op = 'insert' AND before IS NULL AND after IS NOT NULL)"
            " OR (op = 'update' AND before IS NOT NULL AND after IS NOT NULL)"
            " OR (op = 'delete' AND before IS NOT NULL AND after IS NULL)",
            name="images_match_op",
        ),
        Index("ix_row_change_dataset_row", "dataset_id", "row_id", "id"),
        {"schema": "audit"},
    )

    # Keyed (changeset_id, id): one index serves both uniqueness and "the rows of changeset N in
    # order". No foreign key to changeset: only the capture trigger writes here, with a changeset
    # it has checked, and a per-row key check would cost a fifth of a commit; ``verify`` reports
    # any row change whose changeset is missing.
    changeset_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(BigInteger)
    row_id: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[str] = mapped_column(Text)
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class BulkLoad(Base):
    """Rows bulk-loaded into a dataset table by one COPY, recorded once instead of row by row.

    A 1,000,000-row upload would cost a million JSONB images in ``row_change``. In bulk mode the
    capture trigger instead writes this one row, from what COPY really inserted: the ``_row_id``
    range, the count and the table's column types. The exact COPY stream follows in
    ``BulkContent``; the seal refuses a changeset whose bulk load has no content, so rows never
    land unrecorded, and replaying the stream through COPY rebuilds exactly the rows inserted.
    """

    __tablename__ = "bulk_load"
    __table_args__ = (
        CheckConstraint(
            "row_count >= 1 AND last_row_id - first_row_id + 1 = row_count", name="range_matches"
        ),
        Index("ix_bulk_load_changeset", "changeset_id", "id"),
        Index("ix_bulk_load_dataset", "dataset_id", "id"),
        {"schema": "audit"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    changeset_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audit.changeset.id"))
    dataset_id: Mapped[int] = mapped_column(BigInteger)
    first_row_id: Mapped[int] = mapped_column(BigInteger)
    last_row_id: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]] = mapped_column(JSONB)


class BulkContent(Base):
    """The exact COPY stream of a bulk load: ``_row_id`` first, then ``BulkLoad.columns`` in
    order, CSV without a header, compressed, with the SHA-256 of the uncompressed bytes."""

    __tablename__ = "bulk_content"
    __table_args__ = ({"schema": "audit"},)

    bulk_load_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("audit.bulk_load.id"), primary_key=True, autoincrement=False
    )
    upload_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("audit.upload.id"))
    compression: Mapped[str] = mapped_column(Text, server_default="zlib")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    content_sha256: Mapped[str] = mapped_column(Text)


class ChainHead(Base):
    """The single row holding the newest sealed changeset; its row lock serialises sealing."""

    __tablename__ = "chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"), {"schema": "audit"})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(Text)
    changeset_id: Mapped[int | None] = mapped_column(BigInteger)


class Event(Base):
    """Something a person did that is not a data change: sign-ins, user admin, exports, views.

    ``seq``, ``prev_hash`` and ``hash`` are set by the chaining trigger on insert (migration
    0008), whatever the insert says: the events' own hash chain, verified by
    ``audit.event_chain``.
    """

    __tablename__ = "event"
    __table_args__ = (
        CheckConstraint(_in("kind", EVENT_KINDS), name="kind_valid"),
        Index("ix_event_occurred", text("occurred_at DESC")),
        Index("ix_event_actor_occurred", "actor_username", text("occurred_at DESC")),
        Index("ix_event_kind_occurred", "kind", text("occurred_at DESC")),
        Index("ix_event_target_occurred", "target", text("occurred_at DESC")),
        {"schema": "audit"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    kind: Mapped[str] = mapped_column(Text)
    actor_username: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    client_info: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(Text)


class EventChainHead(Base):
    """The single row holding the newest event's seq and hash; its row lock serialises events."""

    __tablename__ = "event_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"), {"schema": "audit"})

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(Text)
    event_id: Mapped[int | None] = mapped_column(BigInteger)


class Upload(Base):
    """An uploaded file as received (compressed), with its verdicts and validation report."""

    __tablename__ = "upload"
    __table_args__ = (
        Index("ix_upload_dataset", "dataset_id", "id"),
        Index("ix_upload_changeset", "changeset_id", "id"),
        {"schema": "audit"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    changeset_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("audit.changeset.id"))
    dataset_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_username: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    mime_type: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str | None] = mapped_column(Text)
    compression: Mapped[str] = mapped_column(Text, server_default="zlib")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    report: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    received_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
