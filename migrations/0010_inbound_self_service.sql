-- Outcome self_service (inbound only): a return call that ended in the FastAGI menu of the
-- return-call line (dialplan [hitcall-inbound], script optout) without being handed to the
-- inbound router: the caller opted out of marketing, or listened and hung up (or the menu
-- gave up after its tries). The menu writes that call's one CDR itself (direction
-- 'inbound', id = uuid5 of the Asterisk channel id, the same id the router would use, so a
-- caller who pressed 2 never gets two rows: the router writes those). On such a row
-- answered_at = created_at (the dialplan answered before the menu), bridged_at is NULL,
-- ring_s = 0 and talk_s = seconds in the menu. A caller who pressed 2 and hung up before
-- being handed over is 'abandoned' (as in the router); inbound rows never count in the
-- outbound abandon rate.
--
-- The outcome CHECK constraints are replaced exactly as 0008 did for no_agent: one ALTER
-- TABLE per table (live_attempts keeps the names it copied from call_attempts).

ALTER TABLE call_attempts
    DROP CONSTRAINT call_attempts_outcome_check,
    ADD CONSTRAINT call_attempts_outcome_check CHECK (
        outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer', 'congestion', 'failed', 'abandoned',
                    'cancelled', 'no_agent', 'self_service'));

ALTER TABLE live_attempts
    DROP CONSTRAINT call_attempts_outcome_check,
    ADD CONSTRAINT call_attempts_outcome_check CHECK (
        outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer', 'congestion', 'failed', 'abandoned',
                    'cancelled', 'no_agent', 'self_service'));

COMMENT ON COLUMN call_attempts.outcome IS 'answered_human, answered_machine, busy, no_answer, congestion, failed, abandoned, cancelled; no_agent (inbound only: no agent took the call, the caller heard the message); self_service (inbound only: the return-call menu served the caller: opted out, or listened and hung up).';
COMMENT ON COLUMN call_attempts.answered_at IS 'Outbound: the customer answered. Inbound via the router: an agent took the call (= bridged_at; NULL when none did). Inbound self_service: the dialplan answered (= created_at).';
