-- The agent's own bookkeeping, in the staging schema: where each flow is (agent_watermark), what each
-- batch did (agent_run), the source rows that failed mapping or validation (agent_quarantine), and every
-- (flow, source key, source version) it staged (agent_ledger: the duplicate check, whatever the ERP import
-- job does to the staging rows).
-- agent_holder: which agent (host, pid) holds each flow's lock, with its heartbeat (`status`; several agents).
IF OBJECT_ID(N'{{ watermark_name }}', N'U') IS NULL
CREATE TABLE {{ watermark_table }} (
    flow nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL PRIMARY KEY,
    watermark_columns nvarchar(1000) NOT NULL,
    watermark_values nvarchar(max) NOT NULL,
    revision bigint NOT NULL,
    updated_at datetime2(7) NOT NULL
);
IF OBJECT_ID(N'{{ run_name }}', N'U') IS NULL
CREATE TABLE {{ run_table }} (
    run_id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,
    batch_id nvarchar(40) NOT NULL,
    flow nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    started_at datetime2(7) NOT NULL,
    finished_at datetime2(7) NOT NULL,
    rows_read int NOT NULL,
    rows_written int NOT NULL,
    rows_duplicate int NOT NULL,
    rows_quarantined int NOT NULL,
    watermark_before nvarchar(max) NULL,
    watermark_after nvarchar(max) NULL,
    outcome nvarchar(16) NOT NULL,
    message nvarchar(max) NULL,
    INDEX {{ run_index }} (flow, run_id)
);
IF OBJECT_ID(N'{{ quarantine_name }}', N'U') IS NULL
CREATE TABLE {{ quarantine_table }} (
    quarantine_id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,
    flow nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    source_key nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    source_version nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
    batch_id nvarchar(40) NOT NULL,
    source_row nvarchar(max) NOT NULL,
    reason nvarchar(max) NOT NULL,
    quarantined_at datetime2(7) NOT NULL DEFAULT SYSUTCDATETIME(),
    replayed_at datetime2(7) NULL,
    replay_batch_id nvarchar(40) NULL,
    replay_outcome nvarchar(16) NULL,
    CONSTRAINT {{ quarantine_unique }} UNIQUE (flow, source_key, source_version)
);
IF OBJECT_ID(N'{{ ledger_name }}', N'U') IS NULL
CREATE TABLE {{ ledger_table }} (
    entry_id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,
    flow nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    source_key nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    source_version nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
    batch_id nvarchar(40) NOT NULL,
    staged_at datetime2(7) NOT NULL,
    CONSTRAINT {{ ledger_unique }} UNIQUE (flow, source_key, source_version),
    INDEX {{ ledger_index }} (flow, staged_at)
);
IF OBJECT_ID(N'{{ holder_name }}', N'U') IS NULL
CREATE TABLE {{ holder_table }} (
    flow nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    agent_id nvarchar(100) COLLATE Latin1_General_100_BIN2 NOT NULL,
    host nvarchar(255) NOT NULL,
    pid int NOT NULL,
    session_id nvarchar(20) NULL,
    since datetime2(7) NOT NULL,
    heartbeat_at datetime2(7) NOT NULL,
    PRIMARY KEY (flow, agent_id)
)
