"""Capture: an UPDATE's changed-columns pass is planned for each statement, not once per session.

The pass that finds which columns an UPDATE changed joins the statement's transition tables
(``old_rows``, ``new_rows``). Written as static SQL in the generated capture function, PL/pgSQL
planned it once per database session and kept that plan, chosen for the size of the first
UPDATE the session captured: after a one-row edit, a nested loop, so a later UPDATE of n rows
compared n x n pairs (measured: 1,000 rows took 160 ms instead of 12). It is now run with
EXECUTE, planned each time for the rows at hand, as the image query already was.

Nothing captured changes. The upgrade rewrites ``audit.generate_capture`` (from its current
definition, two small replacements) and regenerates the capture function of every captured
data table; the downgrade reverses both. Regenerating needs the migrating role to be a
superuser or a member of ``portal_app``, as for migration 0003.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (migration 0003's text, this migration's): in the generated function's body, then in the
# generator's argument that writes the pass.
REPLACEMENTS = (
    (
        """    SELECT ARRAY[%3$s]::boolean[] INTO v_changed
      FROM old_rows o JOIN new_rows n USING (_row_id);""",
        """    EXECUTE %3$L INTO v_changed;  -- planned for this statement's rows""",
    ),
    (
        """    (SELECT coalesce(string_agg(format('bool_or(o.%1$I IS DISTINCT FROM n.%1$I)', name), ', '), '')
       FROM unnest(v_names) AS name),""",
        """    (SELECT format('SELECT ARRAY[%s]::boolean[] FROM old_rows o JOIN new_rows n USING (_row_id)',
                   coalesce(string_agg(format('bool_or(o.%1$I IS DISTINCT FROM n.%1$I)', name),
                                       ', '), ''))
       FROM unnest(v_names) AS name),""",
    ),
)

# Every data table whose capture triggers call a generated function.
CAPTURED = """
SELECT DISTINCT t.tgrelid::regclass::text AS tbl
  FROM pg_trigger t
 WHERE t.tgname = 'audit_capture_update'
   AND t.tgrelid IN (SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'data'::regnamespace)
   AND t.tgfoid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace
                     AND p.proname LIKE 'capture\\_%' AND p.prorettype = 'trigger'::regtype)
 ORDER BY 1
"""


def _rewrite_generator(forward: bool) -> None:
    bind = op.get_bind()
    definition = bind.execute(
        sa.text("SELECT pg_get_functiondef('audit.generate_capture(regclass)'::regprocedure)")
    ).scalar_one()
    for old, new in REPLACEMENTS:
        before, after = (old, new) if forward else (new, old)
        if definition.count(before) != 1:
            raise RuntimeError(
                "audit.generate_capture is not the definition this migration expects; "
                "it was changed by hand: restore it from migration 0003"
            )
        definition = definition.replace(before, after)
    # Through the driver's cursor: the definition is full of % signs, and no parameters.
    bind.connection.dbapi_connection.cursor().execute(definition)  # type: ignore[union-attr]
    for table in bind.execute(sa.text(CAPTURED)).scalars().all():
        bind.execute(sa.text("SELECT audit.generate_capture(CAST(:t AS regclass))"), {"t": table})


def upgrade() -> None:
    _rewrite_generator(forward=True)


def downgrade() -> None:
    _rewrite_generator(forward=False)
