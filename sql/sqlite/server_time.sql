-- The MES database's clock, once per run: rows younger than `lag` are left for the next poll.
SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', 'localtime') AS local_now, strftime('%Y-%m-%d %H:%M:%f', 'now') AS zoned_now
