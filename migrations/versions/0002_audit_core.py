"""Audit core: append-only guards, change capture, out-of-band changesets, hash-chain sealing.

The canonical encoding that ``audit.changeset_hash`` implements is documented in ``audit/chain.py``,
which re-implements it in Python for ``portal audit verify``. Any change to either side needs a new
encoding version and a migration.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_TABLES = (
    "changeset",
    "row_change",
    "event",
    "upload",
    "chain_head",
    "bulk_load",
    "bulk_content",
)

UPGRADE = r"""
-- Append-only: nobody, the owner included, may rewrite or remove audit rows. -----------------
CREATE FUNCTION audit.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'The audit log can only grow; record a new changeset or event instead.';
END $$;

-- A changeset may be updated once, by the seal step, and only in its seal columns.
CREATE FUNCTION audit.guard_changeset_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.hash IS NULL AND current_setting('audit.sealing', true) = 'on'
     AND (NEW.id, NEW.dataset_id, NEW.kind, NEW.actor_username, NEW.actor_display_name,
          NEW.reason, NEW.client_info, NEW.detail, NEW.correlation_id, NEW.txid, NEW.opened_at)
         IS NOT DISTINCT FROM
         (OLD.id, OLD.dataset_id, OLD.kind, OLD.actor_username, OLD.actor_display_name,
          OLD.reason, OLD.client_info, OLD.detail, OLD.correlation_id, OLD.txid, OLD.opened_at) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit.changeset is append-only: UPDATE is not allowed'
    USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE FUNCTION audit.guard_chain_head_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('audit.sealing', true) = 'on' AND NEW.seq = OLD.seq + 1 THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit.chain_head only moves forward by sealing a changeset'
    USING ERRCODE = 'insufficient_privilege';
END $$;

-- Whatever a client sends, a new changeset starts open and unsealed, in this transaction.
CREATE FUNCTION audit.prepare_changeset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.seq := NULL; NEW.prev_hash := NULL; NEW.hash := NULL; NEW.committed_at := NULL;
  NEW.inserted := 0; NEW.updated := 0; NEW.deleted := 0;
  NEW.txid := txid_current(); NEW.opened_at := clock_timestamp();
  RETURN NEW;
END $$;

CREATE TRIGGER prepare BEFORE INSERT ON audit.changeset
  FOR EACH ROW EXECUTE FUNCTION audit.prepare_changeset();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.changeset
  FOR EACH ROW EXECUTE FUNCTION audit.guard_changeset_update();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.chain_head
  FOR EACH ROW EXECUTE FUNCTION audit.guard_chain_head_update();
CREATE TRIGGER append_only_insert BEFORE INSERT ON audit.chain_head
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.row_change
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.event
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.upload
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.bulk_load
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only BEFORE UPDATE ON audit.bulk_content
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
"""

PER_TABLE_GUARDS = r"""
CREATE TRIGGER append_only_delete BEFORE DELETE ON audit.{t}
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();
CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON audit.{t}
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();
"""

CAPTURE = r"""
-- Which changeset a data write belongs to. ------------------------------------------------------
-- The portal opens a changeset and sets portal.changeset_id for its transaction; anything else
-- (psql, another tool, a bug) gets one out_of_band changeset per transaction, the database user
-- as its actor.
CREATE FUNCTION audit.current_changeset(p_dataset bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v text := current_setting('portal.changeset_id', true);
  cs bigint;
BEGIN
  IF v IS NOT NULL AND v <> '' THEN
    cs := v::bigint;
    PERFORM 1 FROM audit.changeset
      WHERE id = cs AND txid = txid_current() AND hash IS NULL;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'portal.changeset_id = % is not an open changeset of this transaction', cs
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN cs;
  END IF;
  v := current_setting('audit.out_of_band_changeset_id', true);
  IF v IS NOT NULL AND v <> '' THEN
    RETURN v::bigint;
  END IF;
  INSERT INTO audit.changeset (kind, dataset_id, actor_username, actor_display_name, reason,
                               client_info)
  VALUES ('out_of_band', p_dataset, session_user, session_user,
          'write made outside the portal',
          jsonb_build_object('application_name', current_setting('application_name'),
                             'client_addr', inet_client_addr()::text))
  RETURNING id INTO cs;
  PERFORM set_config('audit.out_of_band_changeset_id', cs::text, true);
  RETURN cs;
END $$;
REVOKE ALL ON FUNCTION audit.current_changeset(bigint) FROM PUBLIC;

-- Capture: one statement-level trigger per operation on each data table, with transition tables,
-- so a bulk write costs one INSERT ... SELECT into row_change. Inserts and deletes keep the whole
-- row image; updates keep only the changed cells (before: their old values, after: their new
-- ones). Images leave out _row_id (it is row_change.row_id) and _version (bookkeeping, not
-- data). Updates that change nothing are skipped.
--
-- Bulk loads: while portal.bulk_load = 'on' (set by audit/bulk.py around one COPY, inside a
-- portal changeset), an INSERT is recorded as one audit.bulk_load row written here, from what was
-- really inserted (the _row_id range, the count, the column types), instead of one image per
-- row. The exact COPY stream follows in audit.bulk_content; the seal refuses a bulk load without
-- it. A bulk load is the last write of its changeset, so replaying row changes, then bulk loads,
-- is exact.
CREATE FUNCTION audit.capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ds bigint := TG_ARGV[0]::bigint;
  cs bigint := audit.current_changeset(TG_ARGV[0]::bigint);
  v_count bigint; v_lo bigint; v_hi bigint; v_columns jsonb; v_cells text;
  v_names name[]; v_changed boolean[];
BEGIN
  IF TG_OP = 'INSERT' AND current_setting('portal.bulk_load', true) = 'on' THEN
    IF (SELECT kind FROM audit.changeset WHERE id = cs) = 'out_of_band' THEN
      RAISE EXCEPTION 'a bulk load needs a changeset opened by the portal'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT count(*), min(_row_id), max(_row_id) INTO v_count, v_lo, v_hi FROM new_rows;
    IF v_count = 0 THEN
      RETURN NULL;
    END IF;
    IF v_hi - v_lo + 1 <> v_count THEN
      RAISE EXCEPTION 'a bulk load must insert consecutive _row_id values (got % rows in %..%)',
        v_count, v_lo, v_hi USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, a.atttypmod))
                     ORDER BY a.attnum)
      INTO v_columns
      FROM pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT IN ('_row_id', '_version');
    INSERT INTO audit.bulk_load (changeset_id, dataset_id, first_row_id, last_row_id, row_count,
                                 columns)
    VALUES (cs, ds, v_lo, v_hi, v_count, v_columns);
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT 1 FROM audit.bulk_load WHERE changeset_id = cs) THEN
    RAISE EXCEPTION 'changeset % already has a bulk load: it must be its last write', cs
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, before, after)
    SELECT cs, ds, n._row_id, 'insert', NULL, to_jsonb(n) - '_row_id' - '_version'
      FROM new_rows n ORDER BY n._row_id;
  ELSIF TG_OP = 'UPDATE' THEN
    -- Only the cells that changed, before and after: what an auditor reads, and far less work
    -- than two full row images. First which columns changed in any row of the statement (one
    -- cheap pass), then the images of just those; both queries are built from the table's own
    -- columns.
    SELECT array_agg(a.attname ORDER BY a.attnum) INTO v_names
      FROM pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname NOT IN ('_row_id', '_version');
    EXECUTE (SELECT 'SELECT ARRAY[' || string_agg(format('bool_or(o.%I IS DISTINCT FROM n.%I)',
                                                         name, name), ', ')
                    || '] FROM old_rows o JOIN new_rows n USING (_row_id)'
               FROM unnest(v_names) AS name)
      INTO v_changed;
    SELECT array_agg(u.name ORDER BY u.i) INTO v_names
      FROM unnest(v_names, v_changed) WITH ORDINALITY AS u(name, changed, i)
     WHERE u.changed;
    IF v_names IS NULL THEN  -- no row, or nothing but _version changed
      RETURN NULL;
    END IF;
    IF cardinality(v_names) <= 50 THEN
      -- Each image built in one expression: the changed columns' values, minus the keys of
      -- those that did not change in this row (jsonb - text[] skips the NULLs).
      SELECT format(
               'jsonb_build_object(%s) - %s, jsonb_build_object(%s) - %s, (%s) IS DISTINCT FROM (%s)',
               string_agg(format('%L, o.%I', name, name), ', '), unchanged,
               string_agg(format('%L, n.%I', name, name), ', '), unchanged,
               string_agg(format('o.%I', name), ', '), string_agg(format('n.%I', name), ', '))
        INTO v_cells
        FROM unnest(v_names) AS name,
             LATERAL (SELECT 'ARRAY[' || string_agg(format(
                        'CASE WHEN o.%I IS NOT DISTINCT FROM n.%I THEN %L END', x, x, x), ', ')
                        || ']::text[]' AS unchanged
                        FROM unnest(v_names) AS x) AS u
       GROUP BY unchanged;
      EXECUTE format(
        'INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, before, after)'
        ' SELECT $1, $2, _row_id, ''update'', b, a FROM ('
        '   SELECT o._row_id, %s FROM old_rows o JOIN new_rows n USING (_row_id)'
        ' ) AS d(_row_id, b, a, changed) WHERE changed ORDER BY _row_id', v_cells)
        USING cs, ds;
      RETURN NULL;
    END IF;
    -- Over 50 changed columns (jsonb_build_object takes at most 100 arguments): cell by cell.
    SELECT string_agg(format(
             'SELECT %L AS k, to_jsonb(o.%I) AS b, to_jsonb(n.%I) AS a'
             ' WHERE o.%I IS DISTINCT FROM n.%I',
             name, name, name, name, name), ' UNION ALL ')
      INTO v_cells
      FROM unnest(v_names) AS name;
    EXECUTE format(
      'INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, before, after)'
      ' SELECT $1, $2, o._row_id, ''update'', d.b, d.a'
      '   FROM old_rows o JOIN new_rows n USING (_row_id)'
      '   CROSS JOIN LATERAL (SELECT jsonb_object_agg(x.k, x.b) AS b,'
      '                              jsonb_object_agg(x.k, x.a) AS a FROM (%s) x) d'
      '  WHERE d.b IS NOT NULL ORDER BY o._row_id', v_cells)
      USING cs, ds;
  ELSE
    INSERT INTO audit.row_change (changeset_id, dataset_id, row_id, op, before, after)
    SELECT cs, ds, o._row_id, 'delete', to_jsonb(o) - '_row_id' - '_version', NULL
      FROM old_rows o ORDER BY o._row_id;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION audit.refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'TRUNCATE of audited table %.% is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'Use DELETE (captured in the audit log), or replace the dataset in the portal.';
END $$;
"""

SEAL = r"""
-- Tamper evidence. -----------------------------------------------------------------------------
-- Canonical encoding v1 (see audit/chain.py for the full description and the Python twin):
--   row_line  = jsonb_build_array(id, dataset_id, row_id, op, before, after)::text
--   bulk_line = jsonb_build_array('bulk', b.id, b.dataset_id, b.first_row_id, b.last_row_id,
--                 b.row_count, b.columns, c.upload_id, c.compression, c.content_sha256)::text
--               for audit.bulk_load b and its audit.bulk_content c
--   rows_hash = sha256(concatenation of sha256(row_line) over the changeset's row changes by id,
--                      then of sha256(bulk_line) over its bulk loads by id)
--   header    = jsonb_build_array('portal-audit/1', seq, id, kind, dataset_id, actor_username,
--                 actor_display_name, reason, client_info, detail, correlation_id, committed_at (UTC,
--                 microseconds, ISO 8601 with Z), inserted, updated, deleted)::text
--   hash      = hex(sha256(prev_hash || E'\n' || header || E'\n' || hex(rows_hash)))
CREATE FUNCTION audit.rows_hash(p_changeset bigint) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT encode(sha256(
    coalesce((SELECT string_agg(
                -- the text jsonb_build_array(id, dataset_id, row_id, op, before, after) prints,
                -- written out directly: building that array would copy both images first
                sha256(convert_to('[' || r.id || ', ' || r.dataset_id || ', ' || r.row_id || ', '
                                  || to_json(r.op)::text || ', '
                                  || coalesce(r.before::text, 'null') || ', '
                                  || coalesce(r.after::text, 'null') || ']', 'UTF8')),
                ''::bytea ORDER BY r.id)
                FROM audit.row_change r WHERE r.changeset_id = p_changeset), ''::bytea)
    || coalesce((SELECT string_agg(
                sha256(convert_to(jsonb_build_array('bulk', b.id, b.dataset_id, b.first_row_id,
                                                    b.last_row_id, b.row_count, b.columns,
                                                    c.upload_id, c.compression,
                                                    c.content_sha256)::text, 'UTF8')),
                ''::bytea ORDER BY b.id)
                FROM audit.bulk_load b LEFT JOIN audit.bulk_content c ON c.bulk_load_id = b.id
               WHERE b.changeset_id = p_changeset), ''::bytea)
  ), 'hex')
$$;

CREATE FUNCTION audit.changeset_header(c audit.changeset) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_array(
    'portal-audit/1', c.seq, c.id, c.kind, c.dataset_id, c.actor_username, c.actor_display_name,
    c.reason, c.client_info, c.detail, c.correlation_id::text,
    to_char(c.committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    c.inserted, c.updated, c.deleted)::text
$$;

CREATE FUNCTION audit.changeset_hash(c audit.changeset, p_rows_hash text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT encode(sha256(convert_to(
    c.prev_hash || E'\n' || audit.changeset_header(c) || E'\n' || p_rows_hash, 'UTF8')), 'hex')
$$;

-- Sealing runs as a deferred constraint trigger, i.e. at COMMIT, after every write of the
-- transaction. The counting and row hashing happen before the chain head is locked; only the
-- short step that takes the next seq and links the hash holds the head's row lock.
CREATE FUNCTION audit.seal() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c audit.changeset;
  head audit.chain_head;
  n_ins bigint; n_upd bigint; n_del bigint;
  unconfirmed bigint;
  rows_hash text;
BEGIN
  SELECT count(*) FILTER (WHERE op = 'insert'), count(*) FILTER (WHERE op = 'update'),
         count(*) FILTER (WHERE op = 'delete')
    INTO n_ins, n_upd, n_del
    FROM audit.row_change WHERE changeset_id = NEW.id;
  SELECT n_ins + coalesce(sum(row_count), 0) INTO n_ins
    FROM audit.bulk_load WHERE changeset_id = NEW.id;
  SELECT min(b.id) INTO unconfirmed FROM audit.bulk_load b
   WHERE b.changeset_id = NEW.id
     AND NOT EXISTS (SELECT 1 FROM audit.bulk_content k WHERE k.bulk_load_id = b.id);
  IF unconfirmed IS NOT NULL THEN
    RAISE EXCEPTION 'bulk load % of changeset % has no recorded content: its rows cannot be audited',
      unconfirmed, NEW.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  rows_hash := audit.rows_hash(NEW.id);

  SELECT * INTO head FROM audit.chain_head WHERE id = 1 FOR UPDATE;
  PERFORM set_config('audit.sealing', 'on', true);
  UPDATE audit.changeset
     SET seq = head.seq + 1, prev_hash = head.hash, committed_at = clock_timestamp(),
         inserted = n_ins, updated = n_upd, deleted = n_del
   WHERE id = NEW.id
  RETURNING * INTO c;
  c.hash := audit.changeset_hash(c, rows_hash);
  UPDATE audit.changeset SET hash = c.hash WHERE id = NEW.id;
  UPDATE audit.chain_head SET seq = c.seq, hash = c.hash, changeset_id = c.id WHERE id = 1;
  PERFORM set_config('audit.sealing', 'off', true);
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION audit.seal() FROM PUBLIC;

CREATE CONSTRAINT TRIGGER seal AFTER INSERT ON audit.changeset
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit.seal();
"""

DOWNGRADE = r"""
DROP TRIGGER seal ON audit.changeset;
DROP FUNCTION audit.seal();
DROP FUNCTION audit.changeset_hash(audit.changeset, text);
DROP FUNCTION audit.changeset_header(audit.changeset);
DROP FUNCTION audit.rows_hash(bigint);
DROP FUNCTION audit.capture() CASCADE;
DROP FUNCTION audit.refuse_truncate() CASCADE;
DROP FUNCTION audit.current_changeset(bigint);
DROP TRIGGER prepare ON audit.changeset;
DROP FUNCTION audit.prepare_changeset();
DROP FUNCTION audit.guard_changeset_update() CASCADE;
DROP FUNCTION audit.guard_chain_head_update() CASCADE;
DROP FUNCTION audit.refuse_change() CASCADE;
"""


def upgrade() -> None:
    op.execute(UPGRADE)
    for table in AUDIT_TABLES:
        op.execute(PER_TABLE_GUARDS.format(t=table))
    op.execute(CAPTURE)
    op.execute(SEAL)


def downgrade() -> None:
    op.execute(DOWNGRADE)
