-- The server's version, written into the header of a schema snapshot (informational: not compared).
SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS version
