-- Live attempts and call detail records in two tables.
--
-- An attempt is inserted before originate and changes several times while the call is
-- up (originating, ringing, answered, bridged); when it ends it becomes a call detail
-- record that never changes again except for a late disposition and, at its deadline,
-- anonymisation. Keeping both in call_attempts made every end of call an UPDATE of a
-- row carried by eight indexes (none of them HOT: the state changes and the partial
-- "live" indexes depend on it) plus three foreign-key checks.
--
-- Now:
--   live_attempts   the attempts not ended yet: a small, hot table. Its keys and foreign
--                   keys guard dialling (one live attempt per contact; campaign, contact
--                   and agent must exist). Progress updates touch no indexed column (HOT updates).
--   call_attempts   the CDRs: append-only. The CDR writer COPYs the final rows in and, in
--                   the same transaction, deletes their live rows, so an attempt is
--                   always in exactly one of the two tables (and its id is never reused:
--                   an attempt id is originated at most once).
-- call_attempts keeps no foreign keys: a CDR is a historical record. campaign_id is
-- checked by the writer against campaigns (which are never deleted); agents with calls
-- are never deleted (the API refuses); contacts are deleted only by erasure, which first
-- anonymises their CDRs. recordings.attempt_id and preview_offers.attempt_id name an
-- attempt in either table, so they lose their foreign keys as well.

CREATE TABLE live_attempts (LIKE call_attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE live_attempts
    ADD PRIMARY KEY (id),
    ADD CONSTRAINT live_attempts_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
    ADD CONSTRAINT live_attempts_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES contacts (id) ON DELETE SET NULL,
    ADD CONSTRAINT live_attempts_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES agents (id) ON DELETE SET NULL,
    ADD CONSTRAINT live_attempts_not_ended_check CHECK (state <> 'ended');
CREATE UNIQUE INDEX live_attempts_contact_key ON live_attempts (contact_id);
CREATE INDEX live_attempts_campaign_idx ON live_attempts (campaign_id);

COMMENT ON TABLE live_attempts IS 'Attempts not ended yet: inserted before originate, updated as the call progresses, deleted by the CDR writer in the transaction that writes the attempt''s call_attempts row.';
COMMENT ON COLUMN live_attempts.id IS 'Attempt id (see call_attempts.id); the ARI channelId of the customer leg.';
COMMENT ON COLUMN live_attempts.disposition IS 'A disposition given before the CDR is written; the CDR writer carries it over.';

ALTER TABLE recordings DROP CONSTRAINT recordings_attempt_id_fkey;
ALTER TABLE preview_offers DROP CONSTRAINT preview_offers_attempt_id_fkey;

INSERT INTO live_attempts SELECT * FROM call_attempts WHERE state <> 'ended';
DELETE FROM call_attempts WHERE state <> 'ended';

ALTER TABLE call_attempts
    DROP CONSTRAINT call_attempts_campaign_id_fkey,
    DROP CONSTRAINT call_attempts_contact_id_fkey,
    DROP CONSTRAINT call_attempts_agent_id_fkey,
    ALTER COLUMN state SET DEFAULT 'ended',
    ADD CONSTRAINT call_attempts_is_cdr_check CHECK (state = 'ended');
DROP INDEX call_attempts_live_idx;
DROP INDEX call_attempts_one_live_per_contact;

COMMENT ON TABLE call_attempts IS 'Call detail records: one row per ended call attempt, appended by the CDR writer (live attempts are in live_attempts until then); never deleted by erasure, only anonymised.';
COMMENT ON COLUMN call_attempts.recording_id IS 'recordings.id of the call''s recording (recordings.attempt_id is the other direction).';

CREATE VIEW all_attempts AS
    SELECT * FROM live_attempts
    UNION ALL
    SELECT * FROM call_attempts;

COMMENT ON VIEW all_attempts IS 'Every attempt, live or ended (an attempt is in exactly one of the two tables).';
