-- The agent's own bookkeeping, in the staging schema: where each flow is (agent_watermark), what each
-- batch did (agent_run), the source rows that failed mapping or validation (agent_quarantine), and every
-- (flow, source key, source version) it staged (agent_ledger: the duplicate check, whatever the ERP import
-- job does to the staging rows).
-- agent_holder: which agent (host, pid) holds each flow's lock, with its heartbeat (`status`; several agents).
CREATE TABLE IF NOT EXISTS {{ watermark_table }} (
    flow VARCHAR(64) NOT NULL PRIMARY KEY,
    watermark_columns VARCHAR(1000) NOT NULL,
    watermark_values TEXT NOT NULL,
    revision INTEGER NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS {{ run_table }} (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id VARCHAR(40) NOT NULL,
    flow VARCHAR(64) NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    rows_read INTEGER NOT NULL,
    rows_written INTEGER NOT NULL,
    rows_duplicate INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL,
    watermark_before TEXT NULL,
    watermark_after TEXT NULL,
    outcome VARCHAR(16) NOT NULL,
    message TEXT NULL
);
CREATE INDEX IF NOT EXISTS {{ schema }}.{{ run_index }} ON {{ run_table_unqualified }} (flow, run_id);
CREATE TABLE IF NOT EXISTS {{ quarantine_table }} (
    quarantine_id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow VARCHAR(64) NOT NULL,
    source_key VARCHAR(256) NOT NULL,
    source_version VARCHAR(128) NOT NULL,
    batch_id VARCHAR(40) NOT NULL,
    source_row TEXT NOT NULL,
    reason TEXT NOT NULL,
    quarantined_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    replayed_at TIMESTAMP NULL,
    replay_batch_id VARCHAR(40) NULL,
    replay_outcome VARCHAR(16) NULL,
    CONSTRAINT {{ quarantine_unique }} UNIQUE (flow, source_key, source_version)
);
CREATE TABLE IF NOT EXISTS {{ ledger_table }} (
    entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow VARCHAR(64) NOT NULL,
    source_key VARCHAR(256) NOT NULL,
    source_version VARCHAR(128) NOT NULL,
    batch_id VARCHAR(40) NOT NULL,
    staged_at TIMESTAMP NOT NULL,
    CONSTRAINT {{ ledger_unique }} UNIQUE (flow, source_key, source_version)
);
CREATE INDEX IF NOT EXISTS {{ schema }}.{{ ledger_index }} ON {{ ledger_table_unqualified }} (flow, staged_at);
CREATE TABLE IF NOT EXISTS {{ holder_table }} (
    flow VARCHAR(64) NOT NULL,
    agent_id VARCHAR(100) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    session_id VARCHAR(20) NULL,
    since TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    PRIMARY KEY (flow, agent_id)
)
