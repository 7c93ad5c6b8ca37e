-- Webhook subscriptions get an owner; delivery errors shown through the API are generic;
-- complaint case ids are identifiers.
--
-- owner_id: the integration user whose subscription it is. Integration users see, change,
-- delete and replay only their own; NULL = owned by the administrators (every subscription
-- made before owners existed, and those an admin makes for no one in particular).
ALTER TABLE webhook_subscriptions ADD COLUMN owner_id bigint REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX webhook_subscriptions_owner_idx ON webhook_subscriptions (owner_id);

COMMENT ON COLUMN webhook_subscriptions.owner_id IS
    'The integration user owning the subscription (sees and changes only its own); NULL = admin-owned.';

-- last_error is readable by the subscription's owner: only "HTTP <status>", "connection failed",
-- "timeout" or "address not allowed"; what exactly failed goes to the service's log. Errors
-- stored before were the connector's own text (addresses, ports, resolver messages).
UPDATE webhook_deliveries SET last_error = 'connection failed'
WHERE last_error IS NOT NULL AND last_error !~ '^(HTTP [0-9]{3}|connection failed|timeout|address not allowed)$';

COMMENT ON COLUMN webhook_deliveries.last_error IS
    'Why the last attempt failed, generic: HTTP <status>, connection failed, timeout or address not allowed.';

-- The audit log cannot be erased, and a case id goes into it: an identifier, not free text
-- (no names). NOT VALID: holds placed before stay as they are until released.
ALTER TABLE recordings ADD CONSTRAINT recordings_hold_case_id_format
    CHECK (hold_case_id ~ '^[A-Za-z0-9._/-]{1,64}$') NOT VALID;

COMMENT ON COLUMN recordings.hold_case_id IS
    'Complaint case identifier (letters, digits, . _ / -, at most 64); it is written to the audit log, so never a name.';
