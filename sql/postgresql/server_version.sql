-- The server's version, written into the header of a schema snapshot (informational: not compared).
SELECT current_setting('server_version') AS version
