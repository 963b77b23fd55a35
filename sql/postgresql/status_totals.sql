-- Totals of a flow's batches, for `status`.
-- Parameters: :flow
SELECT COUNT(*) AS batches, SUM(rows_written) AS rows_written, SUM(rows_quarantined) AS rows_quarantined
FROM {{ run_table }}
WHERE flow = :flow AND outcome = 'ok'
