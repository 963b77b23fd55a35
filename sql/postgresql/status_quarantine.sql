-- Quarantined source rows of a flow not replayed yet (`quarantine replay`) and when the oldest was recorded:
-- `status`, and the running agent's periodic check against `alerts.quarantine.max_rows`.
-- Parameters: :flow
SELECT COUNT(*) AS quarantined_rows, MIN(quarantined_at) AS oldest_quarantined
FROM {{ quarantine_table }}
WHERE flow = :flow AND replayed_at IS NULL
