-- Every number a contact ever had, and login throttling per (client, user).
--
-- contact_number_history: a contact's phone number before each change (a rectification
-- or a CRM update), written by a trigger whatever path changed it. Erasure uses it to
-- cover every number the subject ever had: each gets a suppression hash and its plain
-- copies (DNC entries, CDRs, webhook events) are removed. Deleted with the contact.
CREATE TABLE contact_number_history (
    contact_id  bigint      NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    phone_e164  text        NOT NULL CHECK (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    replaced_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, phone_e164)
);
CREATE INDEX contact_number_history_phone_idx ON contact_number_history (phone_e164);

COMMENT ON TABLE contact_number_history IS 'Numbers a contact had before (personal data: erased with the contact). Written by the contacts_number_history trigger.';

CREATE FUNCTION hitcall_contact_number_history() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO contact_number_history (contact_id, phone_e164) VALUES (OLD.id, OLD.phone_e164)
        ON CONFLICT (contact_id, phone_e164) DO UPDATE SET replaced_at = EXCLUDED.replaced_at;
    RETURN NULL;
END
$$;

CREATE TRIGGER contacts_number_history
    AFTER UPDATE OF phone_e164 ON contacts
    FOR EACH ROW WHEN (OLD.phone_e164 IS DISTINCT FROM NEW.phone_e164)
    EXECUTE FUNCTION hitcall_contact_number_history();

-- login_throttle: failed logins per (client address, user name as typed), in fixed windows.
-- username '' is the client's row over every user name. A key over its limit is locked
-- until locked_until; tries refused while locked are only counted (refused) and written
-- to the audit log as one summary row when the lock is over, not one row per try.
CREATE TABLE login_throttle (
    client       text        NOT NULL CHECK (char_length(client) BETWEEN 1 AND 64),
    username     text        NOT NULL CHECK (char_length(username) <= 64),
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_at    timestamptz,
    locked_until timestamptz,
    refused      integer     NOT NULL DEFAULT 0 CHECK (refused >= 0),
    PRIMARY KEY (client, username),
    CONSTRAINT login_throttle_lock_check CHECK ((locked_at IS NULL) = (locked_until IS NULL))
);
CREATE INDEX login_throttle_locked_idx ON login_throttle (locked_until) WHERE locked_until IS NOT NULL;
CREATE INDEX login_throttle_username_idx ON login_throttle (username);

COMMENT ON TABLE login_throttle IS 'Login failures per (client, user) window; a client is the API peer, or the X-Forwarded-For address when the peer is a trusted proxy.';
COMMENT ON COLUMN login_throttle.username IS 'Lower-cased user name as typed (known or not); empty = every user name from this client.';
COMMENT ON COLUMN login_throttle.refused IS 'Tries refused while locked; summarised in one auth.login_throttled audit row when the lock ends.';
