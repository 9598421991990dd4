-- The W3C `traceparent` of the request that created the batch, so the scheduler's releases
-- (which pick the batch up from PostgreSQL, not from a message) continue the batch's trace.
-- NULL when no trace was being recorded (OpenTelemetry export off).
ALTER TABLE batches ADD COLUMN trace_context text;
