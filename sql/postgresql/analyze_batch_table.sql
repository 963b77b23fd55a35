-- Statistics for the batch table just loaded (its row count, and that every row is of this batch and flow), so that the
-- planner joins it to the ledger entries write_staging.sql makes by hash, not by a nested loop over a table it
-- would guess holds a few rows: PostgreSQL never analyzes a temporary table on its own. About 1 ms for 10,000 rows.
ANALYZE {{ batch_table }} (stg_batch_id, stg_flow)
