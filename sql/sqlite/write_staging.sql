-- Append the batch to the staging table. A row already there (same flow, source key and source version:
-- a re-read after a crash or in the overlap window) is skipped, never updated.
INSERT INTO {{ staging_table }} ({{ columns | join(', ') }})
SELECT {{ columns | join(', ') }} FROM {{ batch_table }} WHERE true
ON CONFLICT (stg_flow, stg_source_key, stg_source_version) DO NOTHING
