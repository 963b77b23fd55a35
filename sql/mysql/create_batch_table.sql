-- A session-private temporary table shaped like the staging table, to load one batch into.
-- Needs CREATE TEMPORARY TABLES on the staging schema (see grants.sql).
CREATE TEMPORARY TABLE {{ batch_table }} AS
SELECT {{ columns | join(', ') }} FROM {{ staging_table }} WHERE 1 = 0
