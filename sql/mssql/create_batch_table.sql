-- A session-private #temp table shaped like the staging table, to load one batch into (tempdb).
SELECT {{ columns | join(', ') }} INTO {{ batch_table }} FROM {{ staging_table }} WHERE 1 = 0
