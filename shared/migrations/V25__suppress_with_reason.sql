-- Issue 25, the pre-dial check: a contact the customer's check refuses (`{"allow": false,
-- "reason": "…"}`) ends like a listed one (`failed`, outcome `suppressed`, nothing charged), but
-- its audit trail must say who refused it and why. `suppress_contacts` (V18) writes the reason
-- `do_not_call`; this overload takes the event's reason and detail, and V18's three-argument form
-- stays as it is (its callers do not change).
CREATE FUNCTION suppress_contacts(ids uuid[], from_state text, at_time timestamptz,
                                  why text, why_detail jsonb)
    RETURNS SETOF uuid
    LANGUAGE sql VOLATILE
AS $$
    WITH s AS (
        UPDATE contacts SET state = 'failed', last_outcome = 'suppressed',
            released_at = CASE WHEN from_state = 'queued' THEN released_at END,
            hold_reason = NULL, updated_at = at_time
        WHERE id = ANY (ids) AND state = from_state
        RETURNING id)
    INSERT INTO contact_events (contact_id, at, kind, reason, detail)
    SELECT id, at_time, 'suppressed', why, why_detail FROM s
    RETURNING contact_id
$$;
