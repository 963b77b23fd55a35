-- The flow's committed watermark (one row per flow). Read at the start of every run, from the ERP side,
-- so the position always comes from the same transaction history as the staging rows.
-- Parameters: :flow
SELECT watermark_columns, watermark_values, revision
FROM {{ watermark_table }}
WHERE flow = :flow
