-- Issue 18: no hidden rate cap on Vogent jobs.
--
-- The Vogent API has no rate field, so a Vogent job used to get maxCallsPerSecond 10 silently.
-- The rate that matters is the carrier account's, which is the workspace's
-- `max_calls_per_second`: a job's own rate is now optional. NULL means "none of its own": the
-- job's starts are bounded by the workspace's rate only (a Vogent job that does not send the
-- `maxCallsPerSecond` extension). Dialgen batches keep their documented default of 10.
ALTER TABLE batches ALTER COLUMN max_calls_per_second DROP NOT NULL;

-- A new workspace's rate defaults to what a new carrier account accepts: Twilio grants every
-- account (and subaccount) 1 outbound call per second by default, and queues or fails what
-- goes faster. Raise it (`api-gateway workspace update ID --max-calls-per-second N`) once the
-- carrier account allows more. Existing workspaces keep their setting; one with none (NULL)
-- bounds a job without a rate of its own by its `cps_ceiling` (see docs/dial-worker.md).
ALTER TABLE workspaces ALTER COLUMN max_calls_per_second SET DEFAULT 1;
