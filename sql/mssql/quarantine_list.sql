-- `quarantine list`: a flow's quarantined source rows, whether replayed or not, oldest first. Read-only.
-- Parameters: :flow
SELECT quarantine_id, flow, source_key, source_version, quarantined_at, reason, replayed_at, replay_batch_id,
       replay_outcome
FROM {{ quarantine_table }}
WHERE flow = :flow
ORDER BY quarantine_id
