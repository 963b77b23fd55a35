-- Start-up check: what this login can do beyond the grants of `mes-erp-agent sql grants`, from the catalog.
-- One row per excess right; no rows when the login has the grants (or less). Read-only.
-- Parameters: :staging_schema (the system's staging schema; '' when the agent only reads this system)
SELECT N'sysadmin' AS finding, SUSER_SNAME() AS object_name
WHERE IS_SRVROLEMEMBER(N'sysadmin') = 1
UNION ALL
SELECT N'db_owner', DB_NAME()
WHERE IS_ROLEMEMBER(N'db_owner') = 1
UNION ALL
SELECT N'member of a writing fixed role', r.name
FROM sys.database_principals r
WHERE r.type = 'R' AND IS_ROLEMEMBER(r.name) = 1
  AND r.name IN (N'db_datawriter', N'db_ddladmin', N'db_securityadmin', N'db_accessadmin', N'db_backupoperator')
UNION ALL
SELECT N'database-wide permission', p.permission_name
FROM sys.fn_my_permissions(NULL, N'DATABASE') p
WHERE p.permission_name IN (N'CONTROL', N'ALTER', N'ALTER ANY SCHEMA', N'ALTER ANY USER', N'ALTER ANY ROLE',
                            N'CREATE TABLE', N'CREATE VIEW', N'CREATE PROCEDURE', N'CREATE FUNCTION',
                            N'CREATE SCHEMA', N'INSERT', N'UPDATE', N'DELETE', N'EXECUTE', N'TAKE OWNERSHIP',
                            N'IMPERSONATE', N'BACKUP DATABASE')
UNION ALL
SELECT N'may write outside the staging schema', s.name + N'.' + t.name
FROM sys.tables t
JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name <> :staging_schema
  AND (HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'INSERT') = 1
       OR HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'UPDATE') = 1
       OR HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'DELETE') = 1
       OR HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'ALTER') = 1)
UNION ALL
SELECT N'may delete, alter or update in the staging schema', s.name + N'.' + t.name
FROM sys.tables t
JOIN sys.schemas s ON s.schema_id = t.schema_id
WHERE s.name = :staging_schema
  AND ((t.name NOT IN (N'agent_ledger', N'agent_holder')
            AND HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'DELETE') = 1)
       OR HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'ALTER') = 1
       OR (t.name NOT IN (N'agent_watermark', N'agent_quarantine', N'agent_holder')
           AND HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'UPDATE') = 1)
       OR (t.name = N'agent_quarantine' AND EXISTS (
           SELECT 1 FROM sys.columns col
           WHERE col.object_id = t.object_id
             AND col.name NOT IN (N'reason', N'replayed_at', N'replay_batch_id', N'replay_outcome')
             AND HAS_PERMS_BY_NAME(QUOTENAME(s.name) + N'.' + QUOTENAME(t.name), N'OBJECT', N'UPDATE', col.name, N'COLUMN') = 1)))
ORDER BY 1, 2
