-- The MES server's clock, once per run: rows younger than `lag` are left for the next poll.
SELECT LOCALTIMESTAMP AS local_now, CURRENT_TIMESTAMP AS zoned_now
