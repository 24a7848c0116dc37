"""Audit trail queries: changeset indexes ending in (committed_at DESC, seq DESC).

The Audit and History pages list changesets newest first by ``(committed_at, seq)`` and page
with a keyset on that pair (``audit/search.py``). Each index below serves one of the filter
combinations the pages offer as a plain range scan that stops after one page: none, dataset,
actor, dataset and actor, kind. They replace migration 0001's ``(…, committed_at DESC)``
indexes, which lacked the tie-breaking ``seq``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEWEST = [sa.text("committed_at DESC"), sa.text("seq DESC")]
INDEXES = {
    "ix_changeset_committed_seq": [],
    "ix_changeset_dataset_committed_seq": ["dataset_id"],
    "ix_changeset_actor_committed_seq": ["actor_username"],
    "ix_changeset_dataset_actor_committed_seq": ["dataset_id", "actor_username"],
    "ix_changeset_kind_committed_seq": ["kind"],
}
REPLACED = {
    "ix_changeset_committed": [],
    "ix_changeset_dataset_committed": ["dataset_id"],
    "ix_changeset_actor_committed": ["actor_username"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "changeset", [*columns, *NEWEST], schema="audit")
    for name in REPLACED:
        op.drop_index(name, table_name="changeset", schema="audit")


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.create_index(name, "changeset", [*columns, sa.text("committed_at DESC")], schema="audit")
    for name in INDEXES:
        op.drop_index(name, table_name="changeset", schema="audit")
