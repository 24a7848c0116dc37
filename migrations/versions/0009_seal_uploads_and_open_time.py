"""Encoding portal-audit/3: the seal also covers a changeset's uploaded files, and its opening
time and transaction id.

Under portal-audit/2 the kept original of an upload (``audit.upload``: its bytes, name, type,
report, who and when) was outside the hash chain: rewriting it, even its bytes, went unnoticed
(the changeset's detail holds the file's name, size and SHA-256, but nothing compared them).
``opened_at`` and ``txid`` of a changeset were not sealed either. From this revision on, a
changeset is sealed under portal-audit/3 (documented in ``audit/chain.py``): its header adds
``opened_at`` and ``txid``, and its rows hash adds one line per upload of the changeset, which
carries the file's SHA-256; ``portal audit verify`` also recomputes that SHA-256 from the kept
bytes. Changesets sealed before keep verifying under their own encoding (nothing is resealed:
the log is not rewritten), so their uploads stay as unprotected as they were.

The functions of portal-audit/2 are kept under new names (``…_v2``) and the new ones build on
them: the rows hash of v3 is the v2 rows hash followed by the uploads' block. The seal itself
is unchanged; it calls ``audit.changeset_digest`` and ``audit.changeset_header`` by name.
An index on ``audit.upload (changeset_id, id)`` lets the seal find a changeset's uploads.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_MICROS = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""

UPGRADE = rf"""
CREATE INDEX ix_upload_changeset ON audit.upload (changeset_id, id);

ALTER FUNCTION audit.changeset_digest(bigint) RENAME TO changeset_digest_v2;
ALTER FUNCTION audit.changeset_header(audit.changeset) RENAME TO changeset_header_v2;

-- v3: the v2 rows hash, then the block of the changeset's uploads (one line each, by id):
-- rows_hash = sha256(v2 rows_hash || sha256(upload lines, each followed by a newline)).
CREATE FUNCTION audit.changeset_digest(p_changeset bigint, OUT inserted bigint,
                                       OUT updated bigint, OUT deleted bigint,
                                       OUT rows_hash text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_uploads bytea;
BEGIN
  SELECT d.inserted, d.updated, d.deleted, d.rows_hash INTO inserted, updated, deleted, rows_hash
    FROM audit.changeset_digest_v2(p_changeset) d;
  SELECT sha256(convert_to(coalesce(string_agg(
           jsonb_build_array('upload', u.id, u.dataset_id, u.actor_username, u.filename,
                             u.size_bytes, u.sha256, u.mime_type, u.encoding, u.compression,
                             u.report,
                             to_char(u.received_at AT TIME ZONE 'UTC', {UTC_MICROS}))::text
           || E'\n', '' ORDER BY u.id), ''), 'UTF8'))
    INTO v_uploads
    FROM audit.upload u WHERE u.changeset_id = p_changeset;
  rows_hash := encode(sha256(decode(rows_hash, 'hex') || v_uploads), 'hex');
END $$;

CREATE FUNCTION audit.changeset_header(c audit.changeset) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT jsonb_build_array(
    'portal-audit/3', c.seq, c.id, c.kind, c.dataset_id, c.actor_username, c.actor_display_name,
    c.reason, c.client_info, c.detail, c.correlation_id::text,
    to_char(c.opened_at AT TIME ZONE 'UTC', {UTC_MICROS}),
    to_char(c.committed_at AT TIME ZONE 'UTC', {UTC_MICROS}),
    c.txid, c.inserted, c.updated, c.deleted)::text
$$;
"""

DOWNGRADE = """
DROP FUNCTION audit.changeset_header(audit.changeset);
DROP FUNCTION audit.changeset_digest(bigint);
ALTER FUNCTION audit.changeset_header_v2(audit.changeset) RENAME TO changeset_header;
ALTER FUNCTION audit.changeset_digest_v2(bigint) RENAME TO changeset_digest;
DROP INDEX audit.ix_upload_changeset;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
