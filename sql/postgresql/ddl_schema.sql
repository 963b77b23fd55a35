-- The staging schema: the only schema the agent writes to. Run once by a DBA.
CREATE SCHEMA IF NOT EXISTS {{ schema }}
