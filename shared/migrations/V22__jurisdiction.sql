-- Issue 25: compliance by jurisdiction. The columns every part of that issue shares, made in one
-- migration so the parts (enforcement, inputs, preflight, pre-dial check, registry freshness)
-- agree on one schema.

-- The workspace's policy:
-- * `jurisdiction_rules`: 'strictest' (the default: every candidate state's rules of the pack)
--   or 'federal' (only the federal rules; the user answers for state law);
-- * `predial_url`: the customer's pre-dial check, NULL = none; `predial_timeout_ms` its wait;
-- * `dnc_registry_required`: the workspace relies on a copy of the national do-not-call
--   registry, so releases stop while its newest copy is older than 31 days.
ALTER TABLE workspaces
    ADD COLUMN jurisdiction_rules text NOT NULL DEFAULT 'strictest'
        CHECK (jurisdiction_rules IN ('strictest', 'federal')),
    ADD COLUMN predial_url text,
    ADD COLUMN predial_timeout_ms integer NOT NULL DEFAULT 2000
        CHECK (predial_timeout_ms BETWEEN 1 AND 10000),
    ADD COLUMN dnc_registry_required boolean NOT NULL DEFAULT false;

-- Where the contact says it is: `declared_state` (its `state` field, USPS two letters) and `postal_code` as given;
-- `postal_state`, the state its postal code maps to (resolved at ingest), kept apart from the
-- declared state so the audit trail can say which source brought a rule in.
ALTER TABLE contacts
    ADD COLUMN declared_state text CHECK (declared_state ~ '^[A-Z]{2}$'),
    ADD COLUMN postal_code text,
    ADD COLUMN postal_state text CHECK (postal_state ~ '^[A-Z]{2}$'),
    DROP CONSTRAINT contacts_hold_reason_check,
    ADD CONSTRAINT contacts_hold_reason_check
        CHECK (hold_reason IN ('recipient_hours', 'unknown_timezone', 'frequency_cap',
                               'state_hours', 'state_no_call_day', 'state_call_cap',
                               'predial_unavailable', 'dnc_registry_stale'));

-- Every hold that waits for a known minute is in the ETA index (see V17).
DROP INDEX contacts_held_to_a_minute;
CREATE INDEX contacts_held_to_a_minute ON contacts (batch_id, next_attempt_at)
    WHERE state = 'queued' AND hold_reason IN ('recipient_hours', 'frequency_cap', 'state_hours',
                                               'state_no_call_day', 'state_call_cap');

-- Imports of the do-not-call list that are copies of a registry ({"source": "national_registry",
-- "asOf": "2026-11-30"}). The newest `as_of` per workspace decides the registry's freshness.
CREATE TABLE dnc_registry_copies (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    source       text NOT NULL CHECK (source IN ('national_registry')),
    as_of        date NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    numbers      bigint NOT NULL DEFAULT 0
);
CREATE INDEX dnc_registry_copies_newest ON dnc_registry_copies (workspace_id, as_of DESC);
