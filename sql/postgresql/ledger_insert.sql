-- Record in the agent's ledger each (flow, source key, source version) of the batch it has not staged before.
-- The ledger, not the staging table (which the ERP import job may empty or update), says what was staged; a
-- re-read row (overlap window, a retry after a crash) is already there and is skipped.
-- Parameters: :staged_at (UTC)
INSERT INTO {{ ledger_table }} (flow, source_key, source_version, batch_id, staged_at)
SELECT b.stg_flow, b.stg_source_key, b.stg_source_version, b.stg_batch_id, :staged_at
FROM {{ batch_table }} b
WHERE NOT EXISTS (
    SELECT 1 FROM {{ ledger_table }} l
    WHERE l.flow = b.stg_flow
      AND l.source_key = b.stg_source_key
      AND l.source_version = b.stg_source_version
)
