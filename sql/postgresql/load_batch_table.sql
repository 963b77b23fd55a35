-- Stream one batch into the batch table (COPY: one round trip for the whole batch).
COPY {{ batch_table }} ({{ columns | join(', ') }}) FROM STDIN
