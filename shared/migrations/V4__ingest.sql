-- The ingest worker's timeout sweep walks batches still ingesting, least recent progress first
-- (a chunk commit bumps updated_at); few rows match, so the partial index stays tiny.
CREATE INDEX batches_ingesting ON batches (updated_at) WHERE ingest_state = 'ingesting';
