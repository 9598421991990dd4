-- Scheduler support (issue 6).

-- When the scheduler found every contact of a cancelled job final. Until then it moves the job's
-- still-queued contacts to 'cancelled' each tick (a retry scheduled by a call that was in flight
-- when the job was cancelled can make one queued again); afterwards it never looks at the job.
ALTER TABLE batches ADD COLUMN settled_at timestamptz;
CREATE INDEX batches_cancelled_unsettled ON batches (id) WHERE state = 'cancelled' AND settled_at IS NULL;

-- Released-but-unfinished contacts of a workspace, for the workspace-wide flood bound.
CREATE INDEX contacts_in_flight_by_workspace ON contacts (workspace_id, batch_id) WHERE state IN ('released', 'dialing');
