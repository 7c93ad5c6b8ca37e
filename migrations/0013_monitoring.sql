-- Supervisor monitoring: one row per monitoring session (a supervisor listening to,
-- whispering to the agent on, or barging into one live call), from its start to its end.
--
--   supervisor          the user's name when the session started (kept when the user is
--                       deleted: the audit trail names people by their login)
--   supervisor_user_id  the user (NULL once deleted)
--   phone_agent_id      the supervisor's phone: the agent row linked to the user whose
--                       endpoint / number the supervisor logged in with
--   attempt_id          the call (an outbound attempt id; no foreign key, like call_attempts'
--                       own children, so that a purge of attempts never blocks on this log)
--   campaign_id, agent_id  the call's campaign and the agent talking to the customer
--   mode                the current (for an ended session: the last) mode
--   modes               every mode with the time it began: [{"mode": "listen", "at": "…"}, …]
--   started_at          the first mode was set up on Asterisk
--   ended_at, end_reason  stopped (the supervisor), call_ended (customer or agent hung up),
--                       transferred (a transfer took the customer out of the agent's bridge),
--                       supervisor_gone (the supervisor's phone hung up), failed (Asterisk
--                       refused a step), asterisk_lost (the channels vanished while ARI was
--                       away), service_restart (found open by a new service process)
-- Each start, mode change and end is also in audit_log (monitoring.started / .changed / .ended)
-- and sent as a webhook event of the same name.

CREATE TABLE monitoring_sessions (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    supervisor         text        NOT NULL CHECK (btrim(supervisor) <> ''),
    supervisor_user_id bigint      REFERENCES users (id) ON DELETE SET NULL,
    phone_agent_id     bigint      REFERENCES agents (id) ON DELETE SET NULL,
    attempt_id         uuid        NOT NULL,
    campaign_id        bigint      REFERENCES campaigns (id) ON DELETE SET NULL,
    agent_id           bigint      REFERENCES agents (id) ON DELETE SET NULL,
    mode               text        NOT NULL CHECK (mode IN ('listen', 'whisper', 'barge')),
    modes              jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(modes) = 'array'),
    started_at         timestamptz NOT NULL,
    ended_at           timestamptz,
    end_reason         text        CHECK (end_reason IN (
                                       'stopped', 'call_ended', 'transferred', 'supervisor_gone', 'failed',
                                       'asterisk_lost', 'service_restart')),
    CONSTRAINT monitoring_sessions_end_check CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CONSTRAINT monitoring_sessions_order_check CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX monitoring_sessions_attempt_idx ON monitoring_sessions (attempt_id);
CREATE INDEX monitoring_sessions_started_idx ON monitoring_sessions (started_at);
CREATE INDEX monitoring_sessions_open_idx ON monitoring_sessions (started_at) WHERE ended_at IS NULL;

COMMENT ON TABLE monitoring_sessions IS 'Supervisor monitoring sessions (listen, whisper, barge) on live calls: who, which call, modes, start and end. Changes are audited as monitoring.*.';
