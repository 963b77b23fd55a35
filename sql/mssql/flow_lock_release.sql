-- Release the flow's lock (the agent stops, the flow was removed from the configuration, or it hands the flow
-- to an agent holding fewer flows). Run on the lock session that took it.
-- Parameters: :lock_name
EXEC sp_releaseapplock @Resource = :lock_name, @LockOwner = 'Session'
