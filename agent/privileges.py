"""Start-up privilege check: what the catalog says each login can do, against what `sql grants` gives it.

Before any data moves, `run` asks every system its flows use (one read-only catalog query,
`sql/<dialect>/privilege_check.sql`) for rights beyond the grants: superuser / sysadmin / db_owner, DDL,
writes outside the staging schema, DELETE or UPDATE inside it. Each finding is logged as a loud warning;
with `run --strict-privileges` the agent refuses to start instead, with exit code 4 (ExitCode.PRIVILEGES).
SQLite has no logins: its template is empty and nothing is checked.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import sqlalchemy as sa

from agent.config import LoadedConfig
from agent.connect import Systems
from agent.errors import AgentError

log = logging.getLogger("mes_erp_agent")

EXAMPLES = 5


class PrivilegeExcess(AgentError):
    """A login can do more than the agent's grants give it, and `--strict-privileges` asked to refuse."""


@dataclass(frozen=True)
class Finding:
    finding: str
    object_name: str


@dataclass(frozen=True)
class SystemPrivileges:
    system: str
    dialect: str
    login: str
    writes: bool  # the agent writes this system's staging schema (else it only reads the system)
    staging_schema: str | None  # the staging schema the login may write (None: it may write nothing here)
    findings: tuple[Finding, ...] = ()
    error: str | None = None  # the check itself failed (the login cannot read the catalog, the server is down)
    checked: bool = True  # False: the database has no logins (SQLite)

    @property
    def excess(self) -> bool:
        return bool(self.findings) or self.error is not None

    def describe(self, config_path: str) -> str:
        role = f"writes staging schema {self.staging_schema}" if self.writes else "only reads"
        head = f"login {self.login!r} on system {self.system} ({self.dialect}; the agent {role} there)"
        if self.error is not None:
            return (f"PRIVILEGES: could not check what {head} may do: {self.error}. Without the check nothing shows "
                    "that the login is limited to the agent's grants.")
        grouped: dict[str, list[str]] = defaultdict(list)
        for f in self.findings:
            grouped[f.finding].append(f.object_name)
        lines = [f"PRIVILEGES: {head} can do more than `mes-erp-agent sql grants` gives it:"]
        for finding, objects in grouped.items():
            more = f" and {len(objects) - EXAMPLES} more" if len(objects) > EXAMPLES else ""
            lines.append(f"  - {finding}: {', '.join(objects[:EXAMPLES])}{more}")
        lines.append(
            f"  The agent runs only the statements `mes-erp-agent render-sql -c {config_path}` lists, but a login with "
            f"these rights could change ERP or MES data if misused. Run the agent as the login that "
            f"`mes-erp-agent sql grants -c {config_path} --system {self.system}` creates; "
            f"`run --strict-privileges` refuses to start while this shows."
        )
        return "\n".join(lines)


def check(config: LoadedConfig, systems: Systems, only: str | None = None) -> list[SystemPrivileges]:
    """Every system the (enabled, or the named) flows use, in name order."""
    flows = config.flows(only)
    targets = {flow.target for flow in flows.values()}
    used = sorted(targets | {flow.source for flow in flows.values()})
    return [
        check_system(config, systems, system, system in targets, staging_schema_of(config, systems, system, targets))
        for system in used
    ]


def staging_schema_of(config: LoadedConfig, systems: Systems, system: str, targets: set[str]) -> str | None:
    """The staging schema the login may write on this system: its own, or where privileges are listed
    server-wide (MySQL), that of a target system on the same server with the same login."""
    if system in targets:
        return config.model.systems[system].staging_schema
    dialect = systems.dialect(system)
    if dialect.schema_is_database:
        url = config.configured_url(system)
        for other in sorted(targets):
            other_url = config.configured_url(other)
            same = (other_url.host, other_url.port, other_url.username) == (url.host, url.port, url.username)
            if same and systems.dialect(other).name == dialect.name:
                return config.model.systems[other].staging_schema
    return None


def check_system(
    config: LoadedConfig, systems: Systems, system: str, writes: bool, staging_schema: str | None
) -> SystemPrivileges:
    dialect = systems.dialect(system)
    login = config.configured_url(system).username or "(default login)"
    sql = dialect.render("privilege_check")
    if not sql:
        return SystemPrivileges(system, dialect.name, login, writes, staging_schema, checked=False)
    engine = systems.target(system) if writes else systems.source(system)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(sql), {"staging_schema": staging_schema or ""}).all()
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        return SystemPrivileges(system, dialect.name, login, writes, staging_schema, error=message)
    findings = tuple(Finding(str(row[0]), str(row[1])) for row in rows)
    return SystemPrivileges(system, dialect.name, login, writes, staging_schema, findings)


def startup_check(config: LoadedConfig, only: str | None = None, strict: bool = False) -> list[SystemPrivileges]:
    """`run` calls this first: warns loudly about every excess; raises PrivilegeExcess when `strict`."""
    systems = Systems(config)
    try:
        results = check(config, systems, only)
    finally:
        systems.dispose()
    excess = [r for r in results if r.excess]
    for r in excess:
        log.warning("%s", r.describe(str(config.path)))
    if strict and excess:
        raise PrivilegeExcess(
            f"{config.path}: not starting (--strict-privileges): a login can do more than the agent's grants.\n"
            + "\n".join(r.describe(str(config.path)) for r in excess)
        )
    return results
