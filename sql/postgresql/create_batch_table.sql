-- A session-private temporary table for one batch, to COPY it into: the control columns typed as in
-- agent_ledger, the mapped columns as in the staging table (which may be the ERP vendor's own interface table).
-- Needs the TEMPORARY privilege on the database (see grants.sql); it is gone when the session ends.
CREATE TEMPORARY TABLE {{ batch_table }} AS
SELECT l.batch_id AS stg_batch_id, l.flow AS stg_flow, l.source_key AS stg_source_key,
       l.source_version AS stg_source_version, CAST(NULL AS char(1)) AS stg_change{% for c in mapped %}, s.{{ c }}{% endfor %}

FROM {{ ledger_table }} l CROSS JOIN {{ staging_table }} s WITH NO DATA
