-- Several nodes: HitCall processes sharing one PostgreSQL, each driving the Asterisk
-- servers (pools) whose leases it holds. PostgreSQL is the coordinator (the database's
-- clock decides what is live); see hitcall_pbx/cluster and hitcall_pbx/core/leases.py.
--
--   nodes    one row per node id (HITCALL_NODE_ID, default the host name): the process
--            running under it now or last (instance, host, pid), the pools it may drive
--            (home pool first), and its lease. A node is live while lease_until > now();
--            a second process with the same node id is refused while the first one's lease
--            is live. A clean stop sets stopped_at and ends the lease at once.
--   leases   one row per lease ('pool:<name>': the right to drive one Asterisk). Exactly
--            one node holds a pool at a time; token is the fencing token, +1 every time the
--            lease is taken anew (a new holder, or the same node after its lease lapsed).
--            The originate claim (the INSERT of a live outbound attempt) carries the
--            holder's token and inserts nothing unless it still matches a live lease.
--
-- Every live row carries the pool (the Asterisk it is on) and the node that wrote it;
-- the CDR keeps them (which Asterisk and node carried the call). Recovery and clean-up
-- touch only rows of the pools a node holds; rows from before this migration (pool NULL)
-- belong to the default pool 'main'.

CREATE TABLE nodes (
    node_id      text        PRIMARY KEY CHECK (node_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    instance     uuid        NOT NULL,
    host         text        NOT NULL CHECK (btrim(host) <> ''),
    pid          integer     NOT NULL CHECK (pid > 0),
    pools        text[]      NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL,
    stopped_at   timestamptz
);

CREATE TABLE leases (
    name        text        PRIMARY KEY CHECK (name ~ '^[a-z]+:[A-Za-z0-9_.-]{1,64}$'),
    node_id     text        NOT NULL REFERENCES nodes (node_id),
    token       bigint      NOT NULL CHECK (token > 0),
    lease_until timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leases_node_idx ON leases (node_id);

COMMENT ON TABLE nodes IS 'HitCall processes (nodes) by node id: the instance running under it, its host and pid, the pools it may drive (home first) and its lease (live while lease_until > now()).';
COMMENT ON COLUMN nodes.instance IS 'This run of the process (a new uuid at every start): a second process with the same node id is refused while the row''s lease is live.';
COMMENT ON COLUMN nodes.lease_until IS 'The node is live until then (the database''s clock); renewed every lease/3 with the leases it holds.';
COMMENT ON COLUMN nodes.stopped_at IS 'Set by a clean stop (its leases released at once); NULL while running or after a crash.';
COMMENT ON TABLE leases IS 'Leases held by nodes: pool:<name> is the right to drive that Asterisk. token is the fencing token (+1 every time the lease is taken anew); the originate claim checks it.';

-- Which pool (Asterisk) and node a row belongs to.
ALTER TABLE call_attempts ADD COLUMN pool text, ADD COLUMN node_id text;
ALTER TABLE live_attempts ADD COLUMN pool text, ADD COLUMN node_id text;
ALTER TABLE agents ADD COLUMN pool text, ADD COLUMN node_id text;
ALTER TABLE preview_offers ADD COLUMN pool text, ADD COLUMN node_id text;
ALTER TABLE monitoring_sessions ADD COLUMN pool text, ADD COLUMN node_id text;

COMMENT ON COLUMN call_attempts.pool IS 'The Asterisk (pool) the call was on; NULL: before several nodes, the default pool main.';
COMMENT ON COLUMN call_attempts.node_id IS 'The node that wrote the call (for a call adopted after a failover, the node that followed it to its end).';
COMMENT ON COLUMN live_attempts.pool IS 'The Asterisk (pool) the call is on; NULL: the default pool main. Restart recovery of a pool touches only its rows.';
COMMENT ON COLUMN live_attempts.node_id IS 'The node following the call (set again when another node adopts it).';
COMMENT ON COLUMN agents.pool IS 'The Asterisk (pool) the agent''s phone logged in on last; NULL: the default pool main.';
COMMENT ON COLUMN agents.node_id IS 'The node that followed the agent''s phone last.';
COMMENT ON COLUMN preview_offers.pool IS 'The pool of the agent the contact was offered to; NULL: the default pool main.';
COMMENT ON COLUMN monitoring_sessions.pool IS 'The Asterisk (pool) of the monitored call; NULL: the default pool main.';

-- SELECT * in a view is expanded when the view is created: made again with the new columns.
DROP VIEW all_attempts;
CREATE VIEW all_attempts AS
    SELECT * FROM live_attempts
    UNION ALL
    SELECT * FROM call_attempts;
COMMENT ON VIEW all_attempts IS 'Every attempt, live or ended (an attempt is in exactly one of the two tables).';
