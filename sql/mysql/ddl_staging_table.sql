-- Staging (interface) table of one flow: control columns first (fixed names, relied on by ERP import
-- jobs), then the mapped columns. Append-only: the agent inserts, the import job updates stg_status.
-- Source keys and versions compare byte for byte (utf8mb4_bin): 'A-1' and 'a-1' are different rows.
-- The unique key is a safety net (agent_ledger decides what is staged). It leads with the version: a batch's rows
-- come in watermark order, so each insert lands at the end of that index rather than on a random page of it
-- (the same columns, the same uniqueness; a table made by an earlier version, key first, works the same).
CREATE TABLE IF NOT EXISTS {{ staging_table }} (
    stg_id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    stg_batch_id varchar(40) NOT NULL,
    stg_flow varchar(64) COLLATE utf8mb4_bin NOT NULL,
    stg_source_key varchar(256) COLLATE utf8mb4_bin NOT NULL,
    stg_source_version varchar(128) COLLATE utf8mb4_bin NOT NULL,
    stg_change char(1) NOT NULL DEFAULT 'U',
    stg_status varchar(16) NOT NULL DEFAULT 'PENDING',
    stg_error text NULL,
    stg_loaded_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
{% for c in columns %}
    {{ c.name }} {{ c.type }} {{ 'NULL' if c.nullable else 'NOT NULL' }},
{% endfor %}
    CONSTRAINT {{ unique_name }} UNIQUE (stg_flow, stg_source_version, stg_source_key),
    INDEX {{ pending_index }} (stg_status, stg_loaded_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
