-- Reconciliation (`reconcile`, `deletes`): per bucket of the first watermark column (the first :prefix characters
-- of its canonical text: a year, month, day, hour, minute or second), how many source rows there are and the sum
-- of a 32-bit hash of each row's key and version text, exactly as stg_source_key and stg_source_version hold them
-- (reconcile_ledger_buckets.sql computes the same for agent_ledger). SQLite has no hash function and keeps
-- timestamps as text: mea_hash32 (the first 32 bits of MD5) and mea_canonical (the agent's own conversion of a
-- stored value) are functions the agent registers on its connections. Without `checksum` only counts.
-- Parameters: :prefix (bucket width in characters), :lower_bound, :upper_bound (first watermark column, [lower, upper))
{% macro or_null(c) %}COALESCE(mea_canonical({{ c.name }}, '{{ c.family }}'), char(92) || 'N'){% endmacro %}
SELECT bucket, COUNT(*) AS row_count, {% if checksum %}SUM(mea_hash32(row_text)){% else %}NULL{% endif %} AS checksum
FROM (
    SELECT substr(mea_canonical({{ first.name }}, '{{ first.family }}'), 1, :prefix) AS bucket{% if checksum %},
           {% for c in key %}{{ or_null(c) }} || '|' || {% endfor %}{% for c in watermark %}{{ or_null(c) }}{% if not loop.last %} || '|' || {% endif %}{% endfor %} AS row_text{% endif %}

    FROM {{ source }}
    WHERE {{ first.name }} >= :lower_bound AND {{ first.name }} < :upper_bound
) AS buckets
GROUP BY bucket
