-- Forget the rows of agents that stopped writing their heartbeat (killed, or cut off): every lock round.
-- Parameters: :stale_before (UTC: now minus locks.stale_after, doubled)
DELETE FROM {{ holder_table }} WHERE heartbeat_at < :stale_before
