-- Forget ledger entries older than `ledger.keep` (counted back from the flow's newest entry): no poll re-reads
-- rows that far back (check-config requires keep > overlap + lag). Scheduled every `ledger.prune_every`.
-- Parameters: :flow, :cutoff (UTC)
DELETE FROM {{ ledger_table }} WHERE flow = :flow AND staged_at < :cutoff
