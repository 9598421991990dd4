-- Issue 28, "each rule once": three rules that were written out in several statements (the
-- scheduler, the dial worker, the gateway) become one SQL function each. Rust names them in
-- shared/src/db/rules.rs; the state names here are the ones shared::domain writes (CHECK
-- constraints of V8), and shared/tests/rules.rs holds each function to its Rust twin.

-- What a contact handed back undialed becomes, by its job's state: `queued` while the job may
-- still dial (created, active, paused), `cancelled` once the job is final. Rust:
-- JobState::contact_state_when_handed_back. A plain expression, so the planner inlines it.
CREATE FUNCTION contact_state_for_job(job_state text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE WHEN job_state IN ('created', 'active', 'paused') THEN 'queued' ELSE 'cancelled' END
$$;

-- The workspace's frequency cap (at most `cap_count` attempts to one number in any `cap_days`
-- days, across the workspace's batches), judged at `at_time`: NULL while the number may be
-- called (or the cap is off: `cap_count` NULL); once it has had `cap_count` attempts in the
-- window (not counting `except_attempt`, an attempt just written for the call being judged),
-- when the oldest of them leaves the window and one more call is allowed.
-- "Under the cap" is `frequency_cap_frees_at(...) IS NULL`.
CREATE FUNCTION frequency_cap_frees_at(
    ws_id uuid, to_num text, at_time timestamptz, cap_count integer, cap_days integer,
    except_attempt uuid
) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT a.created_at + make_interval(days => cap_days)
    FROM dial_attempts a
    WHERE cap_count IS NOT NULL
      AND a.workspace_id = ws_id AND a.to_number = to_num
      AND a.created_at > at_time - make_interval(days => cap_days)
      AND a.id IS DISTINCT FROM except_attempt
    ORDER BY a.created_at DESC
    OFFSET cap_count - 1 LIMIT 1
$$;

-- The same with every attempt counted (the scheduler's screen, due count and claim). STRICT, so
-- with the cap off (NULL count and days) it is NULL at once, without running the lookup.
CREATE FUNCTION frequency_cap_frees_at(
    ws_id uuid, to_num text, at_time timestamptz, cap_count integer, cap_days integer
) RETURNS timestamptz
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT frequency_cap_frees_at(ws_id, to_num, at_time, cap_count, cap_days, NULL::uuid)
$$;

-- The suppression: each of the contacts `ids` still in `from_state` (`queued` in the scheduler's
-- screen and an opt-out, `released` or `dialing` at the dial worker's last look) ends `failed`
-- with the outcome `suppressed` (never dialed, nothing charged), its hold and release cleared,
-- and a `suppressed` event (reason `do_not_call`) records why. A queued contact keeps its last
-- release time, as a requeue leaves it. Returns the contacts it ended.
CREATE FUNCTION suppress_contacts(ids uuid[], from_state text, at_time timestamptz)
    RETURNS SETOF uuid
    LANGUAGE sql VOLATILE
AS $$
    WITH s AS (
        UPDATE contacts SET state = 'failed', last_outcome = 'suppressed',
            released_at = CASE WHEN from_state = 'queued' THEN released_at END,
            hold_reason = NULL, updated_at = at_time
        WHERE id = ANY (ids) AND state = from_state
        RETURNING id)
    INSERT INTO contact_events (contact_id, at, kind, reason)
    SELECT id, at_time, 'suppressed', 'do_not_call' FROM s
    RETURNING contact_id
$$;

-- The suppression of a contact whose attempt was written but never sent (the number was listed
-- while the call waited): only while the contact is still `dialing` that attempt and the
-- attempt has no call id and no outcome, the attempt goes (never charged: `attempts` is taken
-- back) and the contact is suppressed as above, in one call so a contact is never left
-- `dialing` without its attempt. Returns the contact when it did.
CREATE FUNCTION suppress_unsent_attempt(
    attempt uuid, contact uuid, attempt_number integer, at_time timestamptz
) RETURNS SETOF uuid
    LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM 1 FROM contacts
    WHERE id = contact AND state = 'dialing' AND attempts = attempt_number
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    DELETE FROM dial_attempts
    WHERE id = attempt AND contact_id = contact
      AND carrier_call_sid IS NULL AND outcome IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE contacts SET attempts = attempts - 1 WHERE id = contact;
    RETURN QUERY SELECT suppress_contacts(ARRAY[contact], 'dialing', at_time);
END
$$;
