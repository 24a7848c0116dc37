"""A portal changeset takes only the writes to its own dataset's table.

``audit.current_changeset`` filed a write under ``portal.changeset_id`` once that was an open
changeset of this transaction, whatever dataset the changeset was opened for. A write to
dataset B's table under a changeset of dataset A (or of no dataset) was captured and sealed,
but B's History and the Audit page's filter for B list the changesets of B, so it was listed
under neither, and B's rule that every change needs a reason did not meet it; the chain
verified intact. Migration 0010 closed the same gap for out-of-band changesets. The portal
itself opens each changeset for the one dataset it writes, so nothing it does changes.

The write is now refused (``invalid_parameter_value``) unless the changeset's dataset is the
table's. The upgrade rewrites that part of the function (from its current definition, as
migrations 0007 and 0010 did); the downgrade takes the check out.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In audit.current_changeset (migrations 0002, 0007, 0010): the check of portal.changeset_id,
# without and with the check of its dataset.
OPEN_CHECK = """      RAISE EXCEPTION 'portal.changeset_id = % is not an open changeset of this transaction', cs
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
"""
DATASET_CHECK = (
    OPEN_CHECK
    + """    IF (SELECT c.dataset_id FROM audit.changeset c WHERE c.id = cs) IS DISTINCT FROM p_dataset
    THEN
      RAISE EXCEPTION 'portal.changeset_id = % is not of dataset %, whose table this writes',
        cs, p_dataset USING ERRCODE = 'invalid_parameter_value',
        HINT = 'Open a changeset for each dataset, in the transaction that writes its table.';
    END IF;
"""
)


def _rewrite_current_changeset(forward: bool) -> None:
    bind = op.get_bind()
    definition = bind.execute(
        sa.text("SELECT pg_get_functiondef('audit.current_changeset(bigint)'::regprocedure)")
    ).scalar_one()
    before, after = (OPEN_CHECK, DATASET_CHECK) if forward else (DATASET_CHECK, OPEN_CHECK)
    if definition.count(before) != 1:
        raise RuntimeError(
            "audit.current_changeset is not the definition this migration expects; it was "
            "changed by hand: restore it from migrations 0002, 0007 and 0010"
        )
    # Through the driver's cursor: the definition is full of % signs, and no parameters.
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(definition.replace(before, after))


def upgrade() -> None:
    _rewrite_current_changeset(forward=True)


def downgrade() -> None:
    _rewrite_current_changeset(forward=False)
