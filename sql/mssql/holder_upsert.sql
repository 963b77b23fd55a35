-- agent_holder: which agent holds which flow, for `status` and for sharing the flows fairly (the lock is the truth,
-- this table only shows it). Written on the agent's pooled connection, autocommitted, when it takes a flow and on
-- every lock round (heartbeat). flow '*' is the agent itself (an agent holding no flow is still counted).
-- Parameters: :flow, :agent_id, :host, :pid, :session_id (the lock session, NULL on SQLite), :since, :heartbeat_at (UTC)
MERGE INTO {{ holder_table }} AS h
USING (SELECT :flow AS flow, :agent_id AS agent_id) AS s ON h.flow = s.flow AND h.agent_id = s.agent_id
WHEN MATCHED THEN UPDATE SET heartbeat_at = :heartbeat_at, session_id = :session_id
WHEN NOT MATCHED THEN INSERT (flow, agent_id, host, pid, session_id, since, heartbeat_at)
    VALUES (:flow, :agent_id, :host, :pid, :session_id, :since, :heartbeat_at);
