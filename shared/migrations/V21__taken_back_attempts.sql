-- Tombstones of attempts taken back (deleted because no request was known to have reached the
-- carrier): the dial worker's withdraw and the reconciler's take-back write one in the same
-- statement as the delete. A carrier callback that still arrives for such an attempt (its
-- request had left after all) is recorded here and counted, never applied: the contact was
-- already handed back and may be dialled under a new attempt, so the late answer must not end
-- it or dial it again. See docs/reliability.md, "Races closed".
CREATE TABLE taken_back_attempts (
    attempt_id        uuid PRIMARY KEY,
    contact_id        uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    workspace_id      uuid NOT NULL,
    batch_id          uuid NOT NULL,
    attempt_no        integer NOT NULL,
    -- The carrier's call id: unknown at the take-back (an attempt with one is never taken
    -- back), filled in by the first late callback.
    carrier_call_sid  text,
    taken_back_at     timestamptz NOT NULL DEFAULT now(),
    -- Late callbacks: how many, and the last one's status and receipt time.
    late_answers      integer NOT NULL DEFAULT 0,
    last_late_status  text,
    last_late_at      timestamptz
);
CREATE INDEX taken_back_attempts_by_contact ON taken_back_attempts (contact_id);
