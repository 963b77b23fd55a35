-- Staging (interface) table of one flow: control columns first (fixed names, relied on by ERP import
-- jobs), then the mapped columns. Append-only: the agent inserts, the import job updates stg_status.
-- Source keys and versions compare byte for byte (BIN2 collation): 'A-1' and 'a-1' are different rows.
-- The unique key is a safety net (agent_ledger decides what is staged). It leads with the version: a batch's rows
-- come in watermark order, so each insert lands at the end of that index rather than on a random page of it
-- (the same columns, the same uniqueness; a table made by an earlier version, key first, works the same).
IF OBJECT_ID(N'{{ staging_name }}', N'U') IS NULL
CREATE TABLE {{ staging_table }} (
    stg_id bigint IDENTITY(1,1) NOT NULL PRIMARY KEY,
    stg_batch_id nvarchar(40) NOT NULL,
    stg_flow nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    stg_source_key nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
    stg_source_version nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
    stg_change nchar(1) NOT NULL DEFAULT N'U',
    stg_status nvarchar(16) NOT NULL DEFAULT N'PENDING',
    stg_error nvarchar(max) NULL,
    stg_loaded_at datetime2(7) NOT NULL DEFAULT SYSUTCDATETIME(),
{% for c in columns %}
    {{ c.name }} {{ c.type }} {{ 'NULL' if c.nullable else 'NOT NULL' }},
{% endfor %}
    CONSTRAINT {{ unique_name }} UNIQUE (stg_flow, stg_source_version, stg_source_key)
);
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'{{ pending_index_name }}' AND object_id = OBJECT_ID(N'{{ staging_name }}'))
CREATE INDEX {{ pending_index }} ON {{ staging_table }} (stg_status, stg_loaded_at)
