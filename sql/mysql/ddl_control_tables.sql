-- The agent's own bookkeeping, in the staging schema: where each flow is (agent_watermark), what each
-- batch did (agent_run), the source rows that failed mapping or validation (agent_quarantine), and every
-- (flow, source key, source version) it staged (agent_ledger: the duplicate check, whatever the ERP import
-- job does to the staging rows).
-- agent_holder: which agent (host, pid) holds each flow's lock, with its heartbeat (`status`; several agents).
CREATE TABLE IF NOT EXISTS {{ watermark_table }} (
    flow varchar(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    watermark_columns varchar(1000) NOT NULL,
    watermark_values text NOT NULL,
    revision bigint NOT NULL,
    updated_at datetime(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS {{ run_table }} (
    run_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    batch_id varchar(40) NOT NULL,
    flow varchar(64) COLLATE utf8mb4_bin NOT NULL,
    started_at datetime(6) NOT NULL,
    finished_at datetime(6) NOT NULL,
    rows_read int NOT NULL,
    rows_written int NOT NULL,
    rows_duplicate int NOT NULL,
    rows_quarantined int NOT NULL,
    watermark_before text NULL,
    watermark_after text NULL,
    outcome varchar(16) NOT NULL,
    message text NULL,
    INDEX {{ run_index }} (flow, run_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS {{ quarantine_table }} (
    quarantine_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    flow varchar(64) COLLATE utf8mb4_bin NOT NULL,
    source_key varchar(256) COLLATE utf8mb4_bin NOT NULL,
    source_version varchar(128) COLLATE utf8mb4_bin NOT NULL,
    batch_id varchar(40) NOT NULL,
    source_row longtext NOT NULL,
    reason text NOT NULL,
    quarantined_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    replayed_at datetime(6) NULL,
    replay_batch_id varchar(40) NULL,
    replay_outcome varchar(16) NULL,
    CONSTRAINT {{ quarantine_unique }} UNIQUE (flow, source_key, source_version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS {{ ledger_table }} (
    entry_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    flow varchar(64) COLLATE utf8mb4_bin NOT NULL,
    source_key varchar(256) COLLATE utf8mb4_bin NOT NULL,
    source_version varchar(128) COLLATE utf8mb4_bin NOT NULL,
    batch_id varchar(40) NOT NULL,
    staged_at datetime(6) NOT NULL,
    CONSTRAINT {{ ledger_unique }} UNIQUE (flow, source_key, source_version),
    INDEX {{ ledger_index }} (flow, staged_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE IF NOT EXISTS {{ holder_table }} (
    flow varchar(64) COLLATE utf8mb4_bin NOT NULL,
    agent_id varchar(100) COLLATE utf8mb4_bin NOT NULL,
    host varchar(255) NOT NULL,
    pid integer NOT NULL,
    session_id varchar(20) NULL,
    since datetime(6) NOT NULL,
    heartbeat_at datetime(6) NOT NULL,
    PRIMARY KEY (flow, agent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
