-- Reconciliation (`reconcile`, `deletes`): per bucket of the first watermark column (the first :prefix characters
-- of its canonical text: a year, month, day, hour, minute or second), how many source rows there are and the sum
-- of a 32-bit hash (MD5 of the UTF-8 text) of each row's key and version text, exactly as stg_source_key and
-- stg_source_version hold them (reconcile_ledger_buckets.sql computes the same for agent_ledger). Computed here:
-- no row leaves the database. Without `checksum` (a key or watermark column whose text SQL cannot render exactly)
-- only counts. One index range scan on the watermark columns.
-- Parameters: :prefix (bucket width in characters), :lower_bound, :upper_bound (first watermark column, [lower, upper))
{% macro text_of(c) %}{% if c.family in ('integer', 'decimal') %}CAST({{ c.name }} AS CHAR){% elif c.family == 'text' %}REPLACE(REPLACE(CONVERT({{ c.name }} USING utf8mb4), CHAR(92 USING utf8mb4), CONCAT(CHAR(92 USING utf8mb4), CHAR(92 USING utf8mb4))), '|', CONCAT(CHAR(92 USING utf8mb4), '|')){% elif c.family == 'timestamp' %}DATE_FORMAT({{ c.name }}, '%Y-%m-%dT%H:%i:%s.%f'){% elif c.family == 'date' %}DATE_FORMAT({{ c.name }}, '%Y-%m-%d'){% endif %}{% endmacro %}
{% macro or_null(c) %}COALESCE({{ text_of(c) }}, CONCAT(CHAR(92 USING utf8mb4), 'N')){% endmacro %}
SELECT bucket, COUNT(*) AS row_count,
       {% if checksum %}SUM(CAST(CONV(SUBSTRING(MD5(row_text), 1, 8), 16, 10) AS UNSIGNED)){% else %}NULL{% endif %} AS checksum
FROM (
    SELECT SUBSTRING({{ text_of(first) }}, 1, :prefix) AS bucket{% if checksum %},
           CONVERT(CONCAT({% for c in key %}{{ or_null(c) }}, '|', {% endfor %}{% for c in watermark %}{{ or_null(c) }}{% if not loop.last %}, '|', {% endif %}{% endfor %}) USING utf8mb4) AS row_text{% endif %}

    FROM {{ source }}
    WHERE {{ first.name }} >= :lower_bound AND {{ first.name }} < :upper_bound
) AS buckets
GROUP BY bucket
