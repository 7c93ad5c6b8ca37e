-- Webhook dead-letter replay: a replayed delivery gets a fresh retry window.
ALTER TABLE webhook_deliveries ADD COLUMN replayed_at timestamptz;

COMMENT ON COLUMN webhook_deliveries.replayed_at IS
    'When the delivery was last moved from dead back to pending; its retry window (max age) counts from here instead of the event''s created_at.';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS
    'Pending: earliest next attempt, or the end of the lease of the worker posting it now.';

CREATE INDEX webhook_deliveries_dead_idx ON webhook_deliveries (subscription_id, outbox_id) WHERE state = 'dead';
