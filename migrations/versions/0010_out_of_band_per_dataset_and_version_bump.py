"""Out-of-band changesets per dataset, and every UPDATE of a data table bumps ``_version``.

One out-of-band changeset per transaction, filed under the first dataset it wrote, held the
rows of every dataset the transaction touched: the other datasets' History did not list it,
could not show the table as of it, and reverting it from the first dataset applied the other
tables' row changes to it. ``audit.current_changeset`` now opens one out-of-band changeset per
dataset and transaction (remembered in ``audit.out_of_band_changeset_<dataset id>``, trusted
only for this transaction's unsealed ``out_of_band`` changeset of that dataset).

``_version`` is what optimistic concurrency compares (an edit's commit, a revert), but only the
portal bumped it: a write from psql between reading a row and committing over it went unseen,
and was overwritten. A ``BEFORE UPDATE`` row trigger now bumps it whenever an UPDATE leaves it
as it was (``WHEN`` in the trigger: the portal's own updates, which bump it, never call it).

The upgrade rewrites those parts of ``audit.current_changeset`` (from its current definition,
as migration 0007 did) and adds the trigger to every captured table (needs the migrating role
to be a superuser or a member of ``portal_app``, as for 0003, 0006 and 0007); the downgrade
takes both back.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In audit.current_changeset as migration 0007 left it: (0007's text, this migration's).
PER_DATASET = (
    (
        "current_setting('audit.out_of_band_changeset_id', true)",
        "current_setting('audit.out_of_band_changeset_' || p_dataset, true)",
    ),
    (
        "AND hash IS NULL AND kind = 'out_of_band';",
        "AND hash IS NULL AND kind = 'out_of_band'\n          AND dataset_id = p_dataset;",
    ),
    (
        "'audit.out_of_band_changeset_id = % is not the out-of-band changeset of this "
        "transaction', v",
        "'audit.out_of_band_changeset_% = % is not the out-of-band changeset of this "
        "transaction', p_dataset, v",
    ),
    (
        "HINT = 'Do not set audit.out_of_band_changeset_id:",
        "HINT = 'Do not set audit.out_of_band_changeset_<dataset id>:",
    ),
    (
        "set_config('audit.out_of_band_changeset_id', cs::text, true)",
        "set_config('audit.out_of_band_changeset_' || p_dataset, cs::text, true)",
    ),
)

BUMP_VERSION = r"""
CREATE FUNCTION audit.bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW._version := OLD._version + 1;
  RETURN NEW;
END $$;
"""

# Every captured data table (it has the capture's UPDATE trigger).
CAPTURED = """
SELECT t.tgrelid::regclass::text AS tbl
  FROM pg_trigger t
 WHERE t.tgname = 'audit_capture_update'
   AND t.tgrelid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'data'::regnamespace)
 ORDER BY 1
"""


def _rewrite_current_changeset(forward: bool) -> None:
    bind = op.get_bind()
    definition = bind.execute(
        sa.text("SELECT pg_get_functiondef('audit.current_changeset(bigint)'::regprocedure)")
    ).scalar_one()
    for old, new in PER_DATASET:
        before, after = (old, new) if forward else (new, old)
        if definition.count(before) != 1:
            raise RuntimeError(
                "audit.current_changeset is not the definition this migration expects; it was "
                "changed by hand: restore it from migrations 0002 and 0007"
            )
        definition = definition.replace(before, after)
    # Through the driver's cursor: the definition is full of % signs, and no parameters.
    bind.connection.dbapi_connection.cursor().execute(definition)  # type: ignore[union-attr]


def upgrade() -> None:
    _rewrite_current_changeset(forward=True)
    op.execute(BUMP_VERSION)
    for table in op.get_bind().execute(sa.text(CAPTURED)).scalars().all():
        # The name comes from the catalog, already quoted by regclass's output.
        op.execute(
            f"CREATE TRIGGER audit_bump_version BEFORE UPDATE ON {table} FOR EACH ROW"
            " WHEN (NEW._version IS NOT DISTINCT FROM OLD._version)"
            " EXECUTE FUNCTION audit.bump_version()"
        )


def downgrade() -> None:
    op.execute("DROP FUNCTION audit.bump_version() CASCADE")  # and its triggers
    _rewrite_current_changeset(forward=False)
