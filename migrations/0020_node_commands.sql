-- Live control from any node: a REST request to pause an agent, hang up a call, transfer,
-- monitor ... may reach a node whose Asterisk does not carry that agent or call. The node
-- that took the request writes a command here, addressed to the node that drives the agent
-- or call (agents.node_id, live_attempts.node_id, monitoring_sessions.node_id), and wakes it
-- with NOTIFY hitcall_node_commands (payload: the target node id). The target takes the
-- command (pending -> running, FOR UPDATE SKIP LOCKED, only before its deadline), runs it on
-- its own Asterisk with the original actor (its audit row names that actor), writes the
-- result or the error and NOTIFYs hitcall_node_command_done (payload: the command id). The
-- caller that waited answers the REST request with it. Nodes never call each other over the
-- network: PostgreSQL carries the command and its answer.
--
--   id           chosen by the caller (uuid)
--   node_id      the node that must run it (no foreign key: the nodes table is its own
--                migration's, and a command outlives nothing but a day)
--   from_node    the node that asked
--   method       what to run, e.g. agent.pause, call.hang_up, monitor.start
--   args         the method's arguments (JSON); they may hold a number (manual dial, a
--                transfer to a number) or a free-text reason, so they are cleared (NULL) as
--                soon as the command is done, failed or expired
--   actor        who asked: {"name", "role", "source_ip"}; the address is dropped when done
--   state        pending (written, not taken), running (taken by its node; at most once),
--                done (result), failed (error), expired (its deadline passed before any node
--                took it: it never runs late)
--   deadline     the command may be taken until then (the database's clock); the caller
--                waits that long for it to be taken
--   taken_at, done_at  when its node took it, and when it was done / failed / expired
--   result       the method's answer (JSON); cleared once the caller has read it
--   error        {"status", "code", "message", "details"} of the error the method raised
--
-- Retention: a command lives a day (for a look at what was asked of which node); the nodes
-- delete older ones (hitcall_pbx.cluster.commands.prune), and clear any args or result a
-- caller left behind after a minute.

CREATE TABLE node_commands (
    id          uuid        PRIMARY KEY,
    node_id     text        NOT NULL CHECK (node_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    from_node   text        NOT NULL CHECK (from_node ~ '^[A-Za-z0-9_.-]{1,64}$'),
    method      text        NOT NULL CHECK (method ~ '^[a-z][a-z_]*(\.[a-z][a-z_]*)*$' AND length(method) <= 64),
    args        jsonb       CHECK (args IS NULL OR jsonb_typeof(args) = 'object'),
    actor       jsonb       NOT NULL CHECK (jsonb_typeof(actor) = 'object'),
    state       text        NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'running', 'done', 'failed', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deadline    timestamptz NOT NULL,
    taken_at    timestamptz,
    done_at     timestamptz,
    result      jsonb,
    error       jsonb       CHECK (error IS NULL OR jsonb_typeof(error) = 'object'),
    CONSTRAINT node_commands_deadline_check CHECK (deadline > created_at),
    CONSTRAINT node_commands_taken CHECK ((taken_at IS NULL) = (state IN ('pending', 'expired'))),
    CONSTRAINT node_commands_finished CHECK ((done_at IS NULL) = (state IN ('pending', 'running'))),
    CONSTRAINT node_commands_failed_has_error CHECK ((error IS NOT NULL) = (state = 'failed')),
    CONSTRAINT node_commands_args_cleared CHECK (args IS NULL OR state IN ('pending', 'running'))
);
-- what a node looks for when woken (and when it starts listening)
CREATE INDEX node_commands_pending_idx ON node_commands (node_id, created_at) WHERE state = 'pending';
CREATE INDEX node_commands_created_idx ON node_commands (created_at);

COMMENT ON TABLE node_commands IS 'Live control carried from the node that took a REST request to the node that drives the agent or call: one row per command (pending, running, done, failed, expired), kept a day; args (they may hold a number) are cleared when the command ends.';
COMMENT ON COLUMN node_commands.args IS 'The method''s arguments; NULL once the command is done, failed or expired (a manual-dial or transfer number is personal data).';
COMMENT ON COLUMN node_commands.deadline IS 'The command is taken only before this (database clock); after it, it is expired and never runs.';
