-- Upgrade of an agent_quarantine made by a version before `quarantine replay` (CREATE TABLE IF NOT EXISTS leaves
-- an existing table as it is): its replay columns. `sql ddl` emits this only when the live table lacks them;
-- without a connection (`--dialect`) it prints it as a note. Take the schema snapshot again afterwards
-- (`snapshot --accept`): the drift gate sees the new columns.
ALTER TABLE {{ quarantine_table }}
    ADD COLUMN replayed_at timestamp(6) with time zone NULL,
    ADD COLUMN replay_batch_id varchar(40) NULL,
    ADD COLUMN replay_outcome varchar(16) NULL
