"""Dataset UNIQUE constraints become DEFERRABLE INITIALLY IMMEDIATE.

A non-deferrable UNIQUE constraint is checked row by row, so a commit in which two rows swap
their values, or one row takes a value another gives up, was refused although the end state is
valid. Deferrable constraints are checked at the end of each statement, and ``portal.writes``
defers them to the end of a commit's writes. ``portal.spec.ddl_table`` creates them so from now
on; this migration re-creates the existing ones in ``data`` (same name, same column; the index is
rebuilt). The downgrade makes them non-deferrable again.

Re-creating a constraint needs the table's owner (the app role that created it): the migrating
role must be a superuser or a member of ``portal_app``, as for migration 0003.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Single-column UNIQUE constraints on data tables, with their deferrability.
UNIQUE = """
SELECT format('data.%I', t.relname) AS tbl, format('%I', c.conname) AS con,
       format('%I', a.attname) AS col
  FROM pg_constraint c
  JOIN pg_class t ON t.oid = c.conrelid
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
 WHERE c.contype = 'u' AND t.relnamespace = 'data'::regnamespace
   AND cardinality(c.conkey) = 1 AND c.condeferrable = :deferrable
 ORDER BY 1, 2
"""


def _recreate(deferrable: bool, clause: str) -> None:
    bind = op.get_bind()
    for row in bind.execute(sa.text(UNIQUE), {"deferrable": deferrable}).all():
        op.execute(
            f"ALTER TABLE {row.tbl} DROP CONSTRAINT {row.con},"
            f" ADD CONSTRAINT {row.con} UNIQUE ({row.col}) {clause}"
        )


def upgrade() -> None:
    _recreate(False, "DEFERRABLE INITIALLY IMMEDIATE")


def downgrade() -> None:
    _recreate(True, "NOT DEFERRABLE")
