-- A preview callback the agent skips waits callback_skip_delay_s before it is offered
-- again (it was first in callback order, so it came straight back); an attempt whose
-- call HitCall lost track of (its channel vanished unanswered while the events were
-- lost) is not the customer's fault: the contact gets one more attempt for it.

ALTER TABLE campaigns
    ADD COLUMN callback_skip_delay_s integer NOT NULL DEFAULT 900
        CHECK (callback_skip_delay_s BETWEEN 0 AND 604800);
COMMENT ON COLUMN campaigns.callback_skip_delay_s IS
    'Seconds a skipped preview callback waits before it is offered again (to anyone the callback allows).';

ALTER TABLE contacts
    ADD COLUMN lost_attempts smallint NOT NULL DEFAULT 0 CHECK (lost_attempts BETWEEN 0 AND 1);
COMMENT ON COLUMN contacts.lost_attempts IS
    'Attempts HitCall lost track of (vanished unanswered) that do not count against max_attempts: at most one.';
