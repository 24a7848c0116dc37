"""An audit event's ``occurred_at`` and a kept upload's ``received_at`` are the database's
clock, not what the writer claims.

``audit.event.occurred_at`` defaults to ``clock_timestamp()``, but a default only fills what an
INSERT leaves out: ``portal_app`` (or anyone who may insert events) could record a sign-in, an
export or a lock-out at any time it liked, in the past or the future, and the chaining trigger of
migration 0008 hashed that claim as it came. The chain then vouched for a time nobody checked,
and what ``portal.signin`` reads by ``occurred_at`` (the lock-out of unknown names, the end of
a session at sign-out or when an account is disabled) took back- or forward-dated rows at their
word.

``audit.chain_event()``, the BEFORE INSERT trigger that chains every event, now first sets
``occurred_at`` to ``clock_timestamp()`` (what the default gave, as ``audit.changeset``'s
``opened_at`` is set by its own trigger since migration 0002), whatever the INSERT supplied,
and hashes that. The encoding (``portal-event/1``) does not change and no event is rewritten:
events recorded before keep verifying, with the times they were given. The portal never chose
an event's time, so nothing it does changes. Like every trigger, this one does not bind a
superuser who switches triggers off; what the chain still detects then is described in
``audit/event_chain.py``.

``audit.upload.received_at`` had the same gap, and it is sealed into its changeset's hash
(``portal-audit/3``): a BEFORE INSERT trigger now sets it to ``clock_timestamp()`` too. Kept
uploads are not rewritten.

The downgrade puts back the function of migration 0008 and drops the upload's trigger.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# audit.chain_event() of migration 0008, with or without the line that takes the server's time.
CHAIN_EVENT = r"""
CREATE OR REPLACE FUNCTION audit.chain_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  head audit.event_chain_head;
BEGIN
{server_time}  SELECT * INTO head FROM audit.event_chain_head WHERE id = 1 FOR UPDATE;
  NEW.seq := head.seq + 1;
  NEW.prev_hash := head.hash;
  NEW.hash := audit.event_hash(NEW);
  PERFORM set_config('audit.event_chaining', 'on', true);
  UPDATE audit.event_chain_head SET seq = NEW.seq, hash = NEW.hash, event_id = NEW.id
   WHERE id = 1;
  PERFORM set_config('audit.event_chaining', 'off', true);
  RETURN NEW;
END $$;
"""
# When the event was recorded, by the database's clock (the column's default), taken before
# waiting for the head's row lock.
SERVER_TIME = "  NEW.occurred_at := clock_timestamp();\n"


UPLOAD_TIME = r"""
CREATE FUNCTION audit.upload_received_now() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  NEW.received_at := clock_timestamp();
  RETURN NEW;
END $$;
CREATE TRIGGER received_now BEFORE INSERT ON audit.upload
  FOR EACH ROW EXECUTE FUNCTION audit.upload_received_now();
"""


def upgrade() -> None:
    op.execute(CHAIN_EVENT.format(server_time=SERVER_TIME))
    op.execute(UPLOAD_TIME)


def downgrade() -> None:
    op.execute("DROP TRIGGER received_now ON audit.upload")
    op.execute("DROP FUNCTION audit.upload_received_now()")
    op.execute(CHAIN_EVENT.format(server_time=""))
