-- Manual dial: an agent dials a number, or one contact of a campaign, through the API. The
-- call is an outbound attempt like any other (live row before originate, one originate per
-- attempt id, a CDR when it ends) placed for that agent only; its mode is 'manual'.
--
-- The mode CHECK constraints are replaced as 0008 and 0010 replaced the outcome checks:
-- one ALTER TABLE per table (live_attempts keeps the names it copied from call_attempts).

ALTER TABLE call_attempts
    DROP CONSTRAINT call_attempts_mode_check,
    ADD CONSTRAINT call_attempts_mode_check CHECK (mode IN ('preview', 'progressive', 'predictive', 'manual'));

ALTER TABLE live_attempts
    DROP CONSTRAINT call_attempts_mode_check,
    ADD CONSTRAINT call_attempts_mode_check CHECK (mode IN ('preview', 'progressive', 'predictive', 'manual'));

COMMENT ON COLUMN call_attempts.mode IS 'Mode the call was placed in: the campaign''s (a predictive campaign over its abandon cap places progressive calls), or manual (an agent dialled the number or contact through the API; the call was that agent''s only). NULL on inbound rows.';
