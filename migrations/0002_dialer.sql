-- Pre-dial compliance blocks, counted per campaign, day (UTC) and reason, for the
-- daily compliance report (calls outside the window blocked, DNC blocks, ...).
CREATE TABLE dial_blocks (
    campaign_id bigint  NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    day         date    NOT NULL,
    reason      text    NOT NULL CHECK (reason IN ('suppressed', 'processing_restricted', 'dnc_global',
                                                   'marketing_prohibited', 'dnc_campaign', 'max_attempts',
                                                   'retry_not_reached', 'abandoned_72h', 'outside_window')),
    blocked     integer NOT NULL DEFAULT 0 CHECK (blocked >= 0),
    PRIMARY KEY (campaign_id, day, reason)
);
