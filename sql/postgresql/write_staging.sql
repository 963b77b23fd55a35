-- One statement records in the agent's ledger each (flow, source key, source version) of the batch it has not
-- staged before, and appends exactly those rows to the staging table: nothing is ever updated, and nothing the
-- import job wrote is touched. The ledger, not the staging table (which the ERP import job may empty or update),
-- says what was staged; a re-read row (overlap window, a retry after a crash) is already there and is skipped.
-- ON CONFLICT on the ledger's unique key skips it while inserting (one index probe per row, the insert's own);
-- RETURNING hands the new entries straight to the staging insert, which joins them to the batch (a hash join of
-- two batch-sized sets, after analyze_batch_table.sql): agent_ledger is never read. Both sides hold this flow's
-- rows only, so the join is on key and version: a flow condition there would make the planner guess a few rows
-- and loop over the batch table once per entry.
{% if vendor %}
-- {{ staging_table }} is the ERP vendor's interface table: only its own columns are written{% if reference %}, and
-- {{ reference }} gets the ledger entry's id, which traces an import outcome back to the MES row{% endif %}.
{% endif %}
-- Parameters: :batch_id, :flow (this batch's rows in the batch table), :staged_at (UTC)
WITH l AS (
    INSERT INTO {{ ledger_table }} (flow, source_key, source_version, batch_id, staged_at)
    SELECT b.stg_flow, b.stg_source_key, b.stg_source_version, b.stg_batch_id, :staged_at
    FROM {{ batch_table }} b
    WHERE b.stg_batch_id = :batch_id AND b.stg_flow = :flow
    ON CONFLICT (flow, source_key, source_version) DO NOTHING
    RETURNING entry_id, source_key, source_version
)
INSERT INTO {{ staging_table }} ({{ written | join(', ') }})
SELECT {{ values | join(', ') }}
FROM {{ batch_table }} b
JOIN l ON l.source_key = b.stg_source_key AND l.source_version = b.stg_source_version
WHERE b.stg_batch_id = :batch_id AND b.stg_flow = :flow
