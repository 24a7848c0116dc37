"""Capture guards: a row's ``_row_id`` cannot change, and out-of-band writes cannot be filed
under another changeset.

``_row_id``. The capture of an UPDATE pairs each row's old and new image by ``_row_id``. An
``UPDATE … SET _row_id = DEFAULT`` (allowed by ``GENERATED ALWAYS``) gave a row a new id, so the
pairing found nothing and the write, with any other column it changed, went unrecorded: the
table and the state rebuilt from the audit log parted. Every captured table now refuses an
UPDATE that names ``_row_id`` (a ``BEFORE UPDATE OF _row_id`` statement trigger: it costs
nothing to the updates that leave it alone). The portal never changes a row's id; a deleted row
comes back by INSERT under its old one.

Out-of-band changesets. ``audit.current_changeset`` remembered the transaction's out-of-band
changeset in the setting ``audit.out_of_band_changeset_id`` and trusted it as found, but any
session may set it: a write from psql could then be recorded, and sealed, inside another
person's open changeset, with nothing flagged. The setting is now trusted only for an unsealed
``out_of_band`` changeset opened by this very transaction, as ``portal.changeset_id`` is checked;
any other value refuses the write (the upgrade rewrites that part of the function, from its
current definition; the downgrade puts it back).

Adding the trigger to tables created before this revision needs the migrating role to be a
superuser or a member of ``portal_app`` (the tables' owner), as for migrations 0003 and 0006.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSE_ROW_ID_CHANGE = r"""
CREATE FUNCTION audit.refuse_row_id_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the _row_id of a row of audited table %.% cannot be changed',
    TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'The audit log knows each row by its _row_id: delete the row, insert a new one.';
END $$;
"""

# In audit.current_changeset (migration 0002), the out-of-band setting's use: (as 0002 wrote it,
# as this migration writes it).
OUT_OF_BAND = (
    """  v := current_setting('audit.out_of_band_changeset_id', true);
  IF v IS NOT NULL AND v <> '' THEN
    RETURN v::bigint;
  END IF;""",
    """  -- Set below by the transaction's first uncaptured write; anyone can set it, so it is
  -- trusted only for the out-of-band changeset this transaction opened.
  v := current_setting('audit.out_of_band_changeset_id', true);
  IF v IS NOT NULL AND v <> '' THEN
    IF v ~ '^[0-9]{1,18}$' THEN
      cs := v::bigint;
      PERFORM 1 FROM audit.changeset
        WHERE id = cs AND txid = txid_current() AND hash IS NULL AND kind = 'out_of_band';
    END IF;
    IF cs IS NULL OR NOT FOUND THEN
      RAISE EXCEPTION
        'audit.out_of_band_changeset_id = % is not the out-of-band changeset of this transaction', v
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'Do not set audit.out_of_band_changeset_id: the audit capture sets it itself.';
    END IF;
    RETURN cs;
  END IF;""",
)


def _rewrite_current_changeset(forward: bool) -> None:
    bind = op.get_bind()
    definition = bind.execute(
        sa.text("SELECT pg_get_functiondef('audit.current_changeset(bigint)'::regprocedure)")
    ).scalar_one()
    before, after = OUT_OF_BAND if forward else OUT_OF_BAND[::-1]
    if definition.count(before) != 1:
        raise RuntimeError(
            "audit.current_changeset is not the definition this migration expects; it was "
            "changed by hand: restore it from migration 0002"
        )
    # Through the driver's cursor: the definition is full of % signs, and no parameters.
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(definition.replace(before, after))


# Every captured data table (it has the capture's UPDATE trigger).
CAPTURED = """
SELECT t.tgrelid::regclass::text AS tbl
  FROM pg_trigger t
 WHERE t.tgname = 'audit_capture_update'
   AND t.tgrelid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'data'::regnamespace)
 ORDER BY 1
"""


def upgrade() -> None:
    _rewrite_current_changeset(forward=True)
    op.execute(REFUSE_ROW_ID_CHANGE)
    bind = op.get_bind()
    for table in bind.execute(sa.text(CAPTURED)).scalars().all():
        # The name comes from the catalog, already quoted by regclass's output.
        op.execute(
            f"CREATE TRIGGER audit_refuse_row_id_change BEFORE UPDATE OF _row_id ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_row_id_change()"
        )


def downgrade() -> None:
    op.execute("DROP FUNCTION audit.refuse_row_id_change() CASCADE")  # and its triggers
    _rewrite_current_changeset(forward=False)
