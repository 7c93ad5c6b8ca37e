-- Records: cheaper writes of call_attempts (the CDR table, written in batches of thousands
-- of rows and anonymised a million rows at a time by the purge) without losing a query path.
--
-- Each secondary index costs every insert, every CDR update (none of them is HOT: the
-- state changes, and partial indexes depend on it) and every anonymisation. What reads them:
--   campaign_created   CDR query / export by campaign, pacing and abandon statistics
--   agent_created      CDR query by agent, agent deletion check (partial: agent set)
--   created (now BRIN) time-range scans across campaigns (daily report, CDR query by time
--                      only). CDRs arrive in call-time order, so block ranges summarise
--                      created_at well; a BRIN index costs next to nothing to maintain and
--                      does not prevent HOT updates.
--   number             subject access / erasure by number, 72 h abandoned-number rule.
--                      Partial: anonymised rows (dialled_number NULL) are never looked up,
--                      so the purge no longer re-inserts them. ended_at dropped from the key:
--                      a number has a handful of rows, the heap has the rest.
--   contact            subject access / erasure by contact, ON DELETE SET NULL from
--                      contacts. Partial: NULL contact ids are never looked up.
--   retention          the purge's scan in deadline order (kept as it was).
--   live, one_live     attempts not ended (partial: ended rows are not in them).
-- The E.164 checks were the most expensive CHECKs of the row (a regular expression each,
-- about 1.4 us a value); the same rule written with plain string functions costs half.

CREATE FUNCTION hitcall_is_e164(t text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$
    SELECT char_length(t) BETWEEN 8 AND 16 AND left(t, 1) = '+'
           AND strpos('123456789', substr(t, 2, 1)) > 0 AND ltrim(substr(t, 3), '0123456789') = ''
$$;

COMMENT ON FUNCTION hitcall_is_e164(text) IS
    'Same rule as the regular expression ^\+[1-9][0-9]{6,14}$ (E.164: + then 7..15 digits, the first not 0), without the regex engine; inlined into the CHECKs that use it.';

ALTER TABLE call_attempts
    DROP CONSTRAINT call_attempts_dialled_number_check,
    DROP CONSTRAINT call_attempts_caller_id_check,
    ADD CONSTRAINT call_attempts_dialled_number_check CHECK (hitcall_is_e164(dialled_number)),
    ADD CONSTRAINT call_attempts_caller_id_check CHECK (hitcall_is_e164(caller_id));

DROP INDEX call_attempts_created_idx;
CREATE INDEX call_attempts_created_brin ON call_attempts USING brin (created_at);

DROP INDEX call_attempts_number_idx;
CREATE INDEX call_attempts_number_idx ON call_attempts (dialled_number) WHERE dialled_number IS NOT NULL;

DROP INDEX call_attempts_contact_idx;
CREATE INDEX call_attempts_contact_idx ON call_attempts (contact_id) WHERE contact_id IS NOT NULL;

