-- Rows already in {{ staging_name }} that agent_ledger does not know (an installation upgraded from a version
-- without the ledger) are recorded as staged, so that no re-read stages them again. On a new table: no rows.
INSERT INTO {{ ledger_table }} (flow, source_key, source_version, batch_id, staged_at)
SELECT s.stg_flow, s.stg_source_key, s.stg_source_version, s.stg_batch_id, s.stg_loaded_at
FROM {{ staging_table }} s
WHERE NOT EXISTS (
    SELECT 1 FROM {{ ledger_table }} l
    WHERE l.flow = s.stg_flow AND l.source_key = s.stg_source_key AND l.source_version = s.stg_source_version
)
