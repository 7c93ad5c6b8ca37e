-- Transfers and conference: what an attempt's CDR says about the transfer of its customer,
-- and who talked to the customer for how long (call legs).
--
-- CDR columns (the last transfer of the call; earlier ones are in call_legs):
--   transfer_kind       blind | attended; NULL when the call was never transferred.
--   transfer_target     what the agent asked for: 'agent' | 'campaign' | 'number'.
--   transfer_agent_id   the agent who took the customer (a named agent, or the longest-ready
--                       agent of the named campaign); NULL for a number.
--   transfer_campaign_id the campaign whose ready agents were asked for.
--   transfer_number     the external number (E.164) the customer was passed to; personal
--                       data of a third party: cleared when the row is anonymised.
--   transfer_result     completed (the customer was put through to the target), conference
--                       (the call ended as a three-way call), cancelled (the agent took the
--                       customer back, or the target left the conference), failed (the target
--                       was busy, did not answer, refused or went away; for a blind transfer to
--                       a number the call then ends), customer_gone (the customer hung up
--                       during the transfer).
--   transfer_cause      why it failed, in words ('busy', 'no answer', 'refused', …).
--   agent_id keeps the agent who first took the customer.
--
-- call_legs: one row per party that talked to the customer (or consulted about the customer
-- while the customer was on hold) and the time they were in the call. An agent's talk time
-- on the call is the sum of its legs' seconds.
--   role  agent       the agent who took the answered customer
--         consult     a target talking to the transferring agent, the customer on hold
--         target      the target talking to the customer after a transfer
--         conference  a three-way call (the target's leg; the transferring agent keeps its own)
-- A leg is written when it ends; legs have no foreign keys (like call_attempts) and follow the
-- attempt's retention: an anonymised attempt's legs lose their number.

ALTER TABLE call_attempts
    ADD COLUMN transfer_kind text CONSTRAINT call_attempts_transfer_kind_check
        CHECK (transfer_kind IN ('blind', 'attended')),
    ADD COLUMN transfer_target text CONSTRAINT call_attempts_transfer_target_check
        CHECK (transfer_target IN ('agent', 'campaign', 'number')),
    ADD COLUMN transfer_agent_id bigint,
    ADD COLUMN transfer_campaign_id bigint,
    ADD COLUMN transfer_number text CONSTRAINT call_attempts_transfer_number_check
        CHECK (hitcall_is_e164(transfer_number)),
    ADD COLUMN transfer_result text CONSTRAINT call_attempts_transfer_result_check
        CHECK (transfer_result IN ('completed', 'conference', 'cancelled', 'failed', 'customer_gone')),
    ADD COLUMN transfer_cause text,
    ADD CONSTRAINT call_attempts_transfer_check CHECK ((transfer_kind IS NULL) = (transfer_result IS NULL));

ALTER TABLE live_attempts
    ADD COLUMN transfer_kind text CONSTRAINT call_attempts_transfer_kind_check
        CHECK (transfer_kind IN ('blind', 'attended')),
    ADD COLUMN transfer_target text CONSTRAINT call_attempts_transfer_target_check
        CHECK (transfer_target IN ('agent', 'campaign', 'number')),
    ADD COLUMN transfer_agent_id bigint,
    ADD COLUMN transfer_campaign_id bigint,
    ADD COLUMN transfer_number text CONSTRAINT call_attempts_transfer_number_check
        CHECK (hitcall_is_e164(transfer_number)),
    ADD COLUMN transfer_result text CONSTRAINT call_attempts_transfer_result_check
        CHECK (transfer_result IN ('completed', 'conference', 'cancelled', 'failed', 'customer_gone')),
    ADD COLUMN transfer_cause text,
    ADD CONSTRAINT call_attempts_transfer_check CHECK ((transfer_kind IS NULL) = (transfer_result IS NULL));

-- SELECT * in a view is expanded when the view is created: made again with the new columns.
DROP VIEW all_attempts;
CREATE VIEW all_attempts AS
    SELECT * FROM live_attempts
    UNION ALL
    SELECT * FROM call_attempts;
COMMENT ON VIEW all_attempts IS 'Every attempt, live or ended (an attempt is in exactly one of the two tables).';

CREATE TABLE call_legs (
    attempt_id  uuid         NOT NULL,
    seq         smallint     NOT NULL CHECK (seq >= 0),
    agent_id    bigint,
    number      text         CHECK (hitcall_is_e164(number)),
    role        text         NOT NULL CHECK (role IN ('agent', 'consult', 'target', 'conference')),
    joined_at   timestamptz  NOT NULL,
    left_at     timestamptz  NOT NULL,
    talk_s      numeric(10,3) GENERATED ALWAYS AS (round(extract(epoch FROM left_at - joined_at)::numeric, 3)) STORED,
    PRIMARY KEY (attempt_id, seq),
    CONSTRAINT call_legs_order_check CHECK (left_at >= joined_at)
);
CREATE INDEX call_legs_agent_idx ON call_legs (agent_id, joined_at) WHERE agent_id IS NOT NULL;

COMMENT ON TABLE call_legs IS 'Who talked to the customer of an attempt and when (agents and transfer targets); an agent''s talk time on the call is the sum of its legs. Written when a leg ends.';
COMMENT ON COLUMN call_legs.number IS 'An external transfer target (E.164); NULL for an agent, and once the attempt is anonymised.';

-- Anonymising an attempt (purge, erasure) clears the external number it was transferred to,
-- in the CDR row and in its legs.
CREATE FUNCTION hitcall_anonymise_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.anonymised_at IS NOT NULL AND OLD.anonymised_at IS NULL THEN
        NEW.transfer_number := NULL;
        UPDATE call_legs SET number = NULL WHERE attempt_id = NEW.id AND number IS NOT NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER call_attempts_anonymise_transfer BEFORE UPDATE OF anonymised_at ON call_attempts
    FOR EACH ROW EXECUTE FUNCTION hitcall_anonymise_transfer();
CREATE TRIGGER live_attempts_anonymise_transfer BEFORE UPDATE OF anonymised_at ON live_attempts
    FOR EACH ROW EXECUTE FUNCTION hitcall_anonymise_transfer();
