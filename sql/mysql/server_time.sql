-- The MES server's clock, once per run: rows younger than `lag` are left for the next poll.
SELECT NOW(6) AS local_now, UTC_TIMESTAMP(6) AS zoned_now
