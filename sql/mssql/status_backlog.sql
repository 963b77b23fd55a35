-- Staging rows the ERP import job has not picked up yet, for `status`.
-- Parameters: :flow
SELECT COUNT(*) AS pending_rows, MIN(stg_loaded_at) AS oldest_pending
FROM {{ staging_table }}
WHERE stg_flow = :flow AND stg_status = 'PENDING'
