-- `mes-erp-agent outcomes --flow F --resubmit KEY...`, a person's command: the flow's declared `resubmit:` (the
-- ERP's own procedure to hand a rejected row back to its import job), on the staging table only, and only on
-- the flow's rows in error (a status under `error:`) with the given keys: in a vendor interface table the rows
-- whose `reference:` column holds one of the flow's agent_ledger entries for those keys.
-- The agent never runs it by itself. The login needs UPDATE on exactly these columns (`sql grants` gives it).
-- Parameters: :set_N (the `resubmit:` values), :error_N (the error statuses), :flow, :key_N (the keys given)
UPDATE {{ staging_table }}
SET {{ assignments | join(', ') }}
WHERE {% if error %}{{ status }} IN ({{ error | join(', ') }}){% else %}1 = 0{% endif %}

{% if vendor %}
  AND {{ reference }} IN (
      SELECT l.entry_id FROM {{ ledger_table }} l WHERE l.flow = :flow AND l.source_key IN ({{ keys | join(', ') }}))
{% else %}
  AND stg_flow = :flow AND stg_source_key IN ({{ keys | join(', ') }})
{% endif %}
