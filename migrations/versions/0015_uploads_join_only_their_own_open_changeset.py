"""A kept upload and a bulk load's content join only an open changeset of their own transaction.

``portal_app`` writes ``audit.upload`` (the file as received) and ``audit.bulk_content`` (a
bulk load's exact COPY stream) itself, after capture has opened the changeset they belong to.
Nothing checked which changeset they named. With the app role's credentials one could:

- keep an upload under another person's changeset while it was still open in another
  transaction: the seal took it in (``portal-audit/3`` hashes a changeset's uploads) and
  ``portal audit verify`` called the chain intact, with a file that person never sent;
- add an upload to a changeset already sealed, or a content to a sealed bulk load: verify then
  reported that changeset broken, a false alarm of tampering nobody can take back (the audit
  tables are append-only);
- keep an upload under no changeset, or under a changeset of another dataset.

Migration 0013 closed the same gap for row changes and bulk loads by taking INSERT away; these
two rows come from the portal's Python code, so BEFORE INSERT triggers now refuse
(``invalid_parameter_value``) an upload unless its changeset was opened by this transaction,
is not sealed yet and is of the upload's dataset, and a bulk content unless its bulk load's
changeset is such a changeset and its upload (if any) is of that changeset. The portal already
writes them so (``portal.uploads.import_file``): nothing it does changes. Like every trigger,
these do not bind a superuser who switches triggers off; ``pg_dump`` restores data before it
creates triggers.

The downgrade drops both triggers and their functions.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWN_CHANGESET = r"""
-- Whether changeset p_id was opened by this transaction and is not sealed yet.
CREATE FUNCTION audit.is_open_changeset_of_this_transaction(p_id bigint) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM audit.changeset c
                  WHERE c.id = p_id AND c.txid = txid_current() AND c.hash IS NULL)
$$;

CREATE FUNCTION audit.upload_joins_own_changeset() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.changeset_id IS NULL
     OR NOT audit.is_open_changeset_of_this_transaction(NEW.changeset_id) THEN
    RAISE EXCEPTION 'an upload is kept only with an open changeset of its own transaction; '
      'changeset % is not one', coalesce(NEW.changeset_id::text, 'NULL')
      USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Open the changeset, load the rows, then keep the upload, in one transaction.';
  END IF;
  IF (SELECT c.dataset_id FROM audit.changeset c WHERE c.id = NEW.changeset_id)
     IS DISTINCT FROM NEW.dataset_id THEN
    RAISE EXCEPTION 'upload of dataset % cannot join changeset %, which is of another dataset',
      coalesce(NEW.dataset_id::text, 'NULL'), NEW.changeset_id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER own_changeset BEFORE INSERT ON audit.upload
  FOR EACH ROW EXECUTE FUNCTION audit.upload_joins_own_changeset();

CREATE FUNCTION audit.bulk_content_joins_own_changeset() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cs bigint := (SELECT b.changeset_id FROM audit.bulk_load b WHERE b.id = NEW.bulk_load_id);
BEGIN
  IF cs IS NULL OR NOT audit.is_open_changeset_of_this_transaction(cs) THEN
    RAISE EXCEPTION 'bulk load % is not of an open changeset of this transaction: its content '
      'is kept in the transaction that loads it', NEW.bulk_load_id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NEW.upload_id IS NOT NULL
     AND (SELECT u.changeset_id FROM audit.upload u WHERE u.id = NEW.upload_id)
         IS DISTINCT FROM cs THEN
    RAISE EXCEPTION 'upload % is not of changeset %, whose bulk load % this is',
      NEW.upload_id, cs, NEW.bulk_load_id USING ERRCODE = 'invalid_parameter_value';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER own_changeset BEFORE INSERT ON audit.bulk_content
  FOR EACH ROW EXECUTE FUNCTION audit.bulk_content_joins_own_changeset();
"""


def upgrade() -> None:
    op.execute(OWN_CHANGESET)


def downgrade() -> None:
    op.execute("DROP FUNCTION audit.upload_joins_own_changeset() CASCADE")  # and its trigger
    op.execute("DROP FUNCTION audit.bulk_content_joins_own_changeset() CASCADE")
    op.execute("DROP FUNCTION audit.is_open_changeset_of_this_transaction(bigint)")
