-- Take the flow's lock, without waiting: one agent moves a flow at a time (several agents on one configuration:
-- a standby, or agents sharing the flows). Run on the agent's own lock session, outside the batch transactions;
-- the lock belongs to that session, so the database frees it when the agent stops, dies or loses its connection.
-- Parameters: :lock_name (`mes-erp-agent:<staging schema>.<flow>`, or a hash of it beyond 64 characters)
-- SQL Server: an application lock owned by the session (sp_getapplock, timeout 0: do not wait), sent as one batch;
-- sys.dm_tran_locks (resource_type APPLICATION) shows it. 1: taken, 0: another session holds it.
SET NOCOUNT ON;
DECLARE @result int;
EXEC @result = sp_getapplock @Resource = :lock_name, @LockMode = 'Exclusive', @LockOwner = 'Session', @LockTimeout = 0;
SELECT CASE WHEN @result >= 0 THEN 1 ELSE 0 END AS taken
