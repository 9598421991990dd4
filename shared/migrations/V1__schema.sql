-- dialfleet schema v1: the system of record.
-- Statuses are stored as their internal names (see shared/src/domain/status.rs); each API
-- surface maps them to its own vocabulary.

CREATE TABLE workspaces (
    id                      uuid PRIMARY KEY,
    name                    text NOT NULL,
    -- The workspace's ceiling on calls in flight across all its jobs (Vogent: "may not exceed
    -- your workspace's concurrent dial limit").
    max_concurrent_dials    integer NOT NULL CHECK (max_concurrent_dials >= 1),
    -- Optional ceiling on call starts per second across all its jobs.
    max_calls_per_second    integer CHECK (max_calls_per_second >= 1),
    -- Ceilings a batch may ask for; Dialgen's documented ranges by default.
    cps_ceiling             integer NOT NULL DEFAULT 30 CHECK (cps_ceiling >= 1),
    max_attempts_ceiling    integer NOT NULL DEFAULT 5 CHECK (max_attempts_ceiling >= 1),
    -- Retry defaults for jobs that name none (every Vogent job).
    default_max_attempts    integer NOT NULL DEFAULT 3 CHECK (default_max_attempts >= 1),
    default_busy_delay_ms   bigint  NOT NULL DEFAULT 300000 CHECK (default_busy_delay_ms >= 0),
    default_no_answer_delay_ms bigint NOT NULL DEFAULT 3600000 CHECK (default_no_answer_delay_ms >= 0),
    -- Region used to read numbers written without a country code.
    default_region          text NOT NULL DEFAULT 'US',
    -- Standard Webhooks signing secret ("whsec_" + base64).
    webhook_secret          text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    -- The first characters of the key, shown to people so they can tell keys apart and revoke one.
    prefix        text NOT NULL UNIQUE,
    -- SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash      bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE agents (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    name          text NOT NULL,
    answer_url    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE INDEX agents_by_workspace ON agents (workspace_id, created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE phone_numbers (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    number        text NOT NULL,
    label         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE UNIQUE INDEX phone_numbers_unique ON phone_numbers (workspace_id, number) WHERE deleted_at IS NULL;
CREATE INDEX phone_numbers_by_workspace ON phone_numbers (workspace_id, created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE batches (
    id                    uuid PRIMARY KEY,
    workspace_id          uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    -- Which API created it: 'vogent' or 'dialgen'. Both surfaces show every batch.
    surface               text NOT NULL CHECK (surface IN ('vogent', 'dialgen')),
    name                  text NOT NULL,
    agent_id              uuid NOT NULL REFERENCES agents(id),
    user_id               text,
    -- Life of the job: created | active | paused | completed | cancelled | failed.
    state                 text NOT NULL,
    -- Life of its rows, independent of the job's (a Vogent job may start while rows arrive):
    -- ingesting | ready | failed.
    ingest_state          text NOT NULL,
    max_concurrent_dials  integer NOT NULL CHECK (max_concurrent_dials >= 1),
    max_calls_per_second  integer NOT NULL CHECK (max_calls_per_second >= 1),
    priority              smallint NOT NULL DEFAULT 5,
    -- Vogent weekly schedule as given (days, timeSlots, timezone, disableSchedule), or NULL.
    schedule              jsonb,
    timezone              text NOT NULL DEFAULT 'UTC',
    scheduled_start_time  timestamptz,
    from_phone_number_ids uuid[] NOT NULL DEFAULT '{}',
    retry_max_attempts    integer NOT NULL,
    retry_busy_delay_ms   bigint NOT NULL,
    retry_no_answer_delay_ms bigint NOT NULL,
    webhooks              jsonb NOT NULL DEFAULT '{}',
    tags                  text[] NOT NULL DEFAULT '{}',
    default_region        text NOT NULL DEFAULT 'US',
    -- Settings changed by PUT while ACTIVE; applied at the next pause (Vogent seed 001).
    pending_settings      jsonb,
    idempotency_key       text,
    expected_chunks       integer NOT NULL DEFAULT 0,
    total_rows            integer NOT NULL DEFAULT 0,
    accepted_rows         integer NOT NULL DEFAULT 0,
    rejected_rows         integer NOT NULL DEFAULT 0,
    error                 text,
    error_code            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    completed_at          timestamptz
);
-- Cursor pagination, newest first, scoped to a workspace.
CREATE INDEX batches_by_workspace ON batches (workspace_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX batches_idempotency ON batches (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The scheduler's scan of jobs that may have work.
CREATE INDEX batches_active ON batches (priority DESC, created_at) WHERE state = 'active';

CREATE TABLE contacts (
    id               uuid PRIMARY KEY,
    batch_id         uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    workspace_id     uuid NOT NULL,
    -- Position in the submitted list: "first one wins" for duplicates, and stable ordering.
    row_index        integer NOT NULL,
    -- Dialgen's own contact id, when the client gave one.
    external_id      text,
    phone_number     text NOT NULL,
    name             text,
    email            text,
    company          text,
    -- Vogent `inputs` (strings only) or Dialgen `metadata` (any JSON).
    inputs           jsonb NOT NULL DEFAULT '{}',
    -- queued | released | dialing | completed | failed | cancelled
    state            text NOT NULL DEFAULT 'queued',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT '-infinity',
    last_outcome     text,
    released_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (batch_id, row_index),
    UNIQUE (batch_id, phone_number)
);
-- Due contacts per batch: the scheduler's claim query walks this.
CREATE INDEX contacts_due ON contacts (batch_id, next_attempt_at, row_index) WHERE state = 'queued';
-- Released-but-unfinished count per batch (the flood bound).
CREATE INDEX contacts_in_flight ON contacts (batch_id) WHERE state IN ('released', 'dialing');
CREATE INDEX contacts_external ON contacts (workspace_id, external_id) WHERE external_id IS NOT NULL;

-- Rows that were not accepted, kept with their reason so clients can see them.
CREATE TABLE rejected_rows (
    batch_id     uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    row_index    integer NOT NULL,
    raw_number   text,
    reason       text NOT NULL,
    detail       text,
    PRIMARY KEY (batch_id, row_index)
);

CREATE TABLE ingest_chunks (
    batch_id     uuid NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    rows         integer NOT NULL,
    accepted     integer NOT NULL,
    rejected     integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, seq)
);

CREATE TABLE dial_attempts (
    id               uuid PRIMARY KEY,
    contact_id       uuid NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
    batch_id         uuid NOT NULL,
    workspace_id     uuid NOT NULL,
    attempt_no       integer NOT NULL,
    to_number        text NOT NULL,
    from_number_id   uuid,
    from_number      text,
    carrier_call_sid text UNIQUE,
    -- dialing | ringing | in-progress | ended
    state            text NOT NULL DEFAULT 'dialing',
    -- completed | busy | no-answer | failed | voicemail | canceled | unknown
    outcome          text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- One attempt number per contact: a redelivered dial message cannot create a second call.
    UNIQUE (contact_id, attempt_no)
);
CREATE INDEX dial_attempts_by_batch ON dial_attempts (batch_id, created_at, id);
CREATE INDEX dial_attempts_open ON dial_attempts (created_at) WHERE outcome IS NULL;

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    batch_id         uuid REFERENCES batches(id) ON DELETE CASCADE,
    -- call.completed | batch.completed | batch.failed
    event            text NOT NULL,
    -- What the event is about (contact id or batch id): with `event`, makes a delivery idempotent.
    subject_id       uuid NOT NULL,
    url              text NOT NULL,
    payload          jsonb NOT NULL,
    -- pending | delivered | failed
    state            text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (event, subject_id, url)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_batch ON webhook_deliveries (batch_id, created_at);
