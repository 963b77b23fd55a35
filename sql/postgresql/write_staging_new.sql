-- A batch's first try, inside a savepoint, for a batch whose rows were read after the flow's watermark (a poll, an
-- initial load; never an overlap window, a backfill or a replay): record each row in the agent's ledger and append
-- them all to the staging table, without looking for earlier ledger entries (no ON CONFLICT check, no join of the
-- new entries with the batch). When one row of the batch was staged before (after a watermark set back by hand),
-- agent_ledger's unique key (flow, source_key, source_version) refuses the whole statement, nothing of it stays
-- (the savepoint is rolled back), and write_staging.sql stages exactly the rows not staged before. Which of the two
-- runs changes how fast a batch is written, never what is written.
-- PostgreSQL runs the data-modifying WITH to completion whether or not the insert below reads it.
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
    RETURNING entry_id, source_key, source_version
)
INSERT INTO {{ staging_table }} ({{ written | join(', ') }})
SELECT {{ values | join(', ') }}
FROM {{ batch_table }} b
{% if reference %}
JOIN l ON l.source_key = b.stg_source_key AND l.source_version = b.stg_source_version
{% endif %}
WHERE b.stg_batch_id = :batch_id AND b.stg_flow = :flow
