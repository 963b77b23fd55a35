"""`sql grants`: the least-privilege login of one system, rendered from `sql/<dialect>/grants.sql`.

The configured flows decide every grant: SELECT on exactly the source columns a flow reads (its `table:`
columns, or every column its custom query mentions, in joins and filters too), SELECT and INSERT on its
staging table (UPDATE only on the columns a flow's `resubmit:` sets; SELECT on an `error_table:`), the control
tables (UPDATE only on agent_watermark and on agent_quarantine's replay columns, DELETE only on agent_ledger, for
pruning), the temporary-table right of the batch table.
A system can be the source of some flows and the target of others (MES -> ERP confirmations, ERP -> MES
released orders): its login then gets both, the reads for the flows it is the source of and the staging writes
for the flows it is the target of, and nothing else. Identifiers come from validated configuration and are
quoted by the dialect; the password is a placeholder, and a placeholder equal to the configured password is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

from agent import dialects, source_query
from agent.config import LoadedConfig, check_login, check_placeholder
from agent.dialects import Dialect
from agent.errors import ConfigError
from agent.contract import ControlTables
from agent.outcome import error_table_location

TableName = tuple[str | None, str]


@dataclass(frozen=True)
class Login:
    name: str
    password_placeholder: str
    host: str


def login_for(
    config: LoadedConfig, system: str, dialect: Dialect, name: str | None = None, password_placeholder: str | None = None,
    host: str | None = None,
) -> Login:
    """The login to create: command-line options, else `grants:` of the system, else the URL's user name."""
    settings = config.model.systems[system].grants
    where = config.where("systems", system)
    name = name or settings.login or make_url(config.model.systems[system].url).username
    if not dialect.has_logins:
        return Login(name or "", settings.password_placeholder, settings.host)
    if not name:
        raise ConfigError([f"{where}: no login name for system {system}: give --login, `grants: {{login: ...}}` "
                           "or a user name in its url"])
    placeholder = password_placeholder or settings.password_placeholder
    try:
        check_login(name)
        check_placeholder(placeholder)
    except ValueError as exc:
        raise ConfigError([f"{where}: {exc}"]) from exc
    if placeholder == _configured_password(config, system):
        raise ConfigError([f"{where}: the password placeholder is the login's real password; a grants script never "
                           "holds a password: choose another placeholder and set the password when you run it"])
    return Login(name, placeholder, host or settings.host)


def grants_script(config: LoadedConfig, system: str, dialect: Dialect, login: Login) -> str:
    """The script (comments included: they tell the DBA what each grant is for)."""
    return dialect.render_script("grants", **grants_context(config, system, dialect, login))


def grants_context(config: LoadedConfig, system: str, dialect: Dialect, login: Login) -> dict[str, Any]:
    settings = config.model.systems[system]
    url = make_url(settings.url)
    if dialect.has_logins and not url.database:
        raise ConfigError([f"{config.where('systems', system, 'url')}: the url of system {system} names no "
                           "database; grants are given per database"])
    own = dialects.for_url(url)  # custom queries are written in the system's own SQL
    reads: dict[TableName, list[str]] = {}
    read_flows: list[str] = []
    write_flows: list[str] = []
    staging_tables: list[dict[str, Any]] = []
    error_tables: dict[str, str | None] = {}  # quoted table -> its schema (quoted) when not the staging schema
    for name, flow in config.model.flows.items():
        if flow.source == system:
            read_flows.append(name)
            for (schema, table), columns in source_query.columns_read(
                    flow.query, (flow.source_schema, flow.source_table or ""), own, flow.source_columns):
                if schema is None and dialect.schema_is_database:
                    schema = url.database
                listed = reads.setdefault((schema, table), [])
                listed += [c for c in columns if c not in listed]
        if flow.target == system and settings.staging_schema:
            write_flows.append(name)
            table = dialect.table(settings.staging_schema, flow.staging_table_name)
            if table not in [t["table"] for t in staging_tables]:
                outcome = flow.import_outcome
                resubmit = outcome.resubmit if outcome and outcome.resubmit else {}
                staging_tables.append({"table": table, "flow": name, "update_columns": [dialect.quote(c) for c in resubmit]})
            outcome = flow.import_outcome
            if outcome is not None and outcome.error_table is not None:  # the ERP's messages of rejected rows
                error_schema, error_name = error_table_location(settings.staging_schema, outcome)
                other = error_schema != settings.staging_schema and not dialect.schema_is_database
                error_tables[dialect.table(error_schema, error_name)] = dialect.quote(error_schema) if other else None
    schema = settings.staging_schema if write_flows else None
    files = [own.resolve_url(url, config.folder).database,
             *(str(config.resolve(path)) for path in settings.attach.values())]
    staging_file = str(config.resolve(settings.attach[schema])) if schema and schema in settings.attach else None
    return {
        "system": system,
        "database": dialect.quote(url.database) if url.database else None,
        "database_name": url.database,
        "login": dialect.login(login.name, login.host),
        "login_literal": dialect.literal(login.name),
        "password": dialect.literal(login.password_placeholder),
        "reads": [
            {"table": dialect.table(s, t), "columns": [dialect.quote(c) for c in columns]}
            for (s, t), columns in reads.items()
        ],
        "read_schemas": list(dict.fromkeys(dialect.quote(s) for s, _t in reads if s)),
        "read_flows": read_flows,
        "staging_schema": dialect.quote(schema) if schema else None,
        "staging_schema_name": schema,
        "staging_tables": staging_tables,
        "error_tables": [{"table": t, "schema": schema_} for t, schema_ in error_tables.items()],
        "write_flows": write_flows,
        "control": ControlTables.in_schema(dialect, schema) if schema else None,
        "files": files,
        # SQLite: the files only read; a system that is also a target writes its staging file (listed apart).
        "read_files": [f for f in files if f != staging_file],
    }


def _configured_password(config: LoadedConfig, system: str) -> str | None:
    # Only a password written into the URL: `sql grants` never reads `password_file` (it lives on the agent's host).
    return config.configured_url(system).password
