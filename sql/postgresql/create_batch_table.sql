-- A session-private temporary table shaped like the staging table, to COPY one batch into.
-- Needs the TEMPORARY privilege on the database (see grants.sql); it is gone when the session ends.
CREATE TEMPORARY TABLE {{ batch_table }} AS
SELECT {{ columns | join(', ') }} FROM {{ staging_table }} WITH NO DATA
