-- Supervisors' monitoring legs are accounted like calls: each monitoring session (a snoop
-- leg on a live call: the supervisor, the agent, the call, its modes, start, end and end
-- reason) keeps a retention deadline, the campaign's CDR retention from the session's start
-- (24 months when the campaign is gone), and the purge deletes the session once it has
-- passed (never within 2 months of its start, like the CDRs); the audit rows stay.
--
--   retention_until  hitcall_add_months(started_at, campaigns.retention_cdr_months), set on
--                    insert when not given.

ALTER TABLE monitoring_sessions ADD COLUMN retention_until timestamptz;

UPDATE monitoring_sessions m
   SET retention_until = hitcall_add_months(m.started_at,
           coalesce((SELECT c.retention_cdr_months FROM campaigns c WHERE c.id = m.campaign_id), 24));

ALTER TABLE monitoring_sessions
    ALTER COLUMN retention_until SET NOT NULL,
    ADD CONSTRAINT monitoring_sessions_retention_check CHECK (retention_until > started_at);

CREATE FUNCTION hitcall_monitoring_retention() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.retention_until IS NULL THEN
        NEW.retention_until := hitcall_add_months(NEW.started_at,
            coalesce((SELECT c.retention_cdr_months FROM campaigns c WHERE c.id = NEW.campaign_id), 24));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER monitoring_sessions_retention BEFORE INSERT ON monitoring_sessions
    FOR EACH ROW EXECUTE FUNCTION hitcall_monitoring_retention();

CREATE INDEX monitoring_sessions_retention_idx ON monitoring_sessions (retention_until) WHERE ended_at IS NOT NULL;

COMMENT ON COLUMN monitoring_sessions.retention_until IS 'The session is deleted by the purge after this: hitcall_add_months(started_at, campaigns.retention_cdr_months) at insert (24 months without a campaign).';
