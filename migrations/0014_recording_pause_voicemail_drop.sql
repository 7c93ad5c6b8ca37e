-- Recording pauses and voicemail drop.
--
-- recording_pauses: the spans of a call's recording in which nothing was recorded (an
-- agent paused it to take a card number). The recording keeps its length: a span is
-- silence in the file, at the offset paused_at - the recording's start. A span is
-- written when it opens and closed when the agent resumes, or at the call's end
-- (resumed_by 'system', ended_by_call). Written while the call is up, before the
-- recording's own row exists (that comes when Asterisk has finished the file): no
-- foreign key; recording_id matches recordings.id and the attempt's recording_id.
-- No personal data: actors are "agent:<id>", user names or "token:<id>".
CREATE TABLE recording_pauses (
    recording_id  uuid         NOT NULL,
    seq           int          NOT NULL CHECK (seq >= 1),
    attempt_id    uuid         NOT NULL,
    paused_at     timestamptz  NOT NULL,
    paused_by     text         NOT NULL,
    resumed_at    timestamptz,
    resumed_by    text,
    ended_by_call boolean      NOT NULL DEFAULT false,
    PRIMARY KEY (recording_id, seq),
    CONSTRAINT recording_pauses_order_check CHECK (resumed_at IS NULL OR resumed_at >= paused_at),
    CONSTRAINT recording_pauses_resumed_check CHECK ((resumed_at IS NULL) = (resumed_by IS NULL))
);
CREATE INDEX recording_pauses_attempt_idx ON recording_pauses (attempt_id);

COMMENT ON TABLE recording_pauses IS 'Paused spans of call recordings (silence in the file); written when a span opens and when it closes.';
COMMENT ON COLUMN recording_pauses.paused_by IS 'Who paused: "agent:<id>" (phone key or API for the agent), a user name, "token:<id>".';
COMMENT ON COLUMN recording_pauses.resumed_by IS 'Who resumed; "system" when the call ended while paused (ended_by_call).';

-- Voicemail drop: with AMD on, a campaign may leave a recorded message on an answering
-- machine (once the machine's greeting and beep are over) instead of hanging up.
ALTER TABLE campaigns
    ADD COLUMN voicemail_drop boolean NOT NULL DEFAULT false,
    ADD COLUMN voicemail_message text CONSTRAINT campaigns_voicemail_message_check
        CHECK (voicemail_message ~ '^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$'),
    ADD CONSTRAINT campaigns_voicemail_drop_check
        CHECK (NOT voicemail_drop OR (amd_enabled AND voicemail_message IS NOT NULL));
COMMENT ON COLUMN campaigns.voicemail_drop IS 'Leave voicemail_message on an answering machine (AMD MACHINE) after its beep, instead of hanging up. Needs amd_enabled.';
COMMENT ON COLUMN campaigns.voicemail_message IS 'Asterisk sound name (no extension, no path traversal: segments of A-Z a-z 0-9 _ - separated by /), played as sound:<name>.';

-- The CDR says whether the message was left (the outcome stays answered_machine).
ALTER TABLE call_attempts ADD COLUMN voicemail_dropped boolean NOT NULL DEFAULT false;
ALTER TABLE live_attempts ADD COLUMN voicemail_dropped boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN call_attempts.voicemail_dropped IS 'The campaign''s voicemail message was played to the end on the answering machine (outcome answered_machine).';

-- SELECT * in a view is expanded when the view is created: made again with the new columns.
DROP VIEW all_attempts;
CREATE VIEW all_attempts AS
    SELECT * FROM live_attempts
    UNION ALL
    SELECT * FROM call_attempts;
COMMENT ON VIEW all_attempts IS 'Every attempt, live or ended (an attempt is in exactly one of the two tables).';
