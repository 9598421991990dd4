-- Issue 17, sections 4 and 6: one vocabulary for states and outcomes, enforced by the database,
-- and an Idempotency-Key bound to the request it first came with.

-- SHA-256 of the create request (its surface and its body as sent) that first used the batch's
-- Idempotency-Key. A later request with the same key and another body is refused with 422
-- `idempotency_key_reused` instead of silently answering with the first batch (as Stripe does).
-- NULL for batches created before this column existed: their replays are not compared.
ALTER TABLE batches ADD COLUMN idempotency_fingerprint bytea;
