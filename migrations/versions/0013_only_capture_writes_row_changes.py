"""Only capture writes row changes and bulk loads: ``portal_app`` may no longer insert them.

Migration 0001 let ``portal_app`` INSERT into every audit table. Row changes and bulk loads
are written by the capture functions alone (SECURITY DEFINER, as their owner), which file them
under this transaction's own changeset (``audit.current_changeset``); but an INSERT by hand
could name any changeset. ``audit.row_change`` has no foreign key, so the app role's
credentials were enough to add a row change to another person's changeset while it was still
open in another transaction, or under the id the next changeset would get: the seal took it
in, counted it, and ``portal audit verify`` called the chain intact, with a deletion or an
update in it that never happened, under that person's name. Added to a sealed changeset, a
row change or a bulk load broke its hash.

``portal_app`` keeps SELECT on both, and INSERT on the audit tables it does write itself
(changesets, events, uploads, bulk contents). The downgrade gives the INSERT back.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("REVOKE INSERT ON audit.row_change, audit.bulk_load FROM portal_app")


def downgrade() -> None:
    op.execute("GRANT INSERT ON audit.row_change, audit.bulk_load TO portal_app")
