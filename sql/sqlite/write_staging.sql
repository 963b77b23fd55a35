-- Append to the staging table exactly the rows this batch just recorded in the ledger (ledger_insert.sql, same
-- transaction): nothing is ever updated, and nothing the import job wrote is touched.
{% if vendor %}
-- {{ staging_table }} is the ERP vendor's interface table: only its own columns are written{% if reference %}, and
-- {{ reference }} gets the ledger entry's id, which traces an import outcome back to the MES row{% endif %}.
{% endif %}
-- Parameters: :batch_id
INSERT INTO {{ staging_table }} ({{ written | join(', ') }})
SELECT {{ values | join(', ') }}
FROM {{ batch_table }} b
JOIN {{ ledger_table }} l
  ON l.flow = b.stg_flow AND l.source_key = b.stg_source_key AND l.source_version = b.stg_source_version
WHERE l.batch_id = :batch_id
