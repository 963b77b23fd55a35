-- `quarantine replay`: a quarantined row is done, in the transaction that staged it (or found a newer version
-- of its key staged): when, by which batch (agent_run.batch_id, stg_batch_id), and how ('staged' or
-- 'superseded'). A row another replay marked first is left as it is.
-- Parameters: :replayed_at (UTC), :batch_id, :replay_outcome, :quarantine_id
UPDATE {{ quarantine_table }}
SET replayed_at = :replayed_at, replay_batch_id = :batch_id, replay_outcome = :replay_outcome
WHERE quarantine_id = :quarantine_id AND replayed_at IS NULL
