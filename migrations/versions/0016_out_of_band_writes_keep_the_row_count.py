"""An out-of-band write keeps its dataset's row count: the seal adds its inserts less its deletes.

The portal keeps ``portal.datasets.row_count`` as it writes (an upload sets it, a commit adds
its inserts less its deletes). A write made outside the portal (psql, another tool) is captured
and sealed under an ``out_of_band`` changeset, but left the count as it was, for good: the
Datasets page went on saying 1,000 rows of a table that had 990, and what is estimated from the
count (a filter's matching total, when an index is worth building) was off as much.

``audit.seal`` now adds an out-of-band changeset's inserted less deleted rows to its dataset's
count, when it seals it at COMMIT. It does so before it locks the chain's head: a portal commit
takes its dataset's row (changing the count) before its own seal takes the head, and two
transactions taking the two in opposite orders could deadlock. Counts that drifted before this
revision stay as they are (the portal reads the table itself where an exact count matters). The
upgrade rewrites that part of the seal (from its current definition, as migrations 0012 and
0014 did for their functions); the downgrade takes it out.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In audit.seal (migration 0003): from the digest to the lock of the chain's head,
# without and with the count.
DIGEST_THEN_HEAD = """  SELECT * INTO d FROM audit.changeset_digest(NEW.id);

  SELECT * INTO head FROM audit.chain_head WHERE id = 1 FOR UPDATE;
"""
WITH_THE_COUNT = """  SELECT * INTO d FROM audit.changeset_digest(NEW.id);
  -- A write outside the portal keeps the dataset's row count as the portal's own writes do;
  -- before the head is locked, as a portal commit takes its dataset's row before its seal.
  IF NEW.kind = 'out_of_band' AND d.inserted <> d.deleted THEN
    UPDATE portal.datasets SET row_count = row_count + d.inserted - d.deleted
     WHERE id = NEW.dataset_id;
  END IF;

  SELECT * INTO head FROM audit.chain_head WHERE id = 1 FOR UPDATE;
"""


def _rewrite_seal(forward: bool) -> None:
    bind = op.get_bind()
    definition = bind.execute(
        sa.text("SELECT pg_get_functiondef('audit.seal()'::regprocedure)")
    ).scalar_one()
    before, after = (
        (DIGEST_THEN_HEAD, WITH_THE_COUNT) if forward else (WITH_THE_COUNT, DIGEST_THEN_HEAD)
    )
    if definition.count(before) != 1:
        raise RuntimeError(
            "audit.seal is not the definition this migration expects; it was changed by hand: "
            "restore it from migration 0003"
        )
    # Through the driver's cursor: the definition is full of % signs, and no parameters.
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(definition.replace(before, after))


def upgrade() -> None:
    _rewrite_seal(forward=True)


def downgrade() -> None:
    _rewrite_seal(forward=False)
