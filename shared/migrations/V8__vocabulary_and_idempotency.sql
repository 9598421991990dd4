-- Issue 17, sections 4 and 6: one vocabulary for states and outcomes, enforced by the database,
-- and an Idempotency-Key bound to the request it first came with.

-- SHA-256 of the create request (its surface and its body as sent) that first used the batch's
-- Idempotency-Key. A later request with the same key and another body is refused with 422
-- `idempotency_key_reused` instead of silently answering with the first batch (as Stripe does).
-- NULL for batches created before this column existed: their replays are not compared.
ALTER TABLE batches ADD COLUMN idempotency_fingerprint bytea;

-- One vocabulary (shared/src/domain: JobState, IngestState, Surface, ContactState, AttemptState,
-- CallOutcome). Each state and outcome column accepts only the names the enums write, so a
-- misspelt literal in any role fails at once instead of drifting into what users see.
--
-- One spelling of "cancelled": job and contact states always had it; the outcome was Twilio's
-- `canceled`. Rows written before this migration are renamed. (The carrier's own status keeps
-- `canceled`: that is Twilio's vocabulary, not ours, and it is never stored in these columns.)
UPDATE dial_attempts SET outcome = 'cancelled' WHERE outcome = 'canceled';
UPDATE contacts SET last_outcome = 'cancelled' WHERE last_outcome = 'canceled';

-- Adding a constraint checks every existing row once, under the table's lock (one scan of
-- contacts and dial_attempts; run it while no campaign is in full swing on a large install).
-- A NULL outcome passes (`NULL IN (...)` is not false): an attempt in flight has none yet.
ALTER TABLE batches
    ADD CONSTRAINT batches_state_check
        CHECK (state IN ('created', 'active', 'paused', 'completed', 'cancelled', 'failed')),
    ADD CONSTRAINT batches_ingest_state_check
        CHECK (ingest_state IN ('ingesting', 'ready', 'failed'));

ALTER TABLE contacts
    ADD CONSTRAINT contacts_state_check
        CHECK (state IN ('queued', 'released', 'dialing', 'completed', 'failed', 'cancelled')),
    ADD CONSTRAINT contacts_last_outcome_check
        CHECK (last_outcome IN ('completed', 'busy', 'no-answer', 'failed', 'voicemail', 'cancelled', 'unknown'));

ALTER TABLE dial_attempts
    ADD CONSTRAINT dial_attempts_state_check
        CHECK (state IN ('dialing', 'ringing', 'in-progress', 'ended')),
    ADD CONSTRAINT dial_attempts_outcome_check
        CHECK (outcome IN ('completed', 'busy', 'no-answer', 'failed', 'voicemail', 'cancelled', 'unknown'));

ALTER TABLE webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_state_check
        CHECK (state IN ('pending', 'delivered', 'failed')),
    ADD CONSTRAINT webhook_deliveries_event_check
        CHECK (event IN ('call.completed', 'batch.completed', 'batch.failed'));
