-- Append the batch to the staging table. A row already there (same flow, source key and source version:
-- a re-read after a crash or in the overlap window) is skipped, never updated.
INSERT INTO {{ staging_table }} ({{ columns | join(', ') }})
SELECT {% for c in columns %}b.{{ c }}{% if not loop.last %}, {% endif %}{% endfor %}

FROM {{ batch_table }} b
WHERE NOT EXISTS (
    SELECT 1 FROM {{ staging_table }} s
    WHERE s.stg_flow = b.stg_flow
      AND s.stg_source_key = b.stg_source_key
      AND s.stg_source_version = b.stg_source_version
)
