-- The installation's own secret for the monitor links' tokens (issue #29). Before, an install
-- without MONITOR_TOKEN_SECRET signed them with a development default anyone could read in the
-- source. Each database now gets a random one here, at migration; the gateway uses it unless
-- the operator sets MONITOR_TOKEN_SECRET, and never signs with the known default.
-- gen_random_uuid() is core PostgreSQL (13+) and draws from the strong random source; three of
-- them (366 random bits) hashed with sha256() (core, 11+) make 256 bits without pgcrypto.
CREATE TABLE monitor_secret (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO monitor_secret (secret)
VALUES (encode(sha256(convert_to(
    gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8')), 'hex'));

-- A create request answered 413 leaves no batch row behind (issue #29), not even a hidden
-- aborted one. Chunks it published before the limit was passed may still be queued: the ingest
-- workers find their batch here and drop them quietly instead of dead-lettering them as chunks
-- of an unknown batch. Rows older than a week are removed by the gateway as it adds new ones.
CREATE TABLE discarded_uploads (
    batch_id     uuid PRIMARY KEY,
    workspace_id uuid NOT NULL,
    discarded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX discarded_uploads_age ON discarded_uploads (discarded_at);
