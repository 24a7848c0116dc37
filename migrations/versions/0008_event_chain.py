"""Event chain: audit events (sign-ins, lock-outs, user administration, exports, audit views)
join a hash chain of their own, so that removing, rewriting or reordering one is detected.

Changesets and their row changes were chained (migrations 0002, 0003); ``audit.event`` rows were
only append-only by privilege and trigger. A superuser with ``session_replication_role =
replica`` (which switches those triggers off) could delete an ``export`` event or rewrite who
signed in, and ``portal audit verify`` still said intact.

Every event now gets ``seq`` (gap-free, from 1), ``prev_hash`` and ``hash`` from a BEFORE INSERT
trigger, whatever the client sent: it locks the single row of ``audit.event_chain_head``, takes
the next seq, hashes the event's canonical line after the previous hash, and moves the head.
The encoding (``portal-event/1``) is documented in ``audit/event_chain.py``, which re-implements
it in Python for ``portal audit verify``; any change to either side needs a new encoding version
and a migration. The head's row lock is held until the inserting transaction ends, so events
are recorded last in their (short) transactions.

The head row is guarded as ``audit.chain_head`` is: it moves one step at a time, only from the
chaining trigger, and cannot be inserted, deleted or truncated. ``portal_app`` may read it and,
as before, may only INSERT events.

Events that exist at upgrade time are chained in ``id`` order; the append-only UPDATE guard of
``audit.event`` is switched off for just that, inside this migration's transaction, which also
holds the table against concurrent inserts. The downgrade removes the columns, the head, the
functions and the trigger; events stay.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE = r"""
ALTER TABLE audit.event
  ADD COLUMN seq bigint, ADD COLUMN prev_hash text, ADD COLUMN hash text,
  ADD CONSTRAINT uq_event_seq UNIQUE (seq);

CREATE TABLE audit.event_chain_head (
  id integer NOT NULL,
  seq bigint NOT NULL,
  hash text NOT NULL,
  event_id bigint,
  CONSTRAINT pk_event_chain_head PRIMARY KEY (id),
  CONSTRAINT ck_event_chain_head_single_row CHECK (id = 1)
);
GRANT SELECT ON audit.event_chain_head TO portal_app;

-- Canonical encoding portal-event/1 (see audit/event_chain.py for the full description and the
-- Python twin):
--   line = jsonb_build_array('portal-event/1', seq, id, occurred_at (UTC, microseconds, ISO 8601
--            with Z), kind, actor_username, target, detail, client_info)::text
--   hash = hex(sha256(prev_hash || E'\n' || line))
CREATE FUNCTION audit.event_hash(e audit.event) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT encode(sha256(convert_to(e.prev_hash || E'\n' || jsonb_build_array(
    'portal-event/1', e.seq, e.id,
    to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    e.kind, e.actor_username, e.target, e.detail, e.client_info)::text, 'UTF8')), 'hex')
$$;

-- Chaining runs before each insert (id and occurred_at already hold their defaults): whatever
-- the client sent for seq, prev_hash and hash is overwritten. The head's row lock serialises
-- inserters until each one's transaction ends; a rolled-back event takes its head move with it,
-- so seq stays gap-free.
CREATE FUNCTION audit.chain_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  head audit.event_chain_head;
BEGIN
  SELECT * INTO head FROM audit.event_chain_head WHERE id = 1 FOR UPDATE;
  NEW.seq := head.seq + 1;
  NEW.prev_hash := head.hash;
  NEW.hash := audit.event_hash(NEW);
  PERFORM set_config('audit.event_chaining', 'on', true);
  UPDATE audit.event_chain_head SET seq = NEW.seq, hash = NEW.hash, event_id = NEW.id
   WHERE id = 1;
  PERFORM set_config('audit.event_chaining', 'off', true);
  RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION audit.chain_event() FROM PUBLIC;

CREATE FUNCTION audit.guard_event_chain_head_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('audit.event_chaining', true) = 'on' AND NEW.seq = OLD.seq + 1 THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit.event_chain_head only moves forward by recording an event'
    USING ERRCODE = 'insufficient_privilege';
END $$;

-- Chain the events recorded so far, in id order; then the head records the last of them.
LOCK TABLE audit.event IN SHARE ROW EXCLUSIVE MODE;
ALTER TABLE audit.event DISABLE TRIGGER append_only;
DO $$
DECLARE
  e audit.event;
  n bigint := 0;
  last_hash text := repeat('0', 64);
  last_id bigint;
BEGIN
  FOR e IN SELECT * FROM audit.event ORDER BY id LOOP
    n := n + 1;
    e.seq := n;
    e.prev_hash := last_hash;
    last_hash := audit.event_hash(e);
    last_id := e.id;
    UPDATE audit.event SET seq = n, prev_hash = e.prev_hash, hash = last_hash WHERE id = e.id;
  END LOOP;
  INSERT INTO audit.event_chain_head (id, seq, hash, event_id) VALUES (1, n, last_hash, last_id);
END $$;
ALTER TABLE audit.event ENABLE TRIGGER append_only;
ALTER TABLE audit.event
  ALTER COLUMN seq SET NOT NULL, ALTER COLUMN prev_hash SET NOT NULL,
  ALTER COLUMN hash SET NOT NULL;

CREATE TRIGGER chain BEFORE INSERT ON audit.event
  FOR EACH ROW EXECUTE FUNCTION audit.chain_event();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.event_chain_head
  FOR EACH ROW EXECUTE FUNCTION audit.guard_event_chain_head_update();
CREATE TRIGGER append_only_insert BEFORE INSERT ON audit.event_chain_head
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only_delete BEFORE DELETE ON audit.event_chain_head
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit.event_chain_head
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
"""

DOWNGRADE = r"""
DROP TRIGGER chain ON audit.event;
DROP FUNCTION audit.chain_event();
DROP TABLE audit.event_chain_head;
DROP FUNCTION audit.guard_event_chain_head_update();
DROP FUNCTION audit.event_hash(audit.event);
ALTER TABLE audit.event DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
