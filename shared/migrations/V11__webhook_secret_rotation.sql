-- Issue 14: the webhook secret can be rotated through the API (`POST /api/workspace/webhook_secret`).
-- For 24 hours after a rotation the dial worker signs every delivery with both the new secret and
-- the one it replaced (Standard Webhooks allows several space-separated `v1,` signatures), so a
-- receiver still configured with the old secret keeps verifying while it is updated.

-- The secret replaced by the last rotation, and until when deliveries are also signed with it.
-- Both NULL when the secret was never rotated; a second rotation within the window replaces them
-- (only the secret just replaced keeps signing).
ALTER TABLE workspaces
    ADD COLUMN previous_webhook_secret text,
    ADD COLUMN previous_webhook_secret_until timestamptz,
    ADD COLUMN webhook_secret_rotated_at timestamptz,
    ADD CONSTRAINT workspaces_previous_webhook_secret_check
        CHECK ((previous_webhook_secret IS NULL) = (previous_webhook_secret_until IS NULL));
