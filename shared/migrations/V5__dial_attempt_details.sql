-- What the carrier told us about an attempt beyond its outcome: kept for the dials API and for
-- debugging voicemail detection.
ALTER TABLE dial_attempts
    ADD COLUMN answered_by   text,
    ADD COLUMN duration_secs integer;

-- The reconciler's scan of attempts that may have lost their callback.
CREATE INDEX dial_attempts_stale ON dial_attempts (updated_at) WHERE outcome IS NULL;
