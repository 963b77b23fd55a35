-- Record in the agent's ledger each (flow, source key, source version) of the batch it has not staged before.
-- The ledger, not the staging table (which the ERP import job may empty or update), says what was staged; a
-- re-read row (overlap window, a retry after a crash) is already there and is skipped.
-- ON CONFLICT on the ledger's unique key skips it while inserting (one index probe per row, the insert's own),
-- where a NOT EXISTS anti-join would be planned as a scan of the whole ledger for a large batch.
-- Parameters: :staged_at (UTC)
INSERT INTO {{ ledger_table }} (flow, source_key, source_version, batch_id, staged_at)
SELECT b.stg_flow, b.stg_source_key, b.stg_source_version, b.stg_batch_id, :staged_at
FROM {{ batch_table }} b
ON CONFLICT (flow, source_key, source_version) DO NOTHING
