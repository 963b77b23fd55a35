-- Next batch of new or changed MES rows, in watermark (keyset) order. Read-only.
-- With an index on the watermark columns this is one index range scan per batch.
-- cursor = 'start': initial load; 'from': re-read the overlap window; 'after': continue after the last row.
-- Parameters: :wm_0 .. :wm_N (last row read), :lower_bound (overlap start), :upper_bound (now - lag), :batch_size
SELECT {{ columns | join(', ') }}
FROM {{ source }}
{% if cursor == 'after' %}
WHERE ({{ watermark | join(', ') }}) > ({{ params | join(', ') }})
{% elif cursor == 'from' %}
WHERE {{ watermark[0] }} >= :lower_bound
{% else %}
WHERE 1 = 1
{% endif %}
{% if upper_bound %}
  AND {{ watermark[0] }} <= :upper_bound
{% endif %}
ORDER BY {{ watermark | join(', ') }}
LIMIT :batch_size
