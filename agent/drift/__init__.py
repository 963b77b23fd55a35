"""Schema snapshots and the drift gate (issue 4).

catalog.py   one catalog query per system: the live schema of the watched tables
snapshot.py  the reviewed schema in schema_snapshots/<system>.yaml (deterministic YAML with a content hash)
compare/     live against reviewed, one module per object kind, producing Diff values (diff.py)
policy.py    what each flow's `on_drift:` makes of the diffs;  render.py  the report (text and JSON)
gate.py      the gate run before every flow run; incidents.py  report once, report the resolution
watcher.py   reloads changed snapshot files in the long-running mode;  commands.py  `snapshot`, `drift`
"""

from __future__ import annotations

from pathlib import Path

from agent.config import LoadedConfig
from agent.connect import Systems
from agent.drift import snapshot as snapshot_files
from agent.catalog.query import CatalogQuery, engine_for, server_version
from agent.catalog.model import SystemSnapshot
from agent.drift.watch import systems_of, uses_by_system, watched_tables
from agent.errors import ConfigError, SnapshotError


def live_schema(config: LoadedConfig, systems: Systems, system: str) -> SystemSnapshot:
    """The live schema of every table the enabled flows read or write on `system` (absent tables left out)."""
    dialect = systems.dialect(system)
    query = CatalogQuery.build(system, dialect, watched_tables(config, system))
    with engine_for(config, systems, system).connect() as conn:
        rows = query.fetch(conn)
        version = server_version(conn, dialect)
        conn.rollback()
    return SystemSnapshot(system, dialect.name, version, query.tables_from(rows))


def require_every_table(config: LoadedConfig, schema: SystemSnapshot) -> None:
    """A snapshot covers every watched table; a table that does not exist yet is an error, not a gap."""
    problems = []
    for name, uses in uses_by_system(config).get(schema.system, {}).items():
        if name in schema.tables:
            continue
        flows = ", ".join(sorted({use.flow for use in uses}))
        if uses[0].role == "source table":
            problems.append(f"source table {name} of flow {flows} does not exist on system {schema.system} "
                            "(or the agent's login cannot see it). Restore it; or, if it was removed for good, "
                            "remove the flow from the configuration or set `enabled: false` on it")
        else:
            problems.append(f"{uses[0].role} {name} (flow {flows}) does not exist on system {schema.system}; "
                            f"create the staging and control tables first: mes-erp-agent sql ddl -c {config.path} "
                            f"--system {schema.system} (a DBA runs it)")
    if problems:
        raise SnapshotError(f"cannot take the schema snapshot of system {schema.system}; nothing written:\n  "
                            + "\n  ".join(problems))


def snapshot_systems(config: LoadedConfig, system: str | None = None) -> list[str]:
    """The systems to snapshot: every system a flow reads or writes, or the one named (checked)."""
    used = systems_of(config)
    if system is None:
        return used
    if system not in config.model.systems:
        raise ConfigError([f"{config.path}: no system named {system!r} under `systems:`"])
    if system not in used:
        raise ConfigError([f"{config.path}: no enabled flow reads or writes system {system}: nothing to snapshot"])
    return [system]


def capture_snapshots(config: LoadedConfig, systems: Systems, system: str | None = None) -> list[Path]:
    """Write the snapshot of every system (or one) from the live databases, without review.

    For setting up (the demo, tests, a first install); `snapshot --accept` is the reviewed path for changes.
    Raises SnapshotError when a watched table does not exist yet.
    """
    paths = []
    for name in snapshot_systems(config, system):
        schema = live_schema(config, systems, name)
        require_every_table(config, schema)
        path = snapshot_files.snapshot_path(config, name)
        snapshot_files.write(path, schema)
        paths.append(path)
    return paths


__all__ = ["capture_snapshots", "live_schema", "require_every_table", "snapshot_systems"]
