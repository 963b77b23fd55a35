-- A session-private #temp table for one batch (tempdb): the control columns typed as in agent_ledger,
-- the mapped columns as in the staging table (which may be the ERP vendor's own interface table).
SELECT l.batch_id AS stg_batch_id, l.flow AS stg_flow, l.source_key AS stg_source_key,
       l.source_version AS stg_source_version, CAST(NULL AS nchar(1)) AS stg_change{% for c in mapped %}, s.{{ c }}{% endfor %}

INTO {{ batch_table }}
FROM {{ ledger_table }} l CROSS JOIN {{ staging_table }} s WHERE 1 = 0
