-- When the flow last staged a row: pruning counts `ledger.keep` back from it, so a quiet MES keeps its entries.
-- Parameters: :flow
SELECT MAX(staged_at) AS newest FROM {{ ledger_table }} WHERE flow = :flow
