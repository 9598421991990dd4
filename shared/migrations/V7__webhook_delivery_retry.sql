-- Webhook deliveries are visible and can be sent again through the API (issue 7).

-- When the current retry period began: creation, or the last manual retry. The delivery loop
-- gives up `WEBHOOK_RETRY_FOR_SECS` after it, so a manual retry of a failed delivery gets a
-- whole period again rather than failing after one try.
ALTER TABLE webhook_deliveries ADD COLUMN retry_from timestamptz NOT NULL DEFAULT now();
UPDATE webhook_deliveries SET retry_from = created_at;
-- `attempts` when the current period began: the backoff restarts at its base delay after a
-- manual retry, while `attempts` keeps counting every try ever made.
ALTER TABLE webhook_deliveries ADD COLUMN attempts_before_retry integer NOT NULL DEFAULT 0;

-- The API lists a workspace's deliveries oldest first with a keyset cursor.
CREATE INDEX webhook_deliveries_by_workspace ON webhook_deliveries (workspace_id, created_at, id);
