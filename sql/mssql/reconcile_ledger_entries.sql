-- Reconciliation, one narrowed bucket: the (key, version) pairs agent_ledger and agent_quarantine hold for it,
-- and whether a ledger entry is its key's latest (a delete candidate when the source no longer has it).
-- Parameters: :flow, :lower_text, :upper_text (version text bounds, [lower, upper))
SELECT l.source_key, l.source_version, 'L' AS origin,
       CASE WHEN EXISTS (SELECT 1 FROM {{ ledger_table }} n WHERE n.flow = l.flow AND n.source_key = l.source_key
                         AND n.entry_id > l.entry_id) THEN 0 ELSE 1 END AS is_current
FROM {{ ledger_table }} l
WHERE l.flow = :flow AND l.source_version >= :lower_text AND l.source_version < :upper_text
UNION ALL
SELECT q.source_key, q.source_version, 'Q' AS origin, 0 AS is_current
FROM {{ quarantine_table }} q
WHERE q.flow = :flow AND q.source_version >= :lower_text AND q.source_version < :upper_text
