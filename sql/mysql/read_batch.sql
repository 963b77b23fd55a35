-- Next batch of new or changed MES rows, in watermark (keyset) order. Read-only.
-- With an index on the watermark columns, in their order, this is one index range scan per batch.
-- MariaDB does not turn a row-value comparison (a, b) > (:a, :b) into an index range (it scans the whole table
-- and sorts it), so the keyset is written out: a leading `c1 >= :wm_0` is the range, the OR/AND the exact cut.
-- The initial load starts at the smallest first watermark value (one index lookup): without a range MariaDB
-- reads the whole table and sorts it for every page. A row whose first watermark column is NULL is never read.
-- cursor = 'start': initial load; 'from': re-read the overlap window; 'after': continue after the last row.
-- Parameters: :wm_0 .. :wm_N (last row read), :lower_bound (overlap start), :upper_bound (now - lag), :batch_size
SELECT {{ columns | join(', ') }}
FROM {{ source }}
{% if cursor == 'after' %}
WHERE {{ watermark[0] }} >= {{ params[0] }}
  AND (
{% for i in range(watermark | length) %}
    {% if not loop.first %}OR {% endif %}({% for j in range(i) %}{{ watermark[j] }} = {{ params[j] }} AND {% endfor %}{{ watermark[i] }} > {{ params[i] }})
{% endfor %}
  )
{% elif cursor == 'from' %}
WHERE {{ watermark[0] }} >= :lower_bound
{% else %}
WHERE {{ watermark[0] }} >= (SELECT MIN({{ watermark[0] }}) FROM {{ source }})
{% endif %}
{% if upper_bound %}
  AND {{ watermark[0] }} <= :upper_bound
{% endif %}
ORDER BY {{ watermark | join(', ') }}
LIMIT :batch_size
