-- The staging schema: the only schema the agent writes to. Run once by a DBA.
IF SCHEMA_ID(N'{{ schema_name }}') IS NULL EXEC(N'CREATE SCHEMA {{ schema }}')
