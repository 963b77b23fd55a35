-- Delete detection: the oldest version agent_ledger remembers for the flow (tombstones `D|...` excluded), where
-- the comparison with the source starts.
-- Parameters: :flow, :tombstone ('D', the first character of a tombstone's version)
SELECT MIN(source_version) AS oldest
FROM {{ ledger_table }}
WHERE flow = :flow AND source_version < :tombstone
