-- Issue 12: calling compliance (invariant 11): recipient-local calling hours, do-not-call
-- lists and opt-out, frequency caps, machine detection, and the audit trail of every decision.

-- The workspace's policy. Recipient hours are minutes after local midnight, [start, end), read
-- in the recipient's own timezone(s), every day; both NULL = off. The default is the safe one:
-- 08:00-21:00 (TCPA), on for every workspace, existing ones included.
ALTER TABLE workspaces
    ADD COLUMN recipient_hours_start smallint DEFAULT 480,
    ADD COLUMN recipient_hours_end   smallint DEFAULT 1260,
    -- A contact whose zone cannot be determined is held (`unknown_timezone`) unless this is set.
    ADD COLUMN allow_unknown_timezone boolean NOT NULL DEFAULT false,
    -- Frequency cap: at most `count` call attempts to one number in any `days` days, across
    -- all the workspace's batches. Both NULL = off (the default).
    ADD COLUMN max_calls_per_number_count integer,
    ADD COLUMN max_calls_per_number_days  integer,
    ADD CONSTRAINT workspaces_recipient_hours_check CHECK (
        (recipient_hours_start IS NULL) = (recipient_hours_end IS NULL)
        AND (recipient_hours_start IS NULL
             OR (recipient_hours_start >= 0 AND recipient_hours_end <= 1440
                 AND recipient_hours_start < recipient_hours_end))),
    ADD CONSTRAINT workspaces_frequency_cap_check CHECK (
        (max_calls_per_number_count IS NULL) = (max_calls_per_number_days IS NULL)
        AND (max_calls_per_number_count IS NULL
             OR (max_calls_per_number_count >= 1 AND max_calls_per_number_days >= 1)));

-- The contact's own `timezone` field as given (validated IANA name), and the zones the rules
-- use: the given one, or those derived from the number at ingest (libphonenumber's map). An
-- empty array is "unknown"; NULL is "not resolved yet" (rows ingested before this migration):
-- the scheduler resolves those from the number when it first looks at them.
ALTER TABLE contacts
    ADD COLUMN timezone   text,
    ADD COLUMN timezones  text[],
    -- Why the contact is waiting (`next_attempt_at` in the future) when a rule deferred it
    -- rather than a retry delay; NULL otherwise.
    ADD COLUMN hold_reason text,
    ADD CONSTRAINT contacts_hold_reason_check
        CHECK (hold_reason IN ('recipient_hours', 'unknown_timezone', 'frequency_cap')),
    DROP CONSTRAINT contacts_last_outcome_check,
    ADD CONSTRAINT contacts_last_outcome_check
        CHECK (last_outcome IN ('completed', 'busy', 'no-answer', 'failed', 'voicemail', 'cancelled',
                                'unknown', 'suppressed'));

-- One vocabulary: the outcome columns accept every `CallOutcome` name. No attempt is ever
-- written as `suppressed` (a suppressed contact is never dialed), but the column's list stays
-- the enum's.
ALTER TABLE dial_attempts
    DROP CONSTRAINT dial_attempts_outcome_check,
    ADD CONSTRAINT dial_attempts_outcome_check
        CHECK (outcome IN ('completed', 'busy', 'no-answer', 'failed', 'voicemail', 'cancelled',
                           'unknown', 'suppressed'));

-- Dialgen `options.machineDetection` / Vogent `machineDetection`: Twilio's MachineDetection
-- (`Enable` | `DetectMessageEnd`), NULL = off; and the retry strategy's `voicemailDelay` (ms):
-- NULL = a voicemail is final (the default).
ALTER TABLE batches
    ADD COLUMN machine_detection text
        CHECK (machine_detection IN ('Enable', 'DetectMessageEnd')),
    ADD COLUMN retry_voicemail_delay_ms bigint CHECK (retry_voicemail_delay_ms >= 0);

-- The workspace's do-not-call list, E.164 numbers.
CREATE TABLE dnc_numbers (
    workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    number       text NOT NULL,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, number)
);

-- The frequency cap counts a number's attempts across the workspace's batches by time.
CREATE INDEX dial_attempts_by_number ON dial_attempts (workspace_id, to_number, created_at);

-- Audit trail: the decisions that no other row records (deferred, suppressed, opted out,
-- rejected-by-DNC are derived from rows too where they exist; see docs/compliance.md). Written
-- in batches by the role that decides, never one row per call on the hot path.
CREATE TABLE contact_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id   uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    at           timestamptz NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('deferred', 'suppressed', 'opted_out')),
    reason       text,
    detail       jsonb
);
CREATE INDEX contact_events_by_contact ON contact_events (contact_id, at, id);
