-- The flow's most recent run or batch, for `status`.
-- Parameters: :flow
SELECT batch_id, started_at, finished_at, rows_read, rows_written, rows_quarantined, outcome, message
FROM {{ run_table }}
WHERE flow = :flow
ORDER BY run_id DESC
LIMIT 1
