-- Streamed intake (docs/ingest.md, "Streaming at the gateway"): the gateway publishes a batch's
-- chunks while the body is still arriving, so the batch row exists before the body is known to be
-- valid. Two new ingest states:
--  * receiving: the body is still being read. The row is hidden from every list and lookup, its
--    settings are placeholders (written for real when the body ends), nothing can be released
--    (the job is 'created' and finish_if_complete only ends 'ingesting' batches). Ingest workers
--    store its chunks as they come.
--  * aborted: the body proved invalid (or the client went away) after chunks were published. The
--    row stays as a hidden tombstone so late chunks find it and are dropped (acked, nothing
--    stored) instead of being dead-lettered; its contacts and rejected rows are deleted.
ALTER TABLE batches
    DROP CONSTRAINT batches_ingest_state_check,
    ADD CONSTRAINT batches_ingest_state_check
        CHECK (ingest_state IN ('receiving', 'ingesting', 'ready', 'failed', 'aborted'));

-- The agent is known only once the body has been read: a hidden row may have none yet. A batch
-- anyone can see always has one.
ALTER TABLE batches
    ALTER COLUMN agent_id DROP NOT NULL,
    ADD CONSTRAINT batches_agent_when_visible
        CHECK (agent_id IS NOT NULL OR ingest_state IN ('receiving', 'aborted'));

-- The ingest workers' sweep aborts bodies that stopped arriving (a gateway that died mid-body).
CREATE INDEX batches_receiving ON batches (updated_at) WHERE ingest_state = 'receiving';
