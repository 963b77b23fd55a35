-- The drift gate's view of the watched tables: ONE query per system and run, from the sys catalog views.
-- One row per column (kind 'column') and per key, index and foreign-key column
-- (kinds 'primary_key', 'unique', 'index', 'foreign_key'), for every watched table at once.
-- Read-only; needs VIEW DEFINITION on the watched tables (granted with SELECT in grants.sql).
-- Parameters: :s0, :t0 .. :sN, :tN (schema and table of each watched table; a table without a schema
-- is looked up in the login's default schema).
WITH watched AS (
{% for w in watched %}
    {{ 'SELECT' if loop.first else 'UNION ALL SELECT' }} {{ loop.index0 }} AS watch_id, {% if w.schema %}CAST(:{{ w.schema }} AS sysname){% else %}SCHEMA_NAME(){% endif %} AS schema_name, CAST(:{{ w.table }} AS sysname) AS table_name
{% endfor %}
), rel AS (
    SELECT w.watch_id, o.object_id
    FROM watched w
    JOIN sys.schemas s ON s.name = w.schema_name
    JOIN sys.objects o ON o.schema_id = s.schema_id AND o.name = w.table_name AND o.type IN ('U', 'V')
)
SELECT 'column' AS kind, r.watch_id, CAST(NULL AS sysname) AS object_name, c.column_id AS position, c.name AS column_name,
       t.name AS data_type,
       t.name + CASE
           WHEN t.name IN ('nvarchar', 'nchar') THEN '(' + CASE WHEN c.max_length = -1 THEN 'max' ELSE CAST(c.max_length / 2 AS varchar(10)) END + ')'
           WHEN t.name IN ('varchar', 'char', 'varbinary', 'binary') THEN '(' + CASE WHEN c.max_length = -1 THEN 'max' ELSE CAST(c.max_length AS varchar(10)) END + ')'
           WHEN t.name IN ('decimal', 'numeric') THEN '(' + CAST(c.precision AS varchar(10)) + ',' + CAST(c.scale AS varchar(10)) + ')'
           WHEN t.name IN ('datetime2', 'datetimeoffset', 'time') THEN '(' + CAST(c.scale AS varchar(10)) + ')'
           ELSE '' END AS native_type,
       CASE WHEN c.max_length = -1 THEN NULL
            WHEN t.name IN ('nvarchar', 'nchar') THEN c.max_length / 2
            WHEN t.name IN ('varchar', 'char', 'varbinary', 'binary') THEN c.max_length END AS char_length,
       CASE WHEN t.name IN ('decimal', 'numeric') THEN c.precision END AS numeric_precision,
       CASE WHEN t.name IN ('decimal', 'numeric') THEN c.scale END AS numeric_scale,
       CASE WHEN t.name IN ('datetime2', 'datetimeoffset', 'time') THEN c.scale WHEN t.name = 'datetime' THEN 3 WHEN t.name = 'smalldatetime' THEN 0 END AS datetime_precision,
       CASE WHEN c.is_nullable = 1 THEN 1 ELSE 0 END AS nullable,
       dc.definition AS default_value,
       CASE WHEN c.is_identity = 1 THEN 1 ELSE 0 END AS is_identity,
       CASE WHEN c.is_computed = 1 THEN 1 ELSE 0 END AS is_computed,
       c.collation_name AS collation_name,
       0 AS is_unique, CAST(NULL AS sysname) AS ref_schema, CAST(NULL AS sysname) AS ref_table, CAST(NULL AS sysname) AS ref_column
FROM rel r
JOIN sys.columns c ON c.object_id = r.object_id
JOIN sys.types t ON t.user_type_id = c.system_type_id AND t.user_type_id = t.system_type_id
LEFT JOIN sys.default_constraints dc ON dc.object_id = c.default_object_id
UNION ALL
SELECT CASE WHEN i.is_primary_key = 1 THEN 'primary_key' WHEN i.is_unique_constraint = 1 THEN 'unique' ELSE 'index' END,
       r.watch_id, i.name, ic.key_ordinal, c.name,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN i.is_unique = 1 THEN 1 ELSE 0 END, NULL, NULL, NULL
FROM rel r
JOIN sys.indexes i ON i.object_id = r.object_id AND i.type > 0
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id AND ic.key_ordinal > 0
JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
UNION ALL
SELECT 'foreign_key', r.watch_id, fk.name, fkc.constraint_column_id, c.name,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
       SCHEMA_NAME(ro.schema_id), ro.name, rc.name
FROM rel r
JOIN sys.foreign_keys fk ON fk.parent_object_id = r.object_id
JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id
JOIN sys.columns c ON c.object_id = fkc.parent_object_id AND c.column_id = fkc.parent_column_id
JOIN sys.objects ro ON ro.object_id = fkc.referenced_object_id
JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id AND rc.column_id = fkc.referenced_column_id
ORDER BY 2, 1, 3, 4
