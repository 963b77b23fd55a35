-- Append to the staging table exactly the rows this batch just recorded in the ledger (ledger_insert.sql, same
-- transaction): nothing is ever updated, and nothing the import job wrote is touched.
{% if vendor %}
-- {{ staging_table }} is the ERP vendor's interface table: only its own columns are written{% if reference %}, and
-- {{ reference }} gets the ledger entry's id, which traces an import outcome back to the MES row{% endif %}.
{% endif %}
-- The batch's entries are found through the ledger's (flow, staged_at) index: ledger_insert.sql gave them all this
-- :staged_at, the same bound value, so the read is one index range of the batch's size, not a scan of the ledger.
-- Parameters: :batch_id, :flow, :staged_at (the value ledger_insert.sql wrote)
INSERT INTO {{ staging_table }} ({{ written | join(', ') }})
SELECT {{ values | join(', ') }}
FROM {{ batch_table }} b
JOIN {{ ledger_table }} l
  ON l.flow = b.stg_flow AND l.source_key = b.stg_source_key AND l.source_version = b.stg_source_version
WHERE l.flow = :flow AND l.staged_at = :staged_at AND l.batch_id = :batch_id
