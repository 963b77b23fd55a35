-- A source row that failed mapping or validation, with the reason. Recorded once per source version.
-- Parameters: :flow, :source_key, :source_version, :batch_id, :source_row (JSON), :reason
INSERT INTO {{ quarantine_table }} (flow, source_key, source_version, batch_id, source_row, reason)
SELECT :flow, :source_key, :source_version, :batch_id, :source_row, :reason FROM DUAL
WHERE NOT EXISTS (
    SELECT 1 FROM {{ quarantine_table }} q
    WHERE q.flow = :flow AND q.source_key = :source_key AND q.source_version = :source_version
)
