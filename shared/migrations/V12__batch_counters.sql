-- Issue 14: the monitor page, check-status and the batch lists count a batch's contacts by
-- state, last outcome and hold reason from aggregates, not with a scan of the batch's contacts
-- per request. The counts stay exact: every statement that inserts, updates or deletes
-- contacts (ingest's COPY, the scheduler's claims, the dial worker, cancels, a test's own SQL)
-- appends its net change here through statement-level triggers with transition tables, in
-- its own transaction, so a rollback drops the change and its count together.
--
-- Why deltas and not counters updated in place: the dial workers of one batch change its
-- contacts from many transactions at once; an in-place counter row per (batch, state) would
-- serialise them on its row lock until each commits (and could deadlock two transactions that
-- touch two counters in opposite orders). Appending takes no lock that another writer waits
-- for. The api-gateway folds the deltas into `batch_counters` every second (one statement,
-- one folder at a time: `shared::db::counters::fold`); a reader adds the folded counts and the
-- deltas not folded yet, which are at most about a second of changes.

-- The folded counts. `last_outcome` and `hold_reason` are '' for none (a primary key column
-- cannot be NULL).
CREATE TABLE batch_counters (
    batch_id     uuid NOT NULL,
    state        text NOT NULL,
    last_outcome text NOT NULL,
    hold_reason  text NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (batch_id, state, last_outcome, hold_reason)
);

-- Net changes not folded yet, one row per statement and key whose count changed.
CREATE TABLE batch_counter_deltas (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id     uuid NOT NULL,
    state        text NOT NULL,
    last_outcome text NOT NULL,
    hold_reason  text NOT NULL,
    n            bigint NOT NULL
);
CREATE INDEX batch_counter_deltas_by_batch ON batch_counter_deltas (batch_id);

CREATE FUNCTION batch_counters_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batch_counter_deltas (batch_id, state, last_outcome, hold_reason, n)
    SELECT batch_id, state, coalesce(last_outcome, ''), coalesce(hold_reason, ''), count(*)
    FROM new_rows GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$;

CREATE FUNCTION batch_counters_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batch_counter_deltas (batch_id, state, last_outcome, hold_reason, n)
    SELECT batch_id, state, coalesce(last_outcome, ''), coalesce(hold_reason, ''), -count(*)
    FROM old_rows GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END $$;

-- An update that changes none of the three (a retry's due time, a release timestamp) nets to
-- zero and appends nothing.
CREATE FUNCTION batch_counters_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO batch_counter_deltas (batch_id, state, last_outcome, hold_reason, n)
    SELECT batch_id, state, o, h, sum(n)
    FROM (SELECT batch_id, state, coalesce(last_outcome, '') AS o, coalesce(hold_reason, '') AS h,
                 1::bigint AS n FROM new_rows
          UNION ALL
          SELECT batch_id, state, coalesce(last_outcome, ''), coalesce(hold_reason, ''), -1
          FROM old_rows) d
    GROUP BY 1, 2, 3, 4
    HAVING sum(n) <> 0;
    RETURN NULL;
END $$;

-- Installed under a lock that holds writers back until the backfill below commits, so no
-- change falls between the two.
LOCK TABLE contacts IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER contacts_counted_insert AFTER INSERT ON contacts
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_counters_insert();
CREATE TRIGGER contacts_counted_update AFTER UPDATE ON contacts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_counters_update();
CREATE TRIGGER contacts_counted_delete AFTER DELETE ON contacts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION batch_counters_delete();

INSERT INTO batch_counters (batch_id, state, last_outcome, hold_reason, n)
SELECT batch_id, state, coalesce(last_outcome, ''), coalesce(hold_reason, ''), count(*)
FROM contacts GROUP BY 1, 2, 3, 4;
