-- The session's temporary table for this flow's batches, to COPY each batch into: the control columns typed as in
-- agent_ledger, the mapped columns as in the staging table (which may be the ERP vendor's own interface table).
-- Made once per session and kept (IF NOT EXISTS: a notice, no catalog write, when it is there): a table made and
-- dropped per batch leaves dead rows in pg_class and pg_attribute that slow every catalog read, the drift gate's
-- among them. ON COMMIT DELETE ROWS empties it at the end of each transaction (in place, no new file); its name
-- carries a digest of the flow and its columns, so a flow whose mapping changed gets a table of its new shape.
-- Needs the TEMPORARY privilege on the database (see grants.sql); it is gone when the session ends.
CREATE TEMPORARY TABLE IF NOT EXISTS {{ batch_table }} ON COMMIT DELETE ROWS AS
SELECT l.batch_id AS stg_batch_id, l.flow AS stg_flow, l.source_key AS stg_source_key,
       l.source_version AS stg_source_version, CAST(NULL AS char(1)) AS stg_change{% for c in mapped %}, s.{{ c }}{% endfor %}

FROM {{ ledger_table }} l CROSS JOIN {{ staging_table }} s WITH NO DATA
