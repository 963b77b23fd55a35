-- The drift gate's view of the watched tables: ONE query per database and run, from SQLite's pragma
-- table-valued functions. One row per column (kind 'column') and per key, index and foreign-key column
-- (kinds 'primary_key', 'unique', 'index', 'foreign_key'), for every watched table at once.
-- Parameters: :s0, :t0 .. :sN, :tN (schema, i.e. attached database, and table of each watched table;
-- a table without a schema is looked up in main).
WITH watched(watch_id, schema_name, table_name) AS (
{% for w in watched %}
    {{ 'SELECT' if loop.first else 'UNION ALL SELECT' }} {{ loop.index0 }}, {% if w.schema %}:{{ w.schema }}{% else %}'main'{% endif %}, :{{ w.table }}
{% endfor %}
), cols AS (
    SELECT w.watch_id, w.schema_name, w.table_name, p.cid, p.name, p.type, p."notnull", p.dflt_value, p.pk, p.hidden,
           (SELECT COUNT(*) FROM pragma_table_xinfo(w.table_name, w.schema_name) q WHERE q.pk > 0) AS pk_columns
    FROM watched w
    JOIN pragma_table_xinfo(w.table_name, w.schema_name) p
)
SELECT 'column' AS kind, c.watch_id, NULL AS object_name, c.cid + 1 AS position, c.name AS column_name,
       lower(c.type) AS data_type, c.type AS native_type, NULL AS char_length, NULL AS numeric_precision,
       NULL AS numeric_scale, NULL AS datetime_precision,
       CASE WHEN c."notnull" OR (c.pk > 0 AND c.pk_columns = 1 AND upper(c.type) = 'INTEGER') THEN 0 ELSE 1 END AS nullable,
       c.dflt_value AS default_value,
       CASE WHEN c.pk > 0 AND c.pk_columns = 1 AND upper(c.type) = 'INTEGER' THEN 1 ELSE 0 END AS is_identity,
       CASE WHEN c.hidden IN (2, 3) THEN 1 ELSE 0 END AS is_computed,
       NULL AS collation_name, 0 AS is_unique, NULL AS ref_schema, NULL AS ref_table, NULL AS ref_column
FROM cols c
UNION ALL
SELECT 'primary_key', c.watch_id, NULL, c.pk, c.name,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, NULL, NULL, NULL
FROM cols c
WHERE c.pk > 0
UNION ALL
SELECT CASE il.origin WHEN 'u' THEN 'unique' ELSE 'index' END, w.watch_id, il.name, ii.seqno + 1,
       COALESCE(ii.name, '(expression)'),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, il."unique", NULL, NULL, NULL
FROM watched w
JOIN pragma_index_list(w.table_name, w.schema_name) il
JOIN pragma_index_info(il.name, w.schema_name) ii
WHERE il.origin <> 'pk'
UNION ALL
SELECT 'foreign_key', w.watch_id, 'fk_' || fk.id, fk.seq + 1, fk."from",
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, w.schema_name, fk."table", fk."to"
FROM watched w
JOIN pragma_foreign_key_list(w.table_name, w.schema_name) fk
ORDER BY 2, 1, 3, 4
