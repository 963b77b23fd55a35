-- The agent no longer holds the flow (it released the lock, or lost its lock session); at a clean stop also its
-- own row, flow '*'.
-- Parameters: :flow, :agent_id
DELETE FROM {{ holder_table }} WHERE flow = :flow AND agent_id = :agent_id
