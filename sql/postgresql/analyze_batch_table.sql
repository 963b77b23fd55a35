-- Statistics for the batch table just loaded (its row count, and that every row is of this batch and flow), so that the
-- planner joins it to the ledger entries write_staging.sql makes by hash, not by a nested loop over a table it
-- would guess holds a few rows: PostgreSQL never analyzes a temporary table on its own. Run before the statements
-- that join the batch table (write_staging.sql; write_staging_new.sql for a vendor table's reference), not before
-- a first try without a join, which scans it once. A few ms for 10,000 rows.
ANALYZE {{ batch_table }} (stg_batch_id, stg_flow)
