-- A connection-private temporary table shaped like the staging table, to load one batch into.
CREATE TEMP TABLE {{ batch_table }} AS
SELECT {{ columns | join(', ') }} FROM {{ staging_table }} WHERE 0
