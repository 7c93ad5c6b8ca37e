-- Inbound CDRs: a call that reaches HitCall from outside (a caller on the return-call line,
-- handed to the service's inbound router by the dialplan) gets a call_attempts row too.
--
-- direction     'outbound' (dialled by HitCall; every row before this migration) or 'inbound'.
-- Numbers: the columns keep what they meant, and the customer's number of an inbound call
-- goes into a column of its own, so that nothing that reads dialled_number as "the customer
-- HitCall dialled" (the 72-hour abandoned-number rule, number history, subject look-ups)
-- ever mistakes an inbound row for an outbound one:
--   dialled_number  outbound: the customer's number HitCall dialled. inbound: always NULL
--                   (HitCall dialled nobody).
--   caller_id       outbound: the number HitCall presented to the customer (the campaign's
--                   caller id). inbound: the company's number the caller dialled (the
--                   return-call line; usually a campaign's caller id), NULL when the dialplan
--                   extension was not a phone number. Never personal data.
--   caller_number   inbound: the caller's own number (their caller id in E.164), NULL when it
--                   was withheld or not a valid number. outbound: always NULL. Personal data:
--                   anonymised (set NULL) with dialled_number and contact_id, found by subject
--                   access and erasure.
-- Unknown on inbound rows: campaign_id (the caller matched no campaign: neither their number
-- nor the dialled line), contact_id (an unknown caller), attempt_no and mode (not a dialling
-- attempt: always NULL; attempt_no keeps its default 1 for outbound inserts, so an inbound
-- row names it NULL). Outbound rows still require campaign_id, attempt_no, mode and
-- caller_id (call_attempts_outbound_check; contact_id was already nullable, it is cleared
-- by anonymisation).
-- Outcome no_agent (inbound only): no agent took the call within the wait limit (or the
-- service was stopping, or the agent's phone went before the caller was put through); the
-- caller heard the message and the service hung up. An inbound 'abandoned' is a caller who
-- hung up before reaching an agent; it never counts in the outbound abandon rate (every
-- abandon-rate query filters direction = 'outbound').
-- The id of an inbound row is a UUID derived from the Asterisk channel id (uuid5), so a
-- replay of its CDR after a crash updates the same row.
--
-- Constraints are added in one ALTER TABLE per table (one validating scan each); adding
-- the columns with a constant default rewrites nothing.

ALTER TABLE call_attempts
    ADD COLUMN direction text NOT NULL DEFAULT 'outbound'
        CONSTRAINT call_attempts_direction_check CHECK (direction IN ('outbound', 'inbound')),
    ADD COLUMN caller_number text CONSTRAINT call_attempts_caller_number_check CHECK (hitcall_is_e164(caller_number)),
    ALTER COLUMN campaign_id DROP NOT NULL,
    ALTER COLUMN attempt_no DROP NOT NULL,
    ALTER COLUMN mode DROP NOT NULL,
    ALTER COLUMN caller_id DROP NOT NULL,
    ADD CONSTRAINT call_attempts_outbound_check CHECK (
        direction <> 'outbound'
        OR (campaign_id IS NOT NULL AND attempt_no IS NOT NULL AND mode IS NOT NULL AND caller_id IS NOT NULL
            AND caller_number IS NULL)),
    ADD CONSTRAINT call_attempts_inbound_check CHECK (
        direction <> 'inbound' OR (dialled_number IS NULL AND attempt_no IS NULL AND mode IS NULL)),
    DROP CONSTRAINT call_attempts_outcome_check,
    ADD CONSTRAINT call_attempts_outcome_check CHECK (
        outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer', 'congestion', 'failed', 'abandoned',
                    'cancelled', 'no_agent')),
    DROP CONSTRAINT call_attempts_anonymised_check,
    ADD CONSTRAINT call_attempts_anonymised_check CHECK (
        anonymised_at IS NULL OR (dialled_number IS NULL AND contact_id IS NULL AND caller_number IS NULL));

-- live_attempts was created LIKE call_attempts and keeps the same columns and checks (the
-- constraint names it copied are call_attempts_*), so that all_attempts is the union of the two.
ALTER TABLE live_attempts
    ADD COLUMN direction text NOT NULL DEFAULT 'outbound'
        CONSTRAINT call_attempts_direction_check CHECK (direction IN ('outbound', 'inbound')),
    ADD COLUMN caller_number text CONSTRAINT call_attempts_caller_number_check CHECK (hitcall_is_e164(caller_number)),
    ALTER COLUMN campaign_id DROP NOT NULL,
    ALTER COLUMN attempt_no DROP NOT NULL,
    ALTER COLUMN mode DROP NOT NULL,
    ALTER COLUMN caller_id DROP NOT NULL,
    ADD CONSTRAINT call_attempts_outbound_check CHECK (
        direction <> 'outbound'
        OR (campaign_id IS NOT NULL AND attempt_no IS NOT NULL AND mode IS NOT NULL AND caller_id IS NOT NULL
            AND caller_number IS NULL)),
    ADD CONSTRAINT call_attempts_inbound_check CHECK (
        direction <> 'inbound' OR (dialled_number IS NULL AND attempt_no IS NULL AND mode IS NULL)),
    DROP CONSTRAINT call_attempts_outcome_check,
    ADD CONSTRAINT call_attempts_outcome_check CHECK (
        outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer', 'congestion', 'failed', 'abandoned',
                    'cancelled', 'no_agent')),
    DROP CONSTRAINT call_attempts_anonymised_check,
    ADD CONSTRAINT call_attempts_anonymised_check CHECK (
        anonymised_at IS NULL OR (dialled_number IS NULL AND contact_id IS NULL AND caller_number IS NULL));

-- Subject access and erasure look inbound rows up by the caller's number. Partial: outbound
-- rows (NULL) cost the COPY nothing, anonymised rows are never looked up.
CREATE INDEX call_attempts_caller_number_idx ON call_attempts (caller_number) WHERE caller_number IS NOT NULL;

-- SELECT * in a view is expanded when the view is created: made again with the new columns.
DROP VIEW all_attempts;
CREATE VIEW all_attempts AS
    SELECT * FROM live_attempts
    UNION ALL
    SELECT * FROM call_attempts;

COMMENT ON VIEW all_attempts IS 'Every attempt, live or ended (an attempt is in exactly one of the two tables).';
COMMENT ON COLUMN call_attempts.direction IS 'outbound: dialled by HitCall (campaign_id, attempt_no, mode, caller_id set). inbound: a caller reached HitCall (the return-call line); id = uuid5 of the Asterisk channel id.';
COMMENT ON COLUMN call_attempts.caller_number IS 'Inbound: the caller''s number (E.164), NULL when withheld or invalid or once anonymised. Outbound: NULL (the customer''s number is dialled_number).';
COMMENT ON COLUMN call_attempts.dialled_number IS 'Outbound: the E.164 number dialled (the customer). Inbound: NULL. NULL once anonymised.';
COMMENT ON COLUMN call_attempts.caller_id IS 'The company''s number: outbound, the caller id presented to the customer; inbound, the number the caller dialled (NULL when it was not a phone number).';
COMMENT ON COLUMN call_attempts.campaign_id IS 'The campaign (outbound: always; inbound: the campaign the caller or the dialled line matched, NULL when none).';
COMMENT ON COLUMN call_attempts.attempt_no IS 'Which attempt this is for the contact (1 = first); NULL on inbound rows.';
COMMENT ON COLUMN call_attempts.mode IS 'Mode the call was placed in (a predictive campaign over its abandon cap places progressive calls); NULL on inbound rows.';
COMMENT ON COLUMN call_attempts.ring_s IS 'Outbound: seconds from originate to answer or give-up. Inbound: seconds the caller waited, from reaching HitCall to an agent or to the end of the call.';
COMMENT ON COLUMN call_attempts.answered_at IS 'Outbound: the customer answered. Inbound: an agent took the call (= bridged_at; NULL when none did).';
COMMENT ON COLUMN call_attempts.abandoned IS 'Outbound: answered by a person and not given to an agent within 2 s (heard the information message); counts against abandon_cap. Inbound: the caller hung up before reaching an agent; never counts against abandon_cap.';
COMMENT ON COLUMN call_attempts.outcome IS 'answered_human, answered_machine, busy, no_answer, congestion, failed, abandoned, cancelled; no_agent (inbound only: no agent took the call, the caller heard the message).';
