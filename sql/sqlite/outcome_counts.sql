-- The import outcome of a flow's staged rows, counted in one set-based query: the running agent's check (every
-- `alerts.check_every`), `status` and /metrics. Read-only.
-- Pending: a status under the flow's `pending:` (with a `done:` list: any status neither done nor an error, NULL
-- included); in error: a status under `error:`. Staged: the flow's agent_ledger entries; done is staged minus
-- pending minus in error (rows the import job consumed, or gave a done status).
-- The flow's rows: stg_flow in the stg_* layout; in a vendor interface table, the rows whose `reference:` column
-- holds one of the flow's agent_ledger entry ids (rows other programs wrote are not counted).
-- Age of the oldest pending row: its `pending_since:` column, else when the agent staged it.
-- Parameters: :flow, :pending_N (or :done_N), :error_N: the outcome's status values
{% macro is_pending() %}{% if pending %}s.{{ status }} IN ({{ pending | join(', ') }}){% elif not_pending %}(s.{{ status }} IS NULL OR s.{{ status }} NOT IN ({{ not_pending | join(', ') }})){% else %}1 = 1{% endif %}{% endmacro %}
{% macro is_error() %}{% if error %}s.{{ status }} IN ({{ error | join(', ') }}){% else %}1 = 0{% endif %}{% endmacro %}
SELECT o.pending_rows, o.oldest_pending, o.error_rows, c.staged_rows
FROM (
    SELECT COALESCE(SUM(CASE WHEN {{ is_pending() }} THEN 1 ELSE 0 END), 0) AS pending_rows,
           MIN(CASE WHEN {{ is_pending() }} THEN {{ since }} END) AS oldest_pending,
           COALESCE(SUM(CASE WHEN {{ is_error() }} THEN 1 ELSE 0 END), 0) AS error_rows
    FROM {{ staging_table }} s
{% if vendor %}
    JOIN {{ ledger_table }} l ON l.entry_id = s.{{ reference }} AND l.flow = :flow
    WHERE {{ is_pending() }} OR {{ is_error() }}
{% else %}
    WHERE s.stg_flow = :flow AND ({{ is_pending() }} OR {{ is_error() }})
{% endif %}
) o
CROSS JOIN (SELECT COUNT(*) AS staged_rows FROM {{ ledger_table }} WHERE flow = :flow) c
