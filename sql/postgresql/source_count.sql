-- Backfill: how many source rows the range holds, for its progress bar. One index range scan.
-- Parameters: :lower_bound, :upper_bound (first watermark column, both inclusive)
SELECT COUNT(*) AS row_count
FROM {{ source }}
WHERE {{ first }} >= :lower_bound AND {{ first }} <= :upper_bound
