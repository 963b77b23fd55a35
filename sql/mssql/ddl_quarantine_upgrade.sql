-- Upgrade of an agent_quarantine made by a version before `quarantine replay` (CREATE TABLE IF NOT EXISTS leaves
-- an existing table as it is): its replay columns. `sql ddl` emits this only when the live table lacks them;
-- without a connection (`--dialect`) it prints it as a note. Take the schema snapshot again afterwards
-- (`snapshot --accept`): the drift gate sees the new columns.
ALTER TABLE {{ quarantine_table }}
    ADD replayed_at datetime2(7) NULL, replay_batch_id nvarchar(40) NULL, replay_outcome nvarchar(16) NULL
