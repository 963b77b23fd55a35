-- Release the flow's lock (the agent stops, the flow was removed from the configuration, or it hands the flow
-- to an agent holding fewer flows). Run on the lock session that took it.
-- Parameters: :lock_name
SELECT RELEASE_LOCK(:lock_name) AS released
