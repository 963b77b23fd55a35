-- Staging (interface) table of one flow: control columns first (fixed names, relied on by ERP import
-- jobs), then the mapped columns. Append-only: the agent inserts, the import job updates stg_status.
-- The unique key is a safety net (agent_ledger decides what is staged). It leads with the version: a batch's rows
-- come in watermark order, so each insert lands at the end of that index rather than on a random page of it
-- (the same columns, the same uniqueness; a table made by an earlier version, key first, works the same).
CREATE TABLE IF NOT EXISTS {{ staging_table }} (
    stg_id INTEGER PRIMARY KEY AUTOINCREMENT,
    stg_batch_id VARCHAR(40) NOT NULL,
    stg_flow VARCHAR(64) NOT NULL,
    stg_source_key VARCHAR(256) NOT NULL,
    stg_source_version VARCHAR(128) NOT NULL,
    stg_change CHAR(1) NOT NULL DEFAULT 'U',
    stg_status VARCHAR(16) NOT NULL DEFAULT 'PENDING',
    stg_error TEXT NULL,
    stg_loaded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
{% for c in columns %}
    {{ c.name }} {{ c.type }} {{ 'NULL' if c.nullable else 'NOT NULL' }},
{% endfor %}
    CONSTRAINT {{ unique_name }} UNIQUE (stg_flow, stg_source_version, stg_source_key)
);
CREATE INDEX IF NOT EXISTS {{ schema }}.{{ pending_index }} ON {{ staging_table_unqualified }} (stg_status, stg_loaded_at)
