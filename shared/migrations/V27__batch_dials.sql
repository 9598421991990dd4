-- The Batch Dials page (issue 27) reads one page of a workspace's batches and its figures at
-- every refresh; these keep that cost independent of the workspace's history.
-- * A page filtered by status: a range of the batches in that state, newest first, instead of
--   a walk over every batch of the workspace.
CREATE INDEX batches_by_workspace_state ON batches (workspace_id, state, created_at DESC, id DESC);
-- * The workspace's call starts in the last 10 s: a range of its attempts by start, instead of
--   every attempt it ever made (dial_attempts_by_number leads with the number).
CREATE INDEX dial_attempts_by_workspace ON dial_attempts (workspace_id, created_at);
