-- Load one batch into the batch table: one statement executed for all rows of the batch (driver batching).
-- Parameters: :p0 .. :pN, one per column
INSERT INTO {{ batch_table }} ({{ columns | join(', ') }})
VALUES ({% for p in params %}:{{ p }}{% if not loop.last %}, {% endif %}{% endfor %})
