-- agent_holder: which agent holds which flow, for `status` and for sharing the flows fairly (the lock is the truth,
-- this table only shows it). Written on the agent's pooled connection, autocommitted, when it takes a flow and on
-- every lock round (heartbeat). flow '*' is the agent itself (an agent holding no flow is still counted).
-- Parameters: :flow, :agent_id, :host, :pid, :session_id (the lock session, NULL on SQLite), :since, :heartbeat_at (UTC)
INSERT INTO {{ holder_table }} (flow, agent_id, host, pid, session_id, since, heartbeat_at)
VALUES (:flow, :agent_id, :host, :pid, :session_id, :since, :heartbeat_at)
ON CONFLICT (flow, agent_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at, session_id = EXCLUDED.session_id
