-- The browser workspace: each user's language and time zone, and the agents' notes on a contact.
--
-- users.locale / users.timezone: the language of every page the user reads (fi or en) and the
-- zone its times are shown in. A data-subject export reads contacts.* (notes included); erasure
-- deletes the contact row and its notes with it.

ALTER TABLE users
    ADD COLUMN locale   text NOT NULL DEFAULT 'fi' CHECK (locale IN ('fi', 'en')),
    ADD COLUMN timezone text NOT NULL DEFAULT 'Europe/Helsinki'
        CHECK (timezone ~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$');

COMMENT ON COLUMN users.locale IS 'Language of the web workspace for this user: fi (default) or en.';
COMMENT ON COLUMN users.timezone IS 'IANA time zone the web workspace shows times in (default Europe/Helsinki).';

ALTER TABLE contacts
    ADD COLUMN notes text CHECK (char_length(notes) <= 4000);

COMMENT ON COLUMN contacts.notes IS 'Agents'' free-text notes on the contact (personal data: exported, erased with the contact).';
