-- Start-up check: what this login can do beyond the grants of `mes-erp-agent sql grants`, from the catalog.
-- One row per excess right; no rows when the login has the grants (or less). Read-only.
-- Privileges that reach the login through a role are not listed by information_schema and not checked.
-- Parameters: :staging_schema (the system's staging database; '' when the agent only reads this system)
SELECT 'global privilege' AS finding, p.PRIVILEGE_TYPE AS object_name
FROM information_schema.USER_PRIVILEGES p
WHERE p.GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
  AND p.PRIVILEGE_TYPE <> 'USAGE'
UNION ALL
SELECT 'database-wide privilege', CONCAT(p.TABLE_SCHEMA, ': ', p.PRIVILEGE_TYPE)
FROM information_schema.SCHEMA_PRIVILEGES p
WHERE p.GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
  AND NOT (p.TABLE_SCHEMA = :staging_schema AND p.PRIVILEGE_TYPE = 'CREATE TEMPORARY TABLES')
UNION ALL
SELECT 'table privilege', CONCAT(p.TABLE_SCHEMA, '.', p.TABLE_NAME, ': ', p.PRIVILEGE_TYPE)
FROM information_schema.TABLE_PRIVILEGES p
WHERE p.GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
  AND p.PRIVILEGE_TYPE <> 'SELECT'
  AND NOT (p.TABLE_SCHEMA = :staging_schema
           AND (p.PRIVILEGE_TYPE = 'INSERT' OR (p.PRIVILEGE_TYPE = 'UPDATE' AND p.TABLE_NAME IN ('agent_watermark', 'agent_holder'))
                OR (p.PRIVILEGE_TYPE = 'DELETE' AND p.TABLE_NAME IN ('agent_ledger', 'agent_holder'))))
UNION ALL
SELECT 'column privilege', CONCAT(p.TABLE_SCHEMA, '.', p.TABLE_NAME, '.', p.COLUMN_NAME, ': ', p.PRIVILEGE_TYPE)
FROM information_schema.COLUMN_PRIVILEGES p
WHERE p.GRANTEE = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')
  AND p.PRIVILEGE_TYPE <> 'SELECT'
  AND NOT (p.TABLE_SCHEMA = :staging_schema AND p.TABLE_NAME = 'agent_quarantine' AND p.PRIVILEGE_TYPE = 'UPDATE'
           AND p.COLUMN_NAME IN ('reason', 'replayed_at', 'replay_batch_id', 'replay_outcome'))
ORDER BY 1, 2
