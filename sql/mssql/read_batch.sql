-- Next batch of new or changed MES rows, in watermark (keyset) order. Read-only.
-- SQL Server has no row-value comparison: (a, b) > (:a, :b) is written out as OR/AND, which the
-- optimizer still turns into one seek on an index over the watermark columns.
-- cursor = 'start': initial load; 'from': re-read the overlap window; 'after': continue after the last row.
-- A rowversion watermark (`rowversion: true`) stops below MIN_ACTIVE_ROWVERSION(): every row under it is
-- committed, so a transaction still in flight is never skipped.
-- Parameters: :wm_0 .. :wm_N (last row read), :lower_bound (overlap start), :upper_bound (now - lag), :batch_size
SELECT TOP (:batch_size) {{ columns | join(', ') }}
FROM {{ source }}
{% if cursor == 'after' %}
WHERE (
{% for i in range(watermark | length) %}
    {% if not loop.first %}OR {% endif %}({% for j in range(i) %}{{ watermark[j] }} = {{ params[j] }} AND {% endfor %}{{ watermark[i] }} > {{ params[i] }})
{% endfor %}
)
{% elif cursor == 'from' %}
WHERE {{ watermark[0] }} >= :lower_bound
{% else %}
WHERE 1 = 1
{% endif %}
{% if upper_bound == 'rowversion' %}
  AND {{ watermark[0] }} < MIN_ACTIVE_ROWVERSION()
{% elif upper_bound %}
  AND {{ watermark[0] }} <= :upper_bound
{% endif %}
ORDER BY {{ watermark | join(', ') }}
