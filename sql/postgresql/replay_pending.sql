-- `quarantine replay`: the next page of a flow's quarantined rows not replayed yet, with the source row as
-- read (JSON). Rows that still fail stay unreplayed, so the page moves on by quarantine_id.
-- Parameters: :flow, :after_id (the last quarantine_id of the previous page; 0 at first), :batch_size
SELECT quarantine_id, source_key, source_version, source_row, reason
FROM {{ quarantine_table }}
WHERE flow = :flow AND replayed_at IS NULL AND quarantine_id > :after_id
ORDER BY quarantine_id
LIMIT :batch_size
