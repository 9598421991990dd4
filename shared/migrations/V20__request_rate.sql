-- Each workspace's API request rate (issue 29): a token bucket per workspace in Redis, shared by
-- every gateway replica (shared::gcra). The operator's setting, like the dial limits: generous
-- by default, changed with `api-gateway workspace update ID --requests-per-second N
-- --request-burst M`, shown by GET /api/workspace, never raised by the tenant.
ALTER TABLE workspaces
    ADD COLUMN requests_per_second integer NOT NULL DEFAULT 50
        CHECK (requests_per_second BETWEEN 1 AND 100000),
    ADD COLUMN request_burst integer NOT NULL DEFAULT 100
        CHECK (request_burst BETWEEN 1 AND 1000000);

-- A batch's `batch.completed` is not sent while one of its `call.completed` deliveries is
-- pending (dial-worker/src/webhooks/delivery.rs): the claim looks them up by batch.
CREATE INDEX webhook_deliveries_pending_calls ON webhook_deliveries (batch_id)
    WHERE state = 'pending' AND event = 'call.completed';
