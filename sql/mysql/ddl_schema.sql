-- The staging schema (a database in MySQL/MariaDB): the only schema the agent writes to. Run once by a DBA.
CREATE DATABASE IF NOT EXISTS {{ schema }} CHARACTER SET utf8mb4
