-- `quarantine replay`: a row that still fails with the current mapping stays quarantined, with the new reason.
-- Parameters: :reason, :quarantine_id
UPDATE {{ quarantine_table }}
SET reason = :reason
WHERE quarantine_id = :quarantine_id AND replayed_at IS NULL
