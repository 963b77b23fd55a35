-- Drop the batch table (also run before creating it, in case a failed batch left one on this session).
DROP TEMPORARY TABLE IF EXISTS {{ batch_table }}
