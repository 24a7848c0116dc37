"""Foundation: schemas portal, data, audit; users, datasets and the audit tables; role grants.

Role ``portal_app`` (what the running portal connects as) gets DML on ``portal.*`` and ``data.*``,
may create tables in ``data``, and has only SELECT and INSERT on ``audit.*``.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute(
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'portal_app') THEN
            CREATE ROLE portal_app NOLOGIN;
          END IF;
        END $$
        """
    )
    for schema in ("portal", "data", "audit"):
        op.execute(f"CREATE SCHEMA {schema}")

    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, server_default=sa.true(), nullable=False),
        sa.Column("failed_attempts", sa.Integer, server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", ts),
        sa.Column("must_change_password", sa.Boolean, server_default=sa.false(), nullable=False),
        sa.Column("last_sign_in_at", ts),
        sa.Column("password_changed_at", ts),
        sa.Column("created_at", ts, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", ts, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "username = lower(username) AND length(username) BETWEEN 1 AND 64",
            name="ck_users_username_lower",
        ),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'admin')", name="ck_users_role_valid"),
        sa.CheckConstraint("failed_attempts >= 0", name="ck_users_failed_attempts_nonnegative"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
        schema="portal",
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, server_default="", nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("spec", pg.JSONB, nullable=False),
        sa.Column("spec_version", sa.Integer, server_default=sa.text("1"), nullable=False),
        sa.Column("row_count", sa.BigInteger, server_default=sa.text("0"), nullable=False),
        sa.Column("reason_required", sa.Boolean, server_default=sa.true(), nullable=False),
        sa.Column("created_at", ts, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", ts, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "table_name ~ '^[a-z_][a-z0-9_]{0,62}$'", name="ck_datasets_table_name_safe"
        ),
        sa.CheckConstraint("spec_version >= 1", name="ck_datasets_spec_version_positive"),
        sa.ForeignKeyConstraint(
            ["owner"],
            ["portal.users.username"],
            onupdate="CASCADE",
            name="fk_datasets_owner_users",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("name", name="uq_datasets_name"),
        sa.UniqueConstraint("table_name", name="uq_datasets_table_name"),
        schema="portal",
    )

    op.create_table(
        "changeset",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("seq", sa.BigInteger),
        sa.Column("dataset_id", sa.BigInteger),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("actor_username", sa.Text, nullable=False),
        sa.Column("actor_display_name", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, server_default="", nullable=False),
        sa.Column("client_info", pg.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("detail", pg.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("correlation_id", pg.UUID(as_uuid=True)),
        sa.Column("txid", sa.BigInteger, server_default=sa.text("txid_current()"), nullable=False),
        sa.Column("inserted", sa.BigInteger, server_default=sa.text("0"), nullable=False),
        sa.Column("updated", sa.BigInteger, server_default=sa.text("0"), nullable=False),
        sa.Column("deleted", sa.BigInteger, server_default=sa.text("0"), nullable=False),
        sa.Column("opened_at", ts, server_default=sa.func.clock_timestamp(), nullable=False),
        sa.Column("committed_at", ts),
        sa.Column("prev_hash", sa.Text),
        sa.Column("hash", sa.Text),
        sa.CheckConstraint(
            "kind IN ('upload', 'edit', 'revert', 'schema', 'out_of_band', 'dataset')",
            name="ck_changeset_kind_valid",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_changeset"),
        sa.UniqueConstraint("seq", name="uq_changeset_seq"),
        schema="audit",
    )
    op.create_index(
        "ix_changeset_dataset_committed",
        "changeset",
        ["dataset_id", sa.text("committed_at DESC")],
        schema="audit",
    )
    op.create_index(
        "ix_changeset_actor_committed",
        "changeset",
        ["actor_username", sa.text("committed_at DESC")],
        schema="audit",
    )
    op.create_index(
        "ix_changeset_committed", "changeset", [sa.text("committed_at DESC")], schema="audit"
    )

    op.create_table(
        "row_change",
        sa.Column("changeset_id", sa.BigInteger, nullable=False),
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("dataset_id", sa.BigInteger, nullable=False),
        sa.Column("row_id", sa.BigInteger, nullable=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("before", pg.JSONB),
        sa.Column("after", pg.JSONB),
        sa.CheckConstraint("op IN ('insert', 'update', 'delete')", name="ck_row_change_op_valid"),
        sa.CheckConstraint(
            "(op = 'insert' AND before IS NULL AND after IS NOT NULL)"
            " OR (op = 'update' AND before IS NOT NULL AND after IS NOT NULL)"
            " OR (op = 'delete' AND before IS NOT NULL AND after IS NULL)",
            name="ck_row_change_images_match_op",
        ),
        sa.PrimaryKeyConstraint("changeset_id", "id", name="pk_row_change"),
        schema="audit",
    )
    op.create_index(
        "ix_row_change_dataset_row", "row_change", ["dataset_id", "row_id", "id"], schema="audit"
    )

    op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("changeset_id", sa.BigInteger),
        sa.CheckConstraint("id = 1", name="ck_chain_head_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_chain_head"),
        schema="audit",
    )
    op.execute("INSERT INTO audit.chain_head (id, seq, hash) VALUES (1, 0, repeat('0', 64))")

    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("occurred_at", ts, server_default=sa.func.clock_timestamp(), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("actor_username", sa.Text),
        sa.Column("target", sa.Text),
        sa.Column("detail", pg.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("client_info", pg.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('sign_in', 'sign_in_failed', 'lock_out', 'sign_out', 'user_admin',"
            " 'export', 'audit_view')",
            name="ck_event_kind_valid",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_event"),
        schema="audit",
    )
    op.create_index("ix_event_occurred", "event", [sa.text("occurred_at DESC")], schema="audit")
    op.create_index(
        "ix_event_actor_occurred",
        "event",
        ["actor_username", sa.text("occurred_at DESC")],
        schema="audit",
    )
    op.create_index(
        "ix_event_kind_occurred", "event", ["kind", sa.text("occurred_at DESC")], schema="audit"
    )
    op.create_index(
        "ix_event_target_occurred",
        "event",
        ["target", sa.text("occurred_at DESC")],
        schema="audit",
    )

    op.create_table(
        "upload",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("changeset_id", sa.BigInteger),
        sa.Column("dataset_id", sa.BigInteger),
        sa.Column("actor_username", sa.Text, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("mime_type", sa.Text, nullable=False),
        sa.Column("encoding", sa.Text),
        sa.Column("compression", sa.Text, server_default="zlib", nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("report", pg.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("received_at", ts, server_default=sa.func.clock_timestamp(), nullable=False),
        sa.ForeignKeyConstraint(
            ["changeset_id"], ["audit.changeset.id"], name="fk_upload_changeset_id_changeset"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_upload"),
        schema="audit",
    )
    op.create_index("ix_upload_dataset", "upload", ["dataset_id", "id"], schema="audit")

    op.create_table(
        "bulk_load",
        sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("changeset_id", sa.BigInteger, nullable=False),
        sa.Column("dataset_id", sa.BigInteger, nullable=False),
        sa.Column("first_row_id", sa.BigInteger, nullable=False),
        sa.Column("last_row_id", sa.BigInteger, nullable=False),
        sa.Column("row_count", sa.BigInteger, nullable=False),
        sa.Column("columns", pg.JSONB, nullable=False),
        sa.CheckConstraint(
            "row_count >= 1 AND last_row_id - first_row_id + 1 = row_count",
            name="ck_bulk_load_range_matches",
        ),
        sa.ForeignKeyConstraint(
            ["changeset_id"], ["audit.changeset.id"], name="fk_bulk_load_changeset_id_changeset"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_load"),
        schema="audit",
    )
    op.create_index("ix_bulk_load_changeset", "bulk_load", ["changeset_id", "id"], schema="audit")
    op.create_index("ix_bulk_load_dataset", "bulk_load", ["dataset_id", "id"], schema="audit")
    op.create_table(
        "bulk_content",
        sa.Column("bulk_load_id", sa.BigInteger, nullable=False),
        sa.Column("upload_id", sa.BigInteger),
        sa.Column("compression", sa.Text, server_default="zlib", nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("content_sha256", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(
            ["bulk_load_id"], ["audit.bulk_load.id"], name="fk_bulk_content_bulk_load_id_bulk_load"
        ),
        sa.ForeignKeyConstraint(
            ["upload_id"], ["audit.upload.id"], name="fk_bulk_content_upload_id_upload"
        ),
        sa.PrimaryKeyConstraint("bulk_load_id", name="pk_bulk_content"),
        schema="audit",
    )
    # Compressed already: storing it EXTERNAL spares TOAST a second, futile compression pass.
    op.execute("ALTER TABLE audit.bulk_content ALTER COLUMN content SET STORAGE EXTERNAL")

    # Privileges: the app role reads and writes the portal's tables and the data tables, and may
    # only append to the audit log.
    op.execute("GRANT USAGE ON SCHEMA portal, audit TO portal_app")
    op.execute("GRANT USAGE, CREATE ON SCHEMA data TO portal_app")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA portal TO portal_app")
    op.execute("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA audit TO portal_app")
    op.execute("REVOKE INSERT ON audit.chain_head FROM portal_app")
    # So the app can tell whether its database is at the revision its code expects.
    op.execute("GRANT SELECT ON public.alembic_version TO portal_app")
    # Temporary tables let the app replay bulk loads through COPY (audit.trail): harmless, and
    # session-local.
    op.execute(
        "DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO portal_app',"
        " current_database()); END $$"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA data CASCADE")
    for table in (
        "bulk_content",
        "bulk_load",
        "upload",
        "event",
        "chain_head",
        "row_change",
        "changeset",
    ):
        op.drop_table(table, schema="audit")
    op.drop_table("datasets", schema="portal")
    op.drop_table("users", schema="portal")
    op.execute("DROP SCHEMA audit")
    op.execute("DROP SCHEMA portal")
