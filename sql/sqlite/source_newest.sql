-- The newest change in the flow's source: the largest value of its first watermark column, for the lag
-- health figure (`/metrics`, status). With the index the keyset reads use, one index lookup.
-- Parameters: none
SELECT MAX({{ column }}) AS newest
FROM {{ source }}
