-- Reconciliation (`reconcile`, `deletes`): per bucket of the first watermark column (the first :prefix characters
-- of its canonical text: a year, month, day, hour, minute or second), how many source rows there are and the sum
-- of a 32-bit hash (MD5 of the UTF-8 text; SQL Server 2019 or later) of each row's key and version text, exactly
-- as stg_source_key and stg_source_version hold them (reconcile_ledger_buckets.sql computes the same for
-- agent_ledger). Computed here: no row leaves the database. Without `checksum` (a key or watermark column whose
-- text SQL cannot render exactly) only counts. One index range scan on the watermark columns.
-- Parameters: :prefix (bucket width in characters), :lower_bound, :upper_bound (first watermark column, [lower, upper))
{% macro text_of(c) %}{% if c.family == 'integer' %}CAST({{ c.name }} AS nvarchar(40)){% elif c.family == 'decimal' %}CAST({{ c.name }} AS nvarchar(80)){% elif c.family == 'text' %}REPLACE(REPLACE(CAST({{ c.name }} AS nvarchar(max)), NCHAR(92), NCHAR(92) + NCHAR(92)), N'|', NCHAR(92) + N'|'){% elif c.family == 'timestamp' %}CONVERT(nvarchar(10), {{ c.name }}, 23) + N'T' + CONVERT(nvarchar(8), {{ c.name }}, 108) + N'.' + RIGHT(N'00000' + CAST(DATEPART(microsecond, {{ c.name }}) AS nvarchar(6)), 6){% elif c.family == 'date' %}CONVERT(nvarchar(10), {{ c.name }}, 23){% endif %}{% endmacro %}
{% macro or_null(c) %}COALESCE({{ text_of(c) }}, NCHAR(92) + N'N'){% endmacro %}
SELECT bucket, COUNT(*) AS row_count, {% if checksum %}SUM(CAST(SUBSTRING(HASHBYTES('MD5', CONVERT(varchar(4000), row_text COLLATE Latin1_General_100_BIN2_UTF8)), 1, 4) AS bigint)){% else %}NULL{% endif %} AS checksum
FROM (
    SELECT SUBSTRING({{ text_of(first) }}, 1, :prefix) AS bucket{% if checksum %},
           {% for c in key %}{{ or_null(c) }} + N'|' + {% endfor %}{% for c in watermark %}{{ or_null(c) }}{% if not loop.last %} + N'|' + {% endif %}{% endfor %} AS row_text{% endif %}

    FROM {{ source }}
    WHERE {{ first.name }} >= :lower_bound AND {{ first.name }} < :upper_bound
) AS buckets
GROUP BY bucket
