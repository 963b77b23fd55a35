-- The drift gate's view of the watched tables: ONE query per system and run, from information_schema.
-- One row per column (kind 'column') and per key, index and foreign-key column
-- (kinds 'primary_key', 'unique', 'index', 'foreign_key'), for every watched table at once.
-- Read-only; information_schema shows the login only the tables it has privileges on.
-- Parameters: :s0, :t0 .. :sN, :tN (database and table of each watched table; a table without a
-- database is looked up in the connection's database). The constant IN lists let MariaDB/MySQL open
-- only the watched tables' definitions instead of every table on the server (about 20x faster).
{% set schemas %}{% for w in watched %}{{ ', ' if not loop.first }}{% if w.schema %}:{{ w.schema }}{% else %}DATABASE(){% endif %}{% endfor %}{% endset %}
{% set tables %}{% for w in watched %}{{ ', ' if not loop.first }}:{{ w.table }}{% endfor %}{% endset %}
WITH watched AS (
{% for w in watched %}
    {{ 'SELECT' if loop.first else 'UNION ALL SELECT' }} {{ loop.index0 }} AS watch_id, {% if w.schema %}:{{ w.schema }}{% else %}DATABASE(){% endif %} AS schema_name, :{{ w.table }} AS table_name
{% endfor %}
)
SELECT 'column' AS kind, w.watch_id, CAST(NULL AS CHAR) AS object_name, c.ORDINAL_POSITION AS position, c.COLUMN_NAME AS column_name,
       c.DATA_TYPE AS data_type, c.COLUMN_TYPE AS native_type, c.CHARACTER_MAXIMUM_LENGTH AS char_length,
       c.NUMERIC_PRECISION AS numeric_precision, c.NUMERIC_SCALE AS numeric_scale, c.DATETIME_PRECISION AS datetime_precision,
       CASE WHEN c.IS_NULLABLE = 'YES' THEN 1 ELSE 0 END AS nullable,
       c.COLUMN_DEFAULT AS default_value,
       CASE WHEN c.EXTRA LIKE '%auto_increment%' THEN 1 ELSE 0 END AS is_identity,
       CASE WHEN c.EXTRA LIKE '%GENERATED%' THEN 1 ELSE 0 END AS is_computed,
       c.COLLATION_NAME AS collation_name,
       0 AS is_unique, CAST(NULL AS CHAR) AS ref_schema, CAST(NULL AS CHAR) AS ref_table, CAST(NULL AS CHAR) AS ref_column
FROM watched w
JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = w.schema_name AND c.TABLE_NAME = w.table_name
WHERE c.TABLE_SCHEMA IN ({{ schemas }}) AND c.TABLE_NAME IN ({{ tables }})
UNION ALL
SELECT CASE tc.CONSTRAINT_TYPE WHEN 'PRIMARY KEY' THEN 'primary_key' WHEN 'UNIQUE' THEN 'unique' ELSE 'foreign_key' END,
       w.watch_id, k.CONSTRAINT_NAME, k.ORDINAL_POSITION, k.COLUMN_NAME,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN tc.CONSTRAINT_TYPE = 'FOREIGN KEY' THEN 0 ELSE 1 END,
       k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME
FROM watched w
JOIN information_schema.TABLE_CONSTRAINTS tc
  ON tc.TABLE_SCHEMA = w.schema_name AND tc.TABLE_NAME = w.table_name
 AND tc.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY')
JOIN information_schema.KEY_COLUMN_USAGE k
  ON k.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND k.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
 AND k.TABLE_SCHEMA = tc.TABLE_SCHEMA AND k.TABLE_NAME = tc.TABLE_NAME
WHERE tc.TABLE_SCHEMA IN ({{ schemas }}) AND tc.TABLE_NAME IN ({{ tables }})
  AND k.TABLE_SCHEMA IN ({{ schemas }}) AND k.TABLE_NAME IN ({{ tables }})
UNION ALL
SELECT 'index', w.watch_id, s.INDEX_NAME, s.SEQ_IN_INDEX, s.COLUMN_NAME,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN s.NON_UNIQUE = 0 THEN 1 ELSE 0 END, NULL, NULL, NULL
FROM watched w
JOIN information_schema.STATISTICS s ON s.TABLE_SCHEMA = w.schema_name AND s.TABLE_NAME = w.table_name
WHERE s.TABLE_SCHEMA IN ({{ schemas }}) AND s.TABLE_NAME IN ({{ tables }})
  AND NOT EXISTS (
    SELECT 1 FROM information_schema.TABLE_CONSTRAINTS x
    WHERE x.TABLE_SCHEMA IN ({{ schemas }}) AND x.TABLE_NAME IN ({{ tables }})
      AND x.TABLE_SCHEMA = s.TABLE_SCHEMA AND x.TABLE_NAME = s.TABLE_NAME AND x.CONSTRAINT_NAME = s.INDEX_NAME
      AND x.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'UNIQUE')
)
ORDER BY 2, 1, 3, 4
