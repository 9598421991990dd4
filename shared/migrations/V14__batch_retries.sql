-- Issue 13: re-calling a finished batch's contacts by outcome. The new batch names the batch
-- it retries (`retryOf` on both surfaces); deleting the original keeps the retry.
ALTER TABLE batches ADD COLUMN retry_of uuid REFERENCES batches(id) ON DELETE SET NULL;
-- A batch's retries, for showing the link from the original's side.
CREATE INDEX batches_retry_of ON batches (retry_of) WHERE retry_of IS NOT NULL;
