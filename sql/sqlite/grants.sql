-- mes-erp-agent on system {{ system }} (SQLite): nothing to run. SQLite has no logins and no GRANT;
-- access is the operating system's file permissions, so this is what the DBA (or the admin) sets instead:
{% if reads %}
--   Source reads (flows: {{ read_flows | join(', ') }}): the agent opens the database read-only (mode=ro), and
--   its attached files too; give the agent's OS account read permission only on:
{% for f in read_files %}
--     {{ f }}
{% endfor %}
{% endif %}
{% if staging_schema %}
--   Staging writes (flows: {{ write_flows | join(', ') }}): the agent writes only the staging schema
--   {{ staging_schema_name }} (an attached file, `attach:`); give its OS account write permission on that file
--   and its folder (SQLite's journal), and read permission only on the other files.
{% endif %}
