-- A source row that failed mapping or validation, with the reason. Recorded once per source version.
-- Parameters: :flow, :source_key, :source_version, :batch_id, :source_row (JSON), :reason
INSERT INTO {{ quarantine_table }} (flow, source_key, source_version, batch_id, source_row, reason)
VALUES (:flow, :source_key, :source_version, :batch_id, :source_row, :reason)
ON CONFLICT (flow, source_key, source_version) DO NOTHING
