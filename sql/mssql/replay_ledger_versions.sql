-- `quarantine replay`: every version of one source key the flow has staged (agent_ledger), so that an older
-- version is not staged after a newer one. One lookup on the ledger's unique index (flow, source_key, ...).
-- Parameters: :flow, :source_key
SELECT source_version
FROM {{ ledger_table }}
WHERE flow = :flow AND source_key = :source_key
