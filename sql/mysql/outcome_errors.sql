-- The flow's rows the ERP import job rejected (a status under `error:`), with the ERP's own messages: its
-- `error_text:` columns, and with `error_table:` one row per message there, joined by `link`. Read-only.
-- For the running agent's import-error incidents (every `alerts.check_every`, only while rows are in error),
-- `mes-erp-agent outcomes`, and `outcomes --resubmit` (then only the given keys, in its transaction).
-- Key and version: the row's stg_source_key / stg_source_version, or in a vendor interface table those of the
-- agent_ledger entry its `reference:` column holds.
-- Parameters: :flow, :error_N (the outcome's error statuses), :key_N (--resubmit's keys), :max_rows
{% macro is_error() %}{% if error %}s.{{ status }} IN ({{ error | join(', ') }}){% else %}1 = 0{% endif %}{% endmacro %}
SELECT {{ row_id }} AS row_id, {{ source_key }} AS source_key, {{ source_version }} AS source_version,
       {{ staged_at }} AS staged_at, s.{{ status }} AS status{% for c in error_text %}, {{ c.expr }} AS {{ c.alias }}{% endfor %}

FROM {{ staging_table }} s
{% if vendor %}
JOIN {{ ledger_table }} l ON l.entry_id = s.{{ reference }} AND l.flow = :flow
{% endif %}
{% if error_table %}
LEFT JOIN {{ error_table.table }} e ON e.{{ error_table.link }} = s.{{ error_table.link }}
{% endif %}
WHERE {{ is_error() }}{% if not vendor %} AND s.stg_flow = :flow{% endif %}

{% if keys %}
  AND {{ source_key }} IN ({{ keys | join(', ') }})
{% endif %}
ORDER BY row_id{% for c in error_text %}, {{ c.alias }}{% endfor %}

LIMIT :max_rows
