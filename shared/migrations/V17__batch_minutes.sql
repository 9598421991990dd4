-- Issue 14: the monitor's chart (calls per minute by outcome over a batch's life) from an
-- aggregate, not from a scan of the batch's attempts. Same design as V12's contact counters
-- (read that file's header for why deltas are appended rather than counters updated in place):
-- statement-level triggers on `dial_attempts` append each statement's net change, per batch,
-- minute the call started and outcome, to `batch_minute_deltas`; `shared::db::counters::fold`
-- moves them into `batch_minutes` with the contact counters; a reader adds the two.
--
-- A minute is the UTC minute of the attempt's `created_at` (which never changes); `outcome` is
-- '' while the call is in flight, so a call that ends moves one count from '' to its outcome
-- within its start minute.

CREATE TABLE batch_minutes (
    batch_id uuid NOT NULL,
    minute   timestamptz NOT NULL,
    outcome  text NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (batch_id, minute, outcome)
);

CREATE TABLE batch_minute_deltas (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id uuid NOT NULL,
    minute   timestamptz NOT NULL,
    outcome  text NOT NULL,
    n        bigint NOT NULL
);
CREATE INDEX batch_minute_deltas_by_batch ON batch_minute_deltas (batch_id, minute);

CREATE FUNCTION batch_minutes_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batch_minute_deltas (batch_id, minute, outcome, n)
    SELECT batch_id, date_trunc('minute', created_at, 'UTC'), coalesce(outcome, ''), count(*)
    FROM new_rows GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;

CREATE FUNCTION batch_minutes_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batch_minute_deltas (batch_id, minute, outcome, n)
    SELECT batch_id, date_trunc('minute', created_at, 'UTC'), coalesce(outcome, ''), -count(*)
    FROM old_rows GROUP BY 1, 2, 3;
    RETURN NULL;
END $$;

-- Most updates of an attempt leave its outcome alone (the call id, the carrier's progress, a
-- touch of `updated_at`): they net to zero and append nothing.
CREATE FUNCTION batch_minutes_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batch_minute_deltas (batch_id, minute, outcome, n)
    SELECT batch_id, m, o, sum(n)
    FROM (SELECT batch_id, date_trunc('minute', created_at, 'UTC') AS m, coalesce(outcome, '') AS o,
                 1::bigint AS n FROM new_rows
          UNION ALL
          SELECT batch_id, date_trunc('minute', created_at, 'UTC'), coalesce(outcome, ''), -1
          FROM old_rows) d
    GROUP BY 1, 2, 3
    HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

-- Installed under a lock that holds writers back until the backfill below commits, so no
-- change falls between the two.
LOCK TABLE dial_attempts IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER dial_attempts_minuted_insert AFTER INSERT ON dial_attempts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_minutes_insert();
CREATE TRIGGER dial_attempts_minuted_update AFTER UPDATE ON dial_attempts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_minutes_update();
CREATE TRIGGER dial_attempts_minuted_delete AFTER DELETE ON dial_attempts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_minutes_delete();

INSERT INTO batch_minutes (batch_id, minute, outcome, n)
SELECT batch_id, date_trunc('minute', created_at, 'UTC'), coalesce(outcome, ''), count(*)
FROM dial_attempts GROUP BY 1, 2, 3;

-- The monitor's and check-status's ETA waits for the latest minute a contact is held to (by
-- the recipient's hours or the frequency cap). This index holds only those contacts, so the
-- read is one step from its end instead of a walk over the batch's queued contacts.
CREATE INDEX contacts_held_to_a_minute ON contacts (batch_id, next_attempt_at)
    WHERE state = 'queued' AND hold_reason IN ('recipient_hours', 'frequency_cap');
