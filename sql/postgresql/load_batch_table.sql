-- Stream one batch into the batch table (COPY: one round trip for the whole batch). In binary where every column's
-- type and the batch's values allow it (agent/dialects/pg_copy.py: a third of text COPY's CPU), inside a savepoint
-- that falls back to text COPY. The binary form ends in (FORMAT BINARY); render-sql shows the text form.
COPY {{ batch_table }} ({{ columns | join(', ') }}) FROM STDIN{% if binary %} (FORMAT BINARY){% endif %}
