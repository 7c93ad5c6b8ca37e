-- Disposition codes with rules, per campaign; callbacks as rows of their own (scheduled,
-- moved, cancelled, done or missed) beside the contact's callback_at that the hopper reads;
-- a do-not-call entry an agent's disposition made names the agent and the attempt.

ALTER TABLE campaigns
    ADD COLUMN disposition_required boolean NOT NULL DEFAULT false,
    ADD COLUMN callback_delay_s integer NOT NULL DEFAULT 86400 CHECK (callback_delay_s BETWEEN 0 AND 2592000),
    ADD COLUMN callback_grace_s integer NOT NULL DEFAULT 900 CHECK (callback_grace_s BETWEEN 0 AND 604800);
COMMENT ON COLUMN campaigns.disposition_required IS
    'The agent stays in wrap-up (key 2, the API and the wrap-up timer refused) until the call they talked on has a disposition.';
COMMENT ON COLUMN campaigns.callback_delay_s IS
    'A callback scheduled by the agent''s phone key (no time given) is due this many seconds later, moved to the next opening of the calling window.';
COMMENT ON COLUMN campaigns.callback_grace_s IS
    'A personal callback whose agent is not logged in goes to any agent of the campaign this many seconds after its time.';

CREATE TABLE campaign_dispositions (
    campaign_id   bigint   NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    code          text     NOT NULL CHECK (code ~ '^[A-Za-z0-9_.-]{1,64}$'),
    label_fi      text     NOT NULL CHECK (btrim(label_fi) <> '' AND char_length(label_fi) <= 100),
    label_en      text     NOT NULL CHECK (btrim(label_en) <> '' AND char_length(label_en) <= 100),
    phone_key     text     CHECK (phone_key ~ '^[3-9]$'),
    rule          text     NOT NULL
                           CHECK (rule IN ('final', 'retry', 'callback', 'do_not_call', 'wrong_number', 'recycle')),
    retry_delay_s integer  CHECK (retry_delay_s BETWEEN 60 AND 2592000),
    recycle_days  integer  CHECK (recycle_days BETWEEN 1 AND 365),
    position      smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, code),
    CONSTRAINT campaign_dispositions_key UNIQUE (campaign_id, phone_key),
    CONSTRAINT campaign_dispositions_retry_check CHECK ((rule = 'retry') = (retry_delay_s IS NOT NULL)),
    CONSTRAINT campaign_dispositions_recycle_check CHECK ((rule = 'recycle') = (recycle_days IS NOT NULL))
);
COMMENT ON TABLE campaign_dispositions IS
    'A campaign''s disposition codes (core.dispositions): label in Finnish and English, the agent''s phone key, the rule applied to the contact.';

-- Every campaign starts with the codes of the agent phone keys 3-9 (core.dispositions.DEFAULT_DISPOSITIONS).
CREATE FUNCTION hitcall_default_dispositions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_dispositions (campaign_id, code, label_fi, label_en, phone_key, rule, retry_delay_s, position)
    VALUES (NEW.id, 'sale', 'Kauppa', 'Sale', '3', 'final', NULL, 0),
           (NEW.id, 'callback', 'Soitto takaisin', 'Callback', '4', 'callback', NULL, 1),
           (NEW.id, 'not_interested', 'Ei kiinnostunut', 'Not interested', '5', 'final', NULL, 2),
           (NEW.id, 'wrong_number', 'Väärä numero', 'Wrong number', '6', 'wrong_number', NULL, 3),
           (NEW.id, 'do_not_call', 'Älä soita', 'Do not call', '7', 'do_not_call', NULL, 4),
           (NEW.id, 'other', 'Muu', 'Other', '8', 'final', NULL, 5),
           (NEW.id, 'no_decision', 'Ei päätöstä', 'No decision', '9', 'retry', 86400, 6);
    RETURN NEW;
END $$;
CREATE TRIGGER campaigns_default_dispositions AFTER INSERT ON campaigns
    FOR EACH ROW EXECUTE FUNCTION hitcall_default_dispositions();

INSERT INTO campaign_dispositions (campaign_id, code, label_fi, label_en, phone_key, rule, retry_delay_s, position)
SELECT c.id, d.code, d.label_fi, d.label_en, d.phone_key, d.rule, d.retry_delay_s, d.position
FROM campaigns c
CROSS JOIN (VALUES ('sale', 'Kauppa', 'Sale', '3', 'final', NULL::integer, 0),
                   ('callback', 'Soitto takaisin', 'Callback', '4', 'callback', NULL, 1),
                   ('not_interested', 'Ei kiinnostunut', 'Not interested', '5', 'final', NULL, 2),
                   ('wrong_number', 'Väärä numero', 'Wrong number', '6', 'wrong_number', NULL, 3),
                   ('do_not_call', 'Älä soita', 'Do not call', '7', 'do_not_call', NULL, 4),
                   ('other', 'Muu', 'Other', '8', 'final', NULL, 5),
                   ('no_decision', 'Ei päätöstä', 'No decision', '9', 'retry', 86400, 6))
     AS d(code, label_fi, label_en, phone_key, rule, retry_delay_s, position);

ALTER TABLE dnc_entries
    ADD COLUMN agent_id bigint REFERENCES agents (id) ON DELETE SET NULL,
    ADD COLUMN attempt_id uuid;
COMMENT ON COLUMN dnc_entries.agent_id IS 'source agent: the agent whose do-not-call disposition added the number.';
COMMENT ON COLUMN dnc_entries.attempt_id IS 'source agent: the call attempt the disposition was given on (created_at is when).';

CREATE TABLE callbacks (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id   bigint      NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id    bigint      NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    agent_id      bigint      REFERENCES agents (id) ON DELETE SET NULL,
    kind          text        NOT NULL CHECK (kind IN ('personal', 'anyone')),
    due_at        timestamptz NOT NULL,
    timezone      text        NOT NULL,
    state         text        NOT NULL DEFAULT 'scheduled' CHECK (state IN ('scheduled', 'done', 'missed', 'cancelled')),
    attempt_id    uuid,
    source_attempt_id uuid,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    moved_at      timestamptz,
    closed_at     timestamptz,
    CONSTRAINT callbacks_personal_check CHECK (kind = 'anyone' OR agent_id IS NOT NULL OR state <> 'scheduled'),
    CONSTRAINT callbacks_closed_check CHECK ((state = 'scheduled') = (closed_at IS NULL))
);
CREATE UNIQUE INDEX callbacks_open_contact_key ON callbacks (contact_id) WHERE state = 'scheduled';
CREATE INDEX callbacks_campaign_due_idx ON callbacks (campaign_id, due_at);
CREATE INDEX callbacks_agent_idx ON callbacks (agent_id, due_at) WHERE agent_id IS NOT NULL;
CREATE INDEX callbacks_closed_idx ON callbacks (closed_at) WHERE closed_at IS NOT NULL;
COMMENT ON TABLE callbacks IS
    'Scheduled callbacks and what became of them. The open one (state scheduled, at most one per contact) is mirrored in contacts.callback_at / callback_agent_id, which the hopper reads.';
COMMENT ON COLUMN callbacks.timezone IS 'The contact''s time zone the callback time was checked in (calling window).';
COMMENT ON COLUMN callbacks.attempt_id IS 'The attempt that dialled the callback (done / missed).';
COMMENT ON COLUMN callbacks.source_attempt_id IS 'The call on which the agent scheduled it, if any.';
COMMENT ON COLUMN callbacks.created_by IS 'Actor: user name, token:<id>, or agent:<id> for a phone key.';

-- Existing scheduled callbacks get their row.
INSERT INTO callbacks (campaign_id, contact_id, agent_id, kind, due_at, timezone, created_by)
SELECT cl.campaign_id, c.id, c.callback_agent_id,
       CASE WHEN c.callback_agent_id IS NULL THEN 'anyone' ELSE 'personal' END,
       c.callback_at, coalesce(c.timezone, 'Europe/Helsinki'), 'migration'
FROM contacts c JOIN campaign_lists cl ON cl.list_id = c.list_id
WHERE c.callback_at IS NOT NULL;
