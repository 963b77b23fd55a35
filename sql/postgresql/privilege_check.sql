-- Start-up check: what this login can do beyond the grants of `mes-erp-agent sql grants`, from the catalog.
-- One row per excess right; no rows when the login has the grants (or less). Read-only.
-- Parameters: :staging_schema (the system's staging schema; '' when the agent only reads this system)
SELECT 'superuser' AS finding, r.rolname::text AS object_name
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user AND r.rolsuper
UNION ALL
SELECT 'may create roles, databases or replicate', r.rolname::text
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user AND (r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls)
UNION ALL
SELECT 'may create objects (DDL) in schema', n.nspname::text
FROM pg_catalog.pg_namespace n
WHERE pg_catalog.has_schema_privilege(n.oid, 'CREATE') AND n.nspname NOT LIKE 'pg\_%'
UNION ALL
SELECT 'may write outside the staging schema', n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'f') AND n.nspname <> :staging_schema
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
  AND (pg_catalog.has_any_column_privilege(c.oid, 'INSERT') OR pg_catalog.has_any_column_privilege(c.oid, 'UPDATE')
       OR pg_catalog.has_table_privilege(c.oid, 'DELETE') OR pg_catalog.has_table_privilege(c.oid, 'TRUNCATE'))
UNION ALL
SELECT 'may delete, truncate or update in the staging schema', n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = :staging_schema
  AND ((c.relname NOT IN ('agent_ledger', 'agent_holder') AND pg_catalog.has_table_privilege(c.oid, 'DELETE'))
       OR pg_catalog.has_table_privilege(c.oid, 'TRUNCATE')
       OR (c.relname NOT IN ('agent_watermark', 'agent_quarantine', 'agent_holder') AND pg_catalog.has_any_column_privilege(c.oid, 'UPDATE'))
       OR (c.relname = 'agent_quarantine' AND EXISTS (
           SELECT 1 FROM pg_catalog.pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attname NOT IN ('reason', 'replayed_at', 'replay_batch_id', 'replay_outcome')
             AND pg_catalog.has_column_privilege(c.oid, a.attnum, 'UPDATE'))))
UNION ALL
SELECT 'owns (may alter or drop)', n.nspname || '.' || c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
WHERE r.rolname = current_user AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2
