-- A session-private temporary table for one batch, to load it into: the control columns typed as in
-- agent_ledger (byte-for-byte collation), the mapped columns as in the staging table (which may be the ERP
-- vendor's own interface table). Needs CREATE TEMPORARY TABLES on the staging schema (see grants.sql).
CREATE TEMPORARY TABLE {{ batch_table }} AS
SELECT l.batch_id AS stg_batch_id, l.flow AS stg_flow, l.source_key AS stg_source_key,
       l.source_version AS stg_source_version, CAST(NULL AS CHAR(1)) AS stg_change{% for c in mapped %}, s.{{ c }}{% endfor %}

FROM {{ ledger_table }} l CROSS JOIN {{ staging_table }} s WHERE 1 = 0
