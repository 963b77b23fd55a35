-- The MES server's clock, once per run: rows younger than `lag` are left for the next poll.
SELECT SYSDATETIME() AS local_now, SYSDATETIMEOFFSET() AS zoned_now
