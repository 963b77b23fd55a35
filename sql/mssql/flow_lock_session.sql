-- The lock session's id, when it connects and on every lock round (`locks.check_every`): a cheap query that
-- shows the session (and so its locks) is still there; agent_holder.session_id shows it to the DBA.
-- No parameters.
SELECT CAST(@@SPID AS nvarchar(20)) AS session_id
