{% if infile %}
-- Load one batch into the batch table from a file the agent writes and deletes after the statement (mode 0600, in
-- its temporary folder): one statement for the whole batch, where the server has local_infile=ON. Tab-separated,
-- backslash escapes, \N for NULL; binary columns come as hex. With LOCAL the server turns conversion errors into
-- warnings: the agent fails the batch (rollback) on any warning. The file is named in a literal (a prepared
-- statement cannot take LOAD DATA): the agent's own temporary file name, never a value read from a database.
LOAD DATA LOCAL INFILE {{ path }} INTO TABLE {{ batch_table }} CHARACTER SET utf8mb4
FIELDS TERMINATED BY X'09' ESCAPED BY X'5C' LINES TERMINATED BY X'0A'
({{ targets | join(', ') }}){% if unhex %}

SET {% for column, variable in unhex %}{{ column }} = UNHEX({{ variable }}){% if not loop.last %}, {% endif %}{% endfor %}{% endif %}

{% else %}
-- Load one batch into the batch table: multi-row INSERTs of {{ rows }} rows each (the last one shorter), every value
-- bound (pyodbc, or a server that refuses LOAD DATA LOCAL).
-- Parameters: :p<row>_<column>, one per value
INSERT INTO {{ batch_table }} ({{ columns | join(', ') }})
VALUES {% for r in range(rows) %}({% for c in columns %}:p{{ r }}_{{ loop.index0 }}{% if not loop.last %}, {% endif %}{% endfor %}){% if not loop.last %},
       {% endif %}{% endfor %}

{% endif %}
