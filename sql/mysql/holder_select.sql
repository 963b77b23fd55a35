-- Who holds which flow, with their last heartbeat: every lock round (how many agents are alive, to share the
-- flows) and `mes-erp-agent status`. flow '*' rows are the agents themselves.
-- No parameters.
SELECT flow, agent_id, host, pid, session_id, since, heartbeat_at FROM {{ holder_table }} ORDER BY flow, heartbeat_at DESC
