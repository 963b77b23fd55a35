-- Take the flow's lock, without waiting: one agent moves a flow at a time (several agents on one configuration:
-- a standby, or agents sharing the flows). Run on the agent's own lock session, outside the batch transactions;
-- the lock belongs to that session, so the database frees it when the agent stops, dies or loses its connection.
-- Parameters: :lock_name (`mes-erp-agent:<staging schema>.<flow>`, or a hash of it beyond 64 characters)
-- PostgreSQL: a session-level advisory lock on a 64-bit key hashed from the name (see pg_locks, locktype advisory).
SELECT pg_try_advisory_lock(hashtextextended(:lock_name, 0)) AS taken
