-- HitCall initial schema.
--
-- Conventions
--   * Every timestamp is timestamptz. Configured durations are integer seconds with an
--     `_s` suffix; measured durations are numeric seconds (`_s`) or integer milliseconds
--     (`_ms`). Retention periods are whole calendar months (`_months`).
--   * Month arithmetic for retention deadlines uses hitcall_add_months(): calendar
--     months counted on the UTC date, the day clamped to the target month's length
--     (Aug 31 + 6 months = Feb 28). hitcall_pbx.core.retention.add_months computes
--     exactly the same in Python, so deadlines from either always pass the CHECKs.
--   * Phone numbers are E.164 text ('+358401234567'). Enumerations are text with CHECK.
--   * Hashes are lower-case hex sha256 unless the column says argon2.

-- ---------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------

CREATE FUNCTION hitcall_add_months(ts timestamptz, months integer) RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
    SELECT (($1 AT TIME ZONE 'UTC') + make_interval(months => $2)) AT TIME ZONE 'UTC'
$$;

COMMENT ON FUNCTION hitcall_add_months(timestamptz, integer) IS
    'ts plus whole calendar months counted in UTC; used for every retention deadline and hold limit.';

CREATE FUNCTION hitcall_touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- One row describing this installation.
CREATE TABLE installation (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    installation_id  uuid        NOT NULL DEFAULT gen_random_uuid(),
    suppression_salt bytea       NOT NULL CHECK (octet_length(suppression_salt) >= 16),
    created_at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN installation.suppression_salt IS
    'Secret key of suppression_hashes: hash = hex(HMAC-SHA256(key = this salt, message = E.164 number)). Never changes.';

INSERT INTO installation (suppression_salt)
VALUES (sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')));

-- ---------------------------------------------------------------------------------------
-- Users, API tokens, sessions
-- ---------------------------------------------------------------------------------------

CREATE TABLE users (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    password_hash text        CHECK (password_hash LIKE '$argon2%'),
    role          text        NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent', 'compliance', 'integration')),
    disabled      boolean     NOT NULL DEFAULT false,
    failed_logins integer     NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until  timestamptz,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

COMMENT ON COLUMN users.password_hash IS 'argon2id PHC string; NULL = no password login (token-only integration users).';
COMMENT ON COLUMN users.locked_until IS 'Login throttling: password logins refused until then.';

CREATE TABLE api_tokens (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL CHECK (btrim(name) <> ''),
    token_hash   text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    prefix       text        CHECK (char_length(prefix) BETWEEN 4 AND 16),
    scopes       text[]      NOT NULL DEFAULT '{}' CHECK (array_position(scopes, NULL) IS NULL),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CONSTRAINT api_tokens_expiry_check CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

COMMENT ON COLUMN api_tokens.token_hash IS 'sha256 hex of the full bearer token (tokens are random, high entropy); the token itself is never stored.';
COMMENT ON COLUMN api_tokens.prefix IS 'First characters of the token, shown in listings so users can tell tokens apart.';

CREATE TABLE sessions (
    token_hash   text        PRIMARY KEY CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_seen_at timestamptz,
    revoked_at   timestamptz,
    source_ip    inet,
    user_agent   text,
    CONSTRAINT sessions_expiry_check CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

COMMENT ON COLUMN sessions.token_hash IS 'sha256 hex of the session bearer token.';

-- ---------------------------------------------------------------------------------------
-- Campaigns, contact lists
-- ---------------------------------------------------------------------------------------

CREATE TABLE campaigns (
    id                          bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                        text         NOT NULL UNIQUE CHECK (btrim(name) <> ''),
    mode                        text         NOT NULL CHECK (mode IN ('preview', 'progressive', 'predictive')),
    state                       text         NOT NULL DEFAULT 'draft'
                                             CHECK (state IN ('draft', 'running', 'paused', 'finished')),
    caller_id                   text         CHECK (caller_id ~ '^\+[1-9][0-9]{6,14}$'),
    ring_timeout_s              integer      NOT NULL DEFAULT 25 CHECK (ring_timeout_s BETWEEN 15 AND 180),
    max_attempts                integer      NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    retry_busy_s                integer      NOT NULL DEFAULT 900 CHECK (retry_busy_s BETWEEN 60 AND 2592000),
    retry_no_answer_s           integer      NOT NULL DEFAULT 3600 CHECK (retry_no_answer_s BETWEEN 60 AND 2592000),
    retry_congestion_s          integer      NOT NULL DEFAULT 600 CHECK (retry_congestion_s BETWEEN 60 AND 2592000),
    retry_machine_s             integer      NOT NULL DEFAULT 7200 CHECK (retry_machine_s BETWEEN 60 AND 2592000),
    wrap_up_s                   integer      NOT NULL DEFAULT 10 CHECK (wrap_up_s BETWEEN 0 AND 3600),
    abandon_cap                 numeric(5,4) NOT NULL DEFAULT 0.03 CHECK (abandon_cap >= 0 AND abandon_cap <= 0.2),
    info_message_sound          text         CHECK (info_message_sound ~ '^(sound|recording):[^[:space:]]+$'),
    amd_enabled                 boolean      NOT NULL DEFAULT false,
    record_calls                boolean      NOT NULL DEFAULT false,
    recording_announcement      text         CHECK (recording_announcement ~ '^(sound|recording):[^[:space:]]+$'),
    window_start                time         NOT NULL DEFAULT '09:00',
    window_end                  time         NOT NULL DEFAULT '20:00',
    window_days                 smallint[]   NOT NULL DEFAULT '{1,2,3,4,5}',
    priority                    integer      NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    preview_offer_timeout_s     integer      NOT NULL DEFAULT 30 CHECK (preview_offer_timeout_s BETWEEN 5 AND 600),
    max_lines_per_agent         numeric(4,2) NOT NULL DEFAULT 3 CHECK (max_lines_per_agent BETWEEN 1 AND 10),
    retention_recordings_months smallint     NOT NULL DEFAULT 6 CHECK (retention_recordings_months BETWEEN 2 AND 6),
    retention_cdr_months        smallint     NOT NULL DEFAULT 24 CHECK (retention_cdr_months BETWEEN 1 AND 120),
    company_name                text         CHECK (btrim(company_name) <> ''),
    callback_number             text         CHECK (callback_number ~ '^\+[1-9][0-9]{6,14}$'),
    created_at                  timestamptz  NOT NULL DEFAULT now(),
    updated_at                  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT campaigns_window_check CHECK (window_start < window_end),
    CONSTRAINT campaigns_window_days_check CHECK (
        cardinality(window_days) BETWEEN 1 AND 7
        AND array_position(window_days, NULL) IS NULL
        AND window_days <@ '{1,2,3,4,5,6,7}'::smallint[]),
    CONSTRAINT campaigns_caller_id_required CHECK (state = 'draft' OR caller_id IS NOT NULL),
    CONSTRAINT campaigns_info_message_required CHECK (
        state = 'draft' OR mode <> 'predictive' OR info_message_sound IS NOT NULL)
);

COMMENT ON COLUMN campaigns.abandon_cap IS 'Fraction (0.03 = 3 %) of abandoned / (abandoned + connected to an agent), per calendar day and over 30 days.';
COMMENT ON COLUMN campaigns.info_message_sound IS 'ARI media URI (sound:... or recording:...) played to an answered customer no agent took within 2 s: who called and the callback number. Required to run a predictive campaign.';
COMMENT ON COLUMN campaigns.recording_announcement IS 'ARI media URI played to the customer before recording starts; NULL = no announcement.';
COMMENT ON COLUMN campaigns.window_start IS 'Calling window start in the callee''s local time (time zone from the contact or its E.164 number).';
COMMENT ON COLUMN campaigns.window_end IS 'Calling window end (exclusive) in the callee''s local time.';
COMMENT ON COLUMN campaigns.window_days IS 'ISO weekdays the window is open, 1 = Monday ... 7 = Sunday, in the callee''s local time.';
COMMENT ON COLUMN campaigns.priority IS 'Higher first: a free agent takes the next call from the highest-priority campaign that needs one.';
COMMENT ON COLUMN campaigns.max_lines_per_agent IS 'Predictive pacing cap: customer lines being dialled or waiting per ready agent.';
COMMENT ON COLUMN campaigns.retention_recordings_months IS 'Recording retention in calendar months (2..6); retention_until = hitcall_add_months(call date, this).';
COMMENT ON COLUMN campaigns.retention_cdr_months IS 'Retention of call attempt personal data in calendar months; retention_until = hitcall_add_months(created_at, this).';

CREATE TABLE contact_lists (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (btrim(name) <> ''),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_lists (
    campaign_id bigint      NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    list_id     bigint      NOT NULL REFERENCES contact_lists (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, list_id),
    CONSTRAINT campaign_lists_one_campaign_per_list UNIQUE (list_id)
);

COMMENT ON TABLE campaign_lists IS 'Lists a campaign dials. A list belongs to at most one campaign at a time, because dial state (status, attempts, next_attempt_at) lives on the contact.';

-- ---------------------------------------------------------------------------------------
-- Agents
-- ---------------------------------------------------------------------------------------

CREATE TABLE agents (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number      text        NOT NULL UNIQUE CHECK (number ~ '^[0-9]{1,10}$'),
    name        text        NOT NULL CHECK (btrim(name) <> ''),
    pin_hash    text        CHECK (pin_hash LIKE '$argon2%'),
    endpoint    text        UNIQUE CHECK (endpoint ~ '^[A-Za-z0-9_.-]{1,80}$'),
    user_id     bigint      UNIQUE REFERENCES users (id) ON DELETE SET NULL,
    disabled    boolean     NOT NULL DEFAULT false,
    state       text        NOT NULL DEFAULT 'logged_out'
                            CHECK (state IN ('ready', 'reserved', 'on_call', 'wrap_up', 'paused', 'logged_out')),
    pause_code  text        CHECK (pause_code ~ '^[A-Za-z0-9_-]{1,32}$'),
    state_since timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT agents_paused_has_code CHECK ((state = 'paused') = (pause_code IS NOT NULL))
);

COMMENT ON COLUMN agents.number IS 'Agent number typed on the phone keypad at login.';
COMMENT ON COLUMN agents.pin_hash IS 'argon2id PHC string of the login PIN; NULL = login only by endpoint identity.';
COMMENT ON COLUMN agents.endpoint IS 'PJSIP endpoint name of the agent''s phone; identifies the agent at login without a PIN.';
COMMENT ON COLUMN agents.state IS 'Current state, mirrored by the service; history in agent_state_log. Disable agents instead of deleting them: deletion drops their time accounting.';

CREATE TABLE agent_campaigns (
    agent_id    bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, campaign_id)
);
CREATE INDEX agent_campaigns_campaign_idx ON agent_campaigns (campaign_id);

CREATE TABLE agent_state_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    bigint      NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    state       text        NOT NULL
                            CHECK (state IN ('ready', 'reserved', 'on_call', 'wrap_up', 'paused', 'logged_out')),
    pause_code  text        CHECK (pause_code ~ '^[A-Za-z0-9_-]{1,32}$'),
    campaign_id bigint      REFERENCES campaigns (id) ON DELETE SET NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    CONSTRAINT agent_state_log_paused_has_code CHECK ((state = 'paused') = (pause_code IS NOT NULL)),
    CONSTRAINT agent_state_log_interval_check CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX agent_state_log_agent_idx ON agent_state_log (agent_id, started_at);
CREATE INDEX agent_state_log_started_idx ON agent_state_log (started_at);
CREATE UNIQUE INDEX agent_state_log_open_key ON agent_state_log (agent_id) WHERE ended_at IS NULL;

COMMENT ON TABLE agent_state_log IS 'One row per agent state interval (time accounting); at most one open row (ended_at NULL) per agent.';

-- ---------------------------------------------------------------------------------------
-- Contacts, DNC, suppression
-- ---------------------------------------------------------------------------------------

CREATE TABLE contacts (
    id                    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_id               bigint      NOT NULL REFERENCES contact_lists (id) ON DELETE CASCADE,
    external_id           text        CHECK (char_length(external_id) BETWEEN 1 AND 200),
    phone_e164            text        NOT NULL CHECK (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    name                  text,
    title                 text,
    email                 text        CHECK (char_length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'),
    organisation          text,
    timezone              text        CHECK (timezone ~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$'),
    marketing_permission  boolean     NOT NULL DEFAULT false,
    marketing_prohibited  boolean     NOT NULL DEFAULT false,
    processing_restricted boolean     NOT NULL DEFAULT false,
    attempts              integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at       timestamptz,
    status                text        NOT NULL DEFAULT 'new'
                                      CHECK (status IN ('new', 'retry', 'in_progress', 'callback', 'done', 'failed', 'dnc')),
    last_outcome          text        CHECK (last_outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer',
                                                              'congestion', 'failed', 'abandoned', 'cancelled')),
    callback_at           timestamptz,
    callback_agent_id     bigint      REFERENCES agents (id) ON DELETE SET NULL,
    extra                 jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(extra) = 'object'),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_list_phone_key UNIQUE (list_id, phone_e164),
    CONSTRAINT contacts_permission_vs_prohibition CHECK (NOT (marketing_permission AND marketing_prohibited)),
    CONSTRAINT contacts_callback_check CHECK (status <> 'callback' OR callback_at IS NOT NULL),
    CONSTRAINT contacts_callback_agent_check CHECK (callback_agent_id IS NULL OR callback_at IS NOT NULL)
);
CREATE UNIQUE INDEX contacts_list_external_key ON contacts (list_id, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX contacts_phone_idx ON contacts (phone_e164);
CREATE INDEX contacts_email_idx ON contacts (lower(email)) WHERE email IS NOT NULL;
CREATE INDEX contacts_hopper_idx ON contacts (list_id, next_attempt_at NULLS FIRST, id)
    WHERE status IN ('new', 'retry');
CREATE INDEX contacts_callback_idx ON contacts (callback_at, list_id) WHERE status = 'callback';
CREATE INDEX contacts_callback_agent_idx ON contacts (callback_agent_id) WHERE callback_agent_id IS NOT NULL;

COMMENT ON COLUMN contacts.external_id IS 'The CRM''s own id for this contact, unique per list; carried in webhooks.';
COMMENT ON COLUMN contacts.timezone IS 'IANA time zone name overriding the one derived from the number; NULL = derive from phone_e164.';
COMMENT ON COLUMN contacts.marketing_prohibited IS 'Objection to direct marketing: never dialled by any campaign. Excludes marketing_permission.';
COMMENT ON COLUMN contacts.processing_restricted IS 'Restriction of processing: kept in storage only, never dialled or otherwise used.';
COMMENT ON COLUMN contacts.attempts IS 'Call attempts made so far (compared with campaigns.max_attempts).';
COMMENT ON COLUMN contacts.next_attempt_at IS 'Earliest next dial for status new/retry; NULL = as soon as possible.';
COMMENT ON COLUMN contacts.status IS 'new: never dialled; retry: waiting for next_attempt_at after an unsuccessful attempt; in_progress: an attempt is live; callback: dial at callback_at (optionally by callback_agent_id); done/failed/dnc: final.';

CREATE TABLE dnc_entries (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone_e164  text        NOT NULL CHECK (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    campaign_id bigint      REFERENCES campaigns (id) ON DELETE CASCADE,
    reason      text,
    source      text        NOT NULL
                            CHECK (source IN ('manual', 'import', 'api', 'agent', 'ivr_optout', 'subject_request', 'registry')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX dnc_entries_global_key ON dnc_entries (phone_e164) WHERE campaign_id IS NULL;
CREATE UNIQUE INDEX dnc_entries_campaign_key ON dnc_entries (phone_e164, campaign_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX dnc_entries_campaign_idx ON dnc_entries (campaign_id) WHERE campaign_id IS NOT NULL;

COMMENT ON COLUMN dnc_entries.campaign_id IS 'NULL = blocks the number in every campaign.';
COMMENT ON COLUMN dnc_entries.source IS 'ivr_optout: the callee pressed the opt-out key on the return-call line; registry: an external do-not-call register.';

CREATE TABLE suppression_hashes (
    hash       text        PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE suppression_hashes IS 'Numbers of erased data subjects, never dialled again: hex(HMAC-SHA256(installation.suppression_salt, phone_e164)), see core.compliance.salted_number_hash.';

-- ---------------------------------------------------------------------------------------
-- Call attempts (CDRs), preview offers, recordings
-- ---------------------------------------------------------------------------------------

CREATE TABLE call_attempts (
    id                  uuid         PRIMARY KEY,
    campaign_id         bigint       NOT NULL REFERENCES campaigns (id),
    contact_id          bigint       REFERENCES contacts (id) ON DELETE SET NULL,
    attempt_no          smallint     NOT NULL DEFAULT 1 CHECK (attempt_no >= 1),
    dialled_number      text         CHECK (dialled_number ~ '^\+[1-9][0-9]{6,14}$'),
    caller_id           text         NOT NULL CHECK (caller_id ~ '^\+[1-9][0-9]{6,14}$'),
    agent_id            bigint       REFERENCES agents (id) ON DELETE SET NULL,
    mode                text         NOT NULL CHECK (mode IN ('preview', 'progressive', 'predictive')),
    state               text         NOT NULL DEFAULT 'reserved'
                                     CHECK (state IN ('reserved', 'originating', 'ringing', 'answered', 'bridged', 'ended')),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    originated_at       timestamptz,
    ringing_at          timestamptz,
    answered_at         timestamptz,
    bridged_at          timestamptz,
    ended_at            timestamptz,
    ring_s              numeric(10,3) CHECK (ring_s >= 0),
    talk_s              numeric(10,3) CHECK (talk_s >= 0),
    answer_to_bridge_ms integer      CHECK (answer_to_bridge_ms >= 0),
    outcome             text         CHECK (outcome IN ('answered_human', 'answered_machine', 'busy', 'no_answer',
                                                        'congestion', 'failed', 'abandoned', 'cancelled')),
    hangup_cause        smallint     CHECK (hangup_cause BETWEEN 0 AND 127),
    hangup_cause_txt    text,
    amd_status          text         CHECK (amd_status IN ('HUMAN', 'MACHINE', 'NOTSURE', 'HANGUP')),
    amd_cause           text,
    abandoned           boolean      NOT NULL DEFAULT false,
    disposition         text         CHECK (disposition ~ '^[A-Za-z0-9_.-]{1,64}$'),
    skip_reason         text,
    recording_id        uuid,
    retention_until     timestamptz  NOT NULL,
    anonymised_at       timestamptz,
    CONSTRAINT call_attempts_ended_check CHECK ((state = 'ended') = (ended_at IS NOT NULL)),
    CONSTRAINT call_attempts_ended_has_outcome CHECK (state <> 'ended' OR outcome IS NOT NULL),
    CONSTRAINT call_attempts_abandoned_check CHECK (outcome IS DISTINCT FROM 'abandoned' OR abandoned),
    CONSTRAINT call_attempts_retention_check CHECK (retention_until > created_at),
    CONSTRAINT call_attempts_anonymised_check CHECK (
        anonymised_at IS NULL OR (dialled_number IS NULL AND contact_id IS NULL))
);
CREATE INDEX call_attempts_campaign_created_idx ON call_attempts (campaign_id, created_at);
CREATE INDEX call_attempts_agent_created_idx ON call_attempts (agent_id, created_at) WHERE agent_id IS NOT NULL;
CREATE INDEX call_attempts_created_idx ON call_attempts (created_at);
CREATE INDEX call_attempts_number_idx ON call_attempts (dialled_number, ended_at);
CREATE INDEX call_attempts_contact_idx ON call_attempts (contact_id);
CREATE INDEX call_attempts_live_idx ON call_attempts (campaign_id, state) WHERE state <> 'ended';
CREATE INDEX call_attempts_retention_idx ON call_attempts (retention_until) WHERE anonymised_at IS NULL;
CREATE UNIQUE INDEX call_attempts_one_live_per_contact ON call_attempts (contact_id)
    WHERE state <> 'ended' AND contact_id IS NOT NULL;

COMMENT ON TABLE call_attempts IS 'One row per call attempt = the CDR. Inserted (state reserved) before originate; updated from the call model; never deleted by erasure, only anonymised.';
COMMENT ON COLUMN call_attempts.id IS 'Attempt id, generated by the service before originate. ARI channelId of the customer leg = this uuid''s lower-case text; other channels of the attempt (Local ;2 half, snoop) use that text plus a suffix, so the first 36 characters of a channel id name its attempt.';
COMMENT ON COLUMN call_attempts.attempt_no IS 'Which attempt this is for the contact (1 = first).';
COMMENT ON COLUMN call_attempts.dialled_number IS 'E.164 number dialled; NULL once anonymised.';
COMMENT ON COLUMN call_attempts.mode IS 'Mode the call was placed in (a predictive campaign over its abandon cap places progressive calls).';
COMMENT ON COLUMN call_attempts.ring_s IS 'Seconds from originate to answer or give-up.';
COMMENT ON COLUMN call_attempts.talk_s IS 'Seconds from bridge to hangup (0 when never bridged).';
COMMENT ON COLUMN call_attempts.answer_to_bridge_ms IS 'Milliseconds from answer (StasisStart of the answered customer, AMD time included) to the customer entering the agent''s bridge (2-second rule).';
COMMENT ON COLUMN call_attempts.hangup_cause IS 'Q.850 cause from Asterisk (16 normal, 17 busy, 19 no answer, 34 congestion, ...).';
COMMENT ON COLUMN call_attempts.amd_status IS 'Asterisk AMDSTATUS; amd_cause holds AMDCAUSE (e.g. TOOLONG-5000).';
COMMENT ON COLUMN call_attempts.abandoned IS 'Answered by a person and not given to an agent within 2 s (heard the information message); counts against abandon_cap.';
COMMENT ON COLUMN call_attempts.disposition IS 'Agent''s disposition code for the call.';
COMMENT ON COLUMN call_attempts.skip_reason IS 'Why the attempt was not dialled (preview skip, blocked by DNC or window at the last check).';
COMMENT ON COLUMN call_attempts.recording_id IS 'recordings.id of the call''s recording. No foreign key: the CDR and the recording row are written independently; recordings.attempt_id is the enforced link.';
COMMENT ON COLUMN call_attempts.retention_until IS 'Personal data in this row is deleted or anonymised after this; hitcall_add_months(created_at, campaigns.retention_cdr_months) at write time.';

CREATE TABLE preview_offers (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    bigint      NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    campaign_id bigint      NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id  bigint      NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    attempt_id  uuid        REFERENCES call_attempts (id) ON DELETE SET NULL,
    offered_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    decided_at  timestamptz,
    decision    text        CHECK (decision IN ('accept', 'skip', 'timeout')),
    skip_reason text,
    CONSTRAINT preview_offers_expiry_check CHECK (expires_at > offered_at),
    CONSTRAINT preview_offers_decided_check CHECK ((decision IS NULL) = (decided_at IS NULL)),
    CONSTRAINT preview_offers_skip_reason_check CHECK (skip_reason IS NULL OR decision = 'skip')
);
CREATE UNIQUE INDEX preview_offers_open_agent_key ON preview_offers (agent_id) WHERE decision IS NULL;
CREATE UNIQUE INDEX preview_offers_open_contact_key ON preview_offers (contact_id) WHERE decision IS NULL;
CREATE INDEX preview_offers_campaign_idx ON preview_offers (campaign_id, offered_at);
CREATE INDEX preview_offers_expires_idx ON preview_offers (expires_at) WHERE decision IS NULL;

COMMENT ON COLUMN preview_offers.attempt_id IS 'The attempt created when the offer was accepted.';

CREATE TABLE recordings (
    id              uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    attempt_id      uuid          NOT NULL REFERENCES call_attempts (id),
    campaign_id     bigint        NOT NULL REFERENCES campaigns (id),
    path            text          NOT NULL CHECK (path <> '' AND path !~ '^/' AND path !~ '(^|/)\.\.(/|$)'),
    sha256          text          NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes      bigint        NOT NULL CHECK (size_bytes >= 0),
    duration_s      numeric(10,3) NOT NULL CHECK (duration_s >= 0),
    format          text          NOT NULL CHECK (format ~ '^[a-z0-9]{2,10}$'),
    created_at      timestamptz   NOT NULL,
    retention_until timestamptz   NOT NULL,
    hold_reason     text          CHECK (btrim(hold_reason) <> ''),
    hold_case_id    text          CHECK (btrim(hold_case_id) <> ''),
    held_until      timestamptz,
    purged_at       timestamptz,
    purge_reason    text          CHECK (purge_reason IN ('retention', 'erasure')),
    CONSTRAINT recordings_retention_check CHECK (
        retention_until >= hitcall_add_months(created_at, 2)
        AND retention_until <= hitcall_add_months(created_at, 6)),
    CONSTRAINT recordings_hold_check CHECK (
        (held_until IS NULL AND hold_reason IS NULL AND hold_case_id IS NULL)
        OR (held_until IS NOT NULL AND hold_reason IS NOT NULL)),
    CONSTRAINT recordings_hold_limit_check CHECK (
        held_until IS NULL OR (held_until > created_at AND held_until <= hitcall_add_months(created_at, 18))),
    CONSTRAINT recordings_purge_check CHECK ((purged_at IS NULL) = (purge_reason IS NULL)),
    CONSTRAINT recordings_purged_not_held_check CHECK (purged_at IS NULL OR held_until IS NULL),
    CONSTRAINT recordings_purge_deadline_check CHECK (
        purge_reason IS DISTINCT FROM 'retention' OR purged_at >= retention_until)
);
CREATE UNIQUE INDEX recordings_path_key ON recordings (path);
CREATE INDEX recordings_attempt_idx ON recordings (attempt_id);
CREATE INDEX recordings_campaign_created_idx ON recordings (campaign_id, created_at);
CREATE INDEX recordings_retention_idx ON recordings (retention_until) WHERE purged_at IS NULL AND held_until IS NULL;
CREATE INDEX recordings_held_idx ON recordings (held_until) WHERE purged_at IS NULL AND held_until IS NOT NULL;

COMMENT ON TABLE recordings IS 'One row per recording file. A purged row is a tombstone: the file is gone, metadata and purged_at are kept.';
COMMENT ON COLUMN recordings.path IS 'Path of the file relative to the recordings store directory.';
COMMENT ON COLUMN recordings.created_at IS 'Call date (start of the recorded call); all deadlines count from it.';
COMMENT ON COLUMN recordings.retention_until IS 'Policy deadline: hitcall_add_months(created_at, campaigns.retention_recordings_months), always 2..6 months after the call. A hold does not change it.';
COMMENT ON COLUMN recordings.held_until IS 'Complaint hold: not purged before this (at most 18 months after the call). Releasing the hold clears the hold columns; the policy deadline applies again.';
COMMENT ON COLUMN recordings.purge_reason IS 'retention: deadline passed (never before retention_until); erasure: data-subject erasure.';

-- ---------------------------------------------------------------------------------------
-- Audit log (append-only)
-- ---------------------------------------------------------------------------------------

CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL CHECK (btrim(actor) <> ''),
    actor_role  text        CHECK (actor_role IN ('admin', 'supervisor', 'agent', 'compliance', 'integration', 'system')),
    action      text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$'),
    object_type text,
    object_id   text,
    details     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    source_ip   inet
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at);

COMMENT ON TABLE audit_log IS 'Append-only: UPDATE, DELETE and TRUNCATE raise. Rows cannot be erased, so refer to people by object ids, never put phone numbers or names in details.';
COMMENT ON COLUMN audit_log.actor IS 'Username, "token:<id>" for an API token, or the name of a service worker (actor_role system).';
COMMENT ON COLUMN audit_log.action IS 'Dotted verb, e.g. user.login, recording.download, recording.hold, subject.erase, purge.run.';

CREATE FUNCTION hitcall_audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION hitcall_audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION hitcall_audit_log_append_only();

-- ---------------------------------------------------------------------------------------
-- Webhooks (transactional outbox), alarms
-- ---------------------------------------------------------------------------------------

CREATE TABLE webhook_subscriptions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url         text        NOT NULL CHECK (url ~ '^https?://[^[:space:]]+$'),
    secret      text        NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]{16,}$'),
    event_types text[]      NOT NULL
                            CHECK (cardinality(event_types) >= 1 AND array_position(event_types, NULL) IS NULL),
    description text,
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON COLUMN webhook_subscriptions.secret IS 'Standard Webhooks signing secret (whsec_ + base64); kept in clear because signing needs it.';
COMMENT ON COLUMN webhook_subscriptions.event_types IS 'Event types delivered, e.g. {call.ended,recording.ready}; {*} = all.';

CREATE TABLE webhook_outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type    text        NOT NULL CHECK (event_type ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    subject       text        NOT NULL CHECK (btrim(subject) <> ''),
    payload       jsonb       NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    dispatched_at timestamptz
);
CREATE INDEX webhook_outbox_undispatched_idx ON webhook_outbox (id) WHERE dispatched_at IS NULL;
CREATE INDEX webhook_outbox_subject_idx ON webhook_outbox (subject, id);
CREATE INDEX webhook_outbox_created_idx ON webhook_outbox (created_at);

COMMENT ON TABLE webhook_outbox IS 'Events, written in the same transaction as the change that caused them. Delivery order is id order per subject.';
COMMENT ON COLUMN webhook_outbox.event_id IS 'Sent as the webhook-id header; receivers de-duplicate on it.';
COMMENT ON COLUMN webhook_outbox.subject IS 'Ordering key, e.g. call:<attempt id>, agent:<id>, campaign:<id>.';
COMMENT ON COLUMN webhook_outbox.dispatched_at IS 'When delivery rows were created for the active subscriptions; NULL = not yet fanned out.';

CREATE TABLE webhook_deliveries (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id       bigint      NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
    subscription_id bigint      NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer     CHECK (last_status BETWEEN 100 AND 599),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    CONSTRAINT webhook_deliveries_key UNIQUE (outbox_id, subscription_id),
    CONSTRAINT webhook_deliveries_delivered_check CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (subscription_id, state, outbox_id);

COMMENT ON COLUMN webhook_deliveries.last_status IS 'HTTP status of the last attempt; NULL when it failed before a response.';

CREATE TABLE alarms (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_.]*$'),
    severity   text        NOT NULL DEFAULT 'major' CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    state      text        NOT NULL DEFAULT 'raised' CHECK (state IN ('raised', 'cleared')),
    raised_at  timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    details    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    CONSTRAINT alarms_cleared_check CHECK ((state = 'cleared') = (cleared_at IS NOT NULL)),
    CONSTRAINT alarms_interval_check CHECK (cleared_at IS NULL OR cleared_at >= raised_at)
);
CREATE UNIQUE INDEX alarms_raised_key ON alarms (name) WHERE state = 'raised';
CREATE INDEX alarms_raised_at_idx ON alarms (raised_at);

COMMENT ON TABLE alarms IS 'Operational alarms (e.g. ari.disconnected, db.spooling, abandon.cap_reached); at most one raised row per name.';

-- ---------------------------------------------------------------------------------------
-- updated_at maintenance
-- ---------------------------------------------------------------------------------------

CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION hitcall_touch_updated_at();
CREATE TRIGGER campaigns_touch BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION hitcall_touch_updated_at();
CREATE TRIGGER contact_lists_touch BEFORE UPDATE ON contact_lists
    FOR EACH ROW EXECUTE FUNCTION hitcall_touch_updated_at();
CREATE TRIGGER contacts_touch BEFORE UPDATE ON contacts
    FOR EACH ROW EXECUTE FUNCTION hitcall_touch_updated_at();
CREATE TRIGGER agents_touch BEFORE UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION hitcall_touch_updated_at();
CREATE TRIGGER webhook_subscriptions_touch BEFORE UPDATE ON webhook_subscriptions
    FOR EACH ROW EXECUTE FUNCTION hitcall_touch_updated_at();
