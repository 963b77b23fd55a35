-- Reconciliation: per bucket (the first :prefix characters of stg_source_version, the first watermark column's
-- canonical text), what agent_ledger and agent_quarantine say the source holds now: each key's current version,
-- counted and hashed as reconcile_source_buckets.sql does for the source. A key's current version is its latest
-- ledger entry (a tombstone `D|...` is outside every bucket), unless a quarantined later version replaced it (a
-- row the mapping rejected was seen, not lost). Reads the ledger's (flow, source_key, ...) unique index; the
-- columns compare byte for byte (utf8mb4_bin).
-- Parameters: :flow, :prefix, :lower_text, :upper_text (version text bounds, [lower, upper))
SELECT bucket, COUNT(*) AS row_count, SUM(CAST(CONV(SUBSTRING(MD5(row_text), 1, 8), 16, 10) AS UNSIGNED)) AS checksum
FROM (
    SELECT SUBSTRING(l.source_version, 1, :prefix) AS bucket, CONCAT(l.source_key, '|', l.source_version) AS row_text
    FROM {{ ledger_table }} l
    WHERE l.flow = :flow AND l.source_version >= :lower_text AND l.source_version < :upper_text
      AND NOT EXISTS (SELECT 1 FROM {{ ledger_table }} n
                      WHERE n.flow = l.flow AND n.source_key = l.source_key AND n.entry_id > l.entry_id)
      AND NOT EXISTS (SELECT 1 FROM {{ quarantine_table }} q
                      WHERE q.flow = l.flow AND q.source_key = l.source_key AND q.source_version > l.source_version
                        AND NOT EXISTS (SELECT 1 FROM {{ ledger_table }} r WHERE r.flow = q.flow
                                        AND r.source_key = q.source_key AND r.source_version = q.source_version))
    UNION ALL
    SELECT SUBSTRING(q.source_version, 1, :prefix) AS bucket, CONCAT(q.source_key, '|', q.source_version) AS row_text
    FROM {{ quarantine_table }} q
    WHERE q.flow = :flow AND q.source_version >= :lower_text AND q.source_version < :upper_text
      AND NOT EXISTS (SELECT 1 FROM {{ ledger_table }} n
                      WHERE n.flow = q.flow AND n.source_key = q.source_key
                        AND (n.source_version = q.source_version OR n.source_version > q.source_version))
      AND NOT EXISTS (SELECT 1 FROM {{ quarantine_table }} p
                      WHERE p.flow = q.flow AND p.source_key = q.source_key AND p.source_version > q.source_version)
) AS staged
GROUP BY bucket
