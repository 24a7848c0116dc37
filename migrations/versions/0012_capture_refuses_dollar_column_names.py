"""Capture generation refuses a column name with a dollar sign: such a name could end the
generated function's quoting and run SQL as the generator's owner.

``audit.generate_capture`` (SECURITY DEFINER, which ``portal_app`` may execute for any table
in ``data``, and the app role may create tables there) writes each capture function with
``CREATE OR REPLACE FUNCTION … AS $body$ … $body$``, and the table's column names are written
inside that body. A column named, say, ``$body$;GRANT … TO portal_app;SELECT $body$`` closed the
body early, and the rest ran as further statements of the same EXECUTE, as the generator's
owner: the migrating role, which is the database's superuser in the compose deployment. Only
the check of function bodies stood in the way (the truncated body does not compile), and any
session may switch that off (``SET check_function_bodies = off``). The app role's credentials
were thus enough to grant itself UPDATE and DELETE on the audit log, or anything else.

The generator now refuses, before it writes anything, a table with a column whose name
contains ``$`` (``$body$`` cannot appear in the function without one). The portal names the
columns it creates with ``[a-z0-9_]`` only, so no dataset is affected. The upgrade rewrites
that part of ``audit.generate_capture`` (from its current definition, as migration 0006 did);
the downgrade takes it out again.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# In audit.generate_capture (migrations 0003 and 0006): the end of the check that the table is
# a dataset's, without and with the refusal this migration adds after it.
DATASET_CHECK = """      p_table USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') INTO v_names"""
DOLLAR_REFUSAL = """      p_table USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- The function is written between $body$ quotes with the column names inside: a name
  -- holding them would end the function there and run the rest as SQL of this function's owner.
  IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p_table AND a.attnum > 0
                AND NOT a.attisdropped AND strpos(a.attname, '$') > 0) THEN
    RAISE EXCEPTION '% has a column whose name contains a dollar sign: it cannot be captured',
      p_table USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Name dataset columns with letters, digits and underscores only.';
  END IF;
  SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') INTO v_names"""


def _rewrite_generator(forward: bool) -> None:
    bind = op.get_bind()
    definition = bind.execute(
        sa.text("SELECT pg_get_functiondef('audit.generate_capture(regclass)'::regprocedure)")
    ).scalar_one()
    before, after = (DATASET_CHECK, DOLLAR_REFUSAL) if forward else (DOLLAR_REFUSAL, DATASET_CHECK)
    if definition.count(before) != 1:
        raise RuntimeError(
            "audit.generate_capture is not the definition this migration expects; it was "
            "changed by hand: restore it from migrations 0003 and 0006"
        )
    # Through the driver's cursor: the definition is full of % signs, and no parameters.
    cursor = bind.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(definition.replace(before, after))


def upgrade() -> None:
    _rewrite_generator(forward=True)


def downgrade() -> None:
    _rewrite_generator(forward=False)
