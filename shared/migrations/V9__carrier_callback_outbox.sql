-- Carrier status callbacks the gateway could not forward to the broker (issue 17, section 7).
--
-- The gateway answers a callback 2xx only once it is either confirmed by the broker or stored
-- here; its relay re-publishes the stored ones (oldest first, `FOR UPDATE SKIP LOCKED`, so
-- several gateways share the work) and deletes them in the same transaction once confirmed.
-- A callback is thus never lost to a broker outage, and the slot of its call is not pinned
-- until the reconciler notices the silence.
CREATE TABLE carrier_callback_outbox (
    id          bigserial PRIMARY KEY,
    -- The call event's message id (`{attempt_id}:{CallStatus}`): a callback the carrier sends
    -- again is stored once.
    message_id  text NOT NULL UNIQUE,
    -- The `CallEventV1`, as it would have been published.
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
