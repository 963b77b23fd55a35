-- Delete detection: which of these keys (the ledger's latest entries a narrowed bucket of the source lacks) the
-- source still has, at any version. Index lookups on the key; up to a few hundred keys per statement.
-- Parameters: :k<i>_<j> (key column j of candidate i)
SELECT {{ key | join(', ') }}
FROM {{ source }}
WHERE {% for group in conditions %}{% if not loop.first %} OR {% endif %}({% for column, param in group %}{% if not loop.first %} AND {% endif %}{{ column }} = :{{ param }}{% endfor %}){% endfor %}

