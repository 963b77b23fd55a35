-- The SQLite library's version, written into the header of a schema snapshot (informational: not compared).
SELECT sqlite_version() AS version
