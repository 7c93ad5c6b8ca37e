-- Inbound calls have live rows too: a caller on the return-call line gets a live_attempts
-- row (direction 'inbound', id = the id its CDR will have) when it reaches the FastAGI menu
-- or the inbound router, so that a call still up when the service stops is not forgotten.
-- The CDR writer retires the row when the call's CDR is written, as for an outbound
-- attempt. At the next start, restart recovery adopts the calls whose channels are still
-- up (followed to their end, one complete CDR) and closes the others.
--
-- Outcome untracked (inbound only): the call ended while no HitCall process followed it
-- (the service was stopped or killed): restart recovery found its channel gone. Its
-- ended_at is when recovery found it (the real end is at most that late); answered_at,
-- bridged_at and agent_id say how far it got. Never in the outbound abandon rate.
--
-- One live attempt per contact guards dialling only: a contact may call the return-call
-- line (twice, even) while HitCall dials them, so the unique index covers outbound rows.
--
-- The outcome CHECK constraints are replaced as 0008 and 0010 did: one ALTER TABLE per
-- table (live_attempts keeps the names it copied from call_attempts).

ALTER TABLE call_attempts
    DROP CONSTRAINT call_attempts_outcome_check,
    ADD CONSTRAINT call_attempts_outcome_check CHECK (
        outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer', 'congestion', 'failed', 'abandoned',
                    'cancelled', 'no_agent', 'self_service', 'untracked'));

ALTER TABLE live_attempts
    DROP CONSTRAINT call_attempts_outcome_check,
    ADD CONSTRAINT call_attempts_outcome_check CHECK (
        outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer', 'congestion', 'failed', 'abandoned',
                    'cancelled', 'no_agent', 'self_service', 'untracked'));

DROP INDEX live_attempts_contact_key;
CREATE UNIQUE INDEX live_attempts_contact_key ON live_attempts (contact_id) WHERE direction = 'outbound';

COMMENT ON TABLE live_attempts IS 'Calls not ended yet: outbound attempts (inserted before originate) and inbound calls (inserted when the caller reaches the return-call menu or the inbound router); updated as the call progresses, deleted by the CDR writer in the transaction that writes the call''s call_attempts row.';
COMMENT ON COLUMN live_attempts.id IS 'Attempt id (see call_attempts.id): outbound, the ARI channelId of the customer leg; inbound, the id derived from the caller''s Asterisk channel id.';
COMMENT ON COLUMN call_attempts.outcome IS 'answered_human, answered_machine, busy, no_answer, congestion, failed, abandoned, cancelled; no_agent (inbound only: no agent took the call, the caller heard the message); self_service (inbound only: the return-call menu served the caller: opted out, or listened and hung up); untracked (inbound only: the call ended while no HitCall process followed it, found gone by restart recovery).';
COMMENT ON COLUMN call_attempts.direction IS 'outbound: dialled by HitCall (campaign_id, attempt_no, mode, caller_id set). inbound: a caller reached HitCall (the return-call line); id derived from the Asterisk channel id (the dialplan tags Asterisk''s CDR of that channel with it).';
