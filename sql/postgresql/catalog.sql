-- The drift gate's view of the watched tables: ONE query per system and run, straight from pg_catalog.
-- One row per column (kind 'column') and per key, index and foreign-key column
-- (kinds 'primary_key', 'unique', 'index', 'foreign_key'), and per label of an enum column (kind 'enum_label':
-- the label in native_type, its place in label order in position), for every watched table at once.
-- Read-only; needs no privilege beyond connecting (pg_catalog is readable by every login).
-- Parameters: :s0, :t0 .. :sN, :tN (schema and table of each watched table; a table without a schema
-- is looked up in current_schema()).
WITH watched AS (
{% for w in watched %}
    {{ 'SELECT' if loop.first else 'UNION ALL SELECT' }} {{ loop.index0 }} AS watch_id, {% if w.schema %}CAST(:{{ w.schema }} AS name){% else %}current_schema(){% endif %} AS schema_name, CAST(:{{ w.table }} AS name) AS table_name
{% endfor %}
), rel AS (
    SELECT w.watch_id, c.oid AS relid
    FROM watched w
    JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema_name
    JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
)
SELECT 'column' AS kind, r.watch_id, NULL AS object_name, a.attnum::int AS position, a.attname::text AS column_name,
       t.typname::text AS data_type, pg_catalog.format_type(a.atttypid, a.atttypmod) AS native_type,
       CASE WHEN a.atttypid IN (1042, 1043) AND a.atttypmod > 4 THEN a.atttypmod - 4 END AS char_length,
       CASE WHEN a.atttypid = 1700 AND a.atttypmod > 4 THEN ((a.atttypmod - 4) >> 16) & 65535 END AS numeric_precision,
       CASE WHEN a.atttypid = 1700 AND a.atttypmod > 4 THEN (a.atttypmod - 4) & 65535 END AS numeric_scale,
       CASE WHEN a.atttypid IN (1083, 1114, 1184, 1266) THEN CASE WHEN a.atttypmod < 0 THEN 6 ELSE a.atttypmod END END AS datetime_precision,
       CASE WHEN a.attnotnull THEN 0 ELSE 1 END AS nullable,
       CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS default_value,
       CASE WHEN a.attidentity <> '' OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' THEN 1 ELSE 0 END AS is_identity,
       CASE WHEN a.attgenerated <> '' THEN 1 ELSE 0 END AS is_computed,
       co.collname::text AS collation_name,
       0 AS is_unique, NULL AS ref_schema, NULL AS ref_table, NULL AS ref_column
FROM rel r
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.relid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
UNION ALL
SELECT CASE con.contype WHEN 'p' THEN 'primary_key' WHEN 'u' THEN 'unique' ELSE 'foreign_key' END,
       r.watch_id, con.conname::text, k.n::int, a.attname::text,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN con.contype = 'f' THEN 0 ELSE 1 END,
       fn.nspname::text, fc.relname::text, fa.attname::text
FROM rel r
JOIN pg_catalog.pg_constraint con ON con.conrelid = r.relid AND con.contype IN ('p', 'u', 'f')
CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k(attnum, ref_attnum, n)
JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
LEFT JOIN pg_catalog.pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = k.ref_attnum
UNION ALL
SELECT 'index', r.watch_id, ic.relname::text, k.n, pg_catalog.pg_get_indexdef(i.indexrelid, k.n, true),
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN i.indisunique THEN 1 ELSE 0 END, NULL, NULL, NULL
FROM rel r
JOIN pg_catalog.pg_index i ON i.indrelid = r.relid
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL generate_series(1, i.indnatts::int) AS k(n)
WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint x WHERE x.conindid = i.indexrelid AND x.conrelid = i.indrelid)
UNION ALL
SELECT 'enum_label', r.watch_id, NULL, (row_number() OVER (PARTITION BY r.watch_id, a.attnum ORDER BY e.enumsortorder))::int,
       a.attname::text, NULL, e.enumlabel::text,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM rel r
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.relid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_enum e ON e.enumtypid = a.atttypid
ORDER BY 2, 1, 3, 4
