-- Reconciliation (`reconcile`, `deletes`): per bucket of the first watermark column (the first :prefix characters
-- of its canonical text: a year, month, day, hour, minute or second), how many source rows there are and the sum
-- of a 32-bit hash (MD5) of each row's key and version text, exactly as stg_source_key and stg_source_version
-- hold them (reconcile_ledger_buckets.sql computes the same for agent_ledger). Computed here: no row leaves the
-- database. Without `checksum` (a key or watermark column whose text SQL cannot render exactly) only counts.
-- One index range scan on the watermark columns.
-- Parameters: :prefix (bucket width in characters), :lower_bound, :upper_bound (first watermark column, [lower, upper))
{% macro text_of(c) %}{% if c.family in ('integer', 'decimal') %}CAST({{ c.name }} AS text){% elif c.family == 'text' %}replace(replace(CAST({{ c.name }} AS text), chr(92), chr(92) || chr(92)), '|', chr(92) || '|'){% elif c.family == 'timestamp' %}to_char({{ c.name }}, 'YYYY-MM-DD"T"HH24:MI:SS.US'){% elif c.family == 'date' %}to_char({{ c.name }}, 'YYYY-MM-DD'){% elif c.family == 'boolean' %}CASE WHEN {{ c.name }} THEN 'true' WHEN NOT {{ c.name }} THEN 'false' END{% endif %}{% endmacro %}
{% macro or_null(c) %}COALESCE({{ text_of(c) }}, chr(92) || 'N'){% endmacro %}
SELECT bucket, COUNT(*) AS row_count,
       {% if checksum %}SUM(('x' || substr(md5(row_text), 1, 8))::bit(32)::bigint){% else %}NULL{% endif %} AS checksum
FROM (
    SELECT substr({{ text_of(first) }}, 1, :prefix) AS bucket{% if checksum %},
           {% for c in key %}{{ or_null(c) }} || '|' || {% endfor %}{% for c in watermark %}{{ or_null(c) }}{% if not loop.last %} || '|' || {% endif %}{% endfor %} AS row_text{% endif %}

    FROM {{ source }}
    WHERE {{ first.name }} >= :lower_bound AND {{ first.name }} < :upper_bound
) AS buckets
GROUP BY bucket
