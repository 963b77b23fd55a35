"""Schema snapshot files: `<snapshots dir>/<system>.yaml`, written only by `mes-erp-agent snapshot`.

The bytes depend on the schema alone: stable key order, tables and constraints sorted by name, columns in
database order, LF line endings and no capture time (version control records when). A content hash in the
header lets the gate refuse a file that was edited by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from agent.config import LoadedConfig
from agent.catalog.model import (
    FORMAT_VERSION,
    ColumnSnapshot,
    ForeignKeySnapshot,
    IndexSnapshot,
    KeySnapshot,
    SystemSnapshot,
    TableSnapshot,
)
from agent.errors import SnapshotError
from agent.types import ColumnType

HEADER = """\
# Schema snapshot of system `{system}`: the reviewed schema of every table the agent's flows read or write.
# Written by `mes-erp-agent snapshot`. Do not edit by hand (the agent checks content_hash and refuses an
# edited file). After a reviewed schema change: mes-erp-agent snapshot -c <config> --system {system} --accept
"""


def snapshot_dir(config: LoadedConfig) -> Path:
    return config.resolve(config.model.snapshots.dir)


def snapshot_path(config: LoadedConfig, system: str) -> Path:
    return snapshot_dir(config) / f"{system}.yaml"


# --- writing -------------------------------------------------------------------------------------------
class _Inline(dict):
    """A mapping written on one line (`{family: text, length: 50}`)."""


class _InlineList(list):
    """A list written on one line (`[modified_date, work_order_id]`)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Inline, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(), flow_style=True))
_Dumper.add_representer(_InlineList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def render(snapshot: SystemSnapshot) -> str:
    """The file's text: the same schema always gives the same text."""
    tables = {name: _table_data(table) for name, table in sorted(snapshot.tables.items())}
    document = {
        "format": FORMAT_VERSION,
        "system": snapshot.system,
        "dialect": snapshot.dialect,
        "server_version": snapshot.server_version,
        "content_hash": content_hash(tables),
        "tables": tables,
    }
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=10_000, indent=2)
    return HEADER.format(system=snapshot.system) + body


def write(path: Path, snapshot: SystemSnapshot) -> bool:
    """Write atomically (a running agent never sees half a file); False when the bytes are already there."""
    data = render(snapshot).encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def content_hash(tables: dict[str, Any]) -> str:
    canonical = json.dumps(tables, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _table_data(table: TableSnapshot) -> dict[str, Any]:
    return {
        "columns": [_column_data(c) for c in table.columns],
        "primary_key": _key_data(table.primary_key) if table.primary_key else None,
        "unique": [_key_data(k) for k in table.unique],
        "indexes": [_Inline(name=i.name, columns=_InlineList(i.columns), unique=i.unique) for i in table.indexes],
        "foreign_keys": [
            _Inline(name=f.name, columns=_InlineList(f.columns), references=f.references,
                    referenced_columns=_InlineList(f.referenced_columns))
            for f in table.foreign_keys
        ],
    }


def _column_data(column: ColumnSnapshot) -> dict[str, Any]:
    data = {
        "name": column.name,
        "position": column.position,
        "type": _Inline({k: v for k, v in column.type.as_dict().items() if v is not None and v is not False}),
        "native": column.native,
        "nullable": column.nullable,
        "default": column.default,
        "identity": column.identity,
        "computed": column.computed,
        "collation": column.collation,
    }
    if column.labels:  # only enums: snapshots of other columns keep their bytes
        data["labels"] = _InlineList(column.labels)
    return data


def _key_data(key: KeySnapshot) -> dict[str, Any]:
    return _Inline(name=key.name, columns=_InlineList(key.columns))


# --- reading -------------------------------------------------------------------------------------------
def read(path: Path, system: str, config_path: Path | None = None) -> SystemSnapshot:
    """Load and verify a snapshot file. Raises SnapshotError saying what to do."""
    create = f"mes-erp-agent snapshot -c {config_path or '<config>'} --system {system}"
    if not path.is_file():
        raise SnapshotError(
            f"no schema snapshot for system {system}: {path} does not exist. The agent compares each database "
            f"with its reviewed snapshot before every run and will not run without one. Create it (after checking "
            f"that the database is in its intended state) with:\n    {create}"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        tables = document["tables"]
        if document.get("format") != FORMAT_VERSION:
            raise ValueError(f"snapshot format {document.get('format')!r}, this agent reads format {FORMAT_VERSION}")
        if document.get("content_hash") != content_hash(tables):
            raise SnapshotError(
                f"schema snapshot {path} was edited by hand (its content_hash does not match its content), so "
                f"the agent cannot trust it. Restore it from version control, or review the live schema and "
                f"write it again with:\n    {create} --accept"
            )
        return SystemSnapshot(
            system=str(document["system"]),
            dialect=str(document["dialect"]),
            server_version=str(document["server_version"]),
            tables={name: _table(name, data) for name, data in tables.items()},
        )
    except SnapshotError:
        raise
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(
            f"schema snapshot {path} cannot be read ({type(exc).__name__}: {exc}). Restore it from version "
            f"control, or write it again with:\n    {create} --accept"
        ) from exc


def _table(name: str, data: dict[str, Any]) -> TableSnapshot:
    return TableSnapshot(
        name=name,
        columns=tuple(
            ColumnSnapshot(
                name=c["name"], position=int(c["position"]), type=ColumnType(**c["type"]), native=c["native"],
                nullable=bool(c["nullable"]), default=c["default"], identity=bool(c["identity"]),
                computed=bool(c["computed"]), collation=c["collation"], labels=tuple(c.get("labels", ())),
            )
            for c in data["columns"]
        ),
        primary_key=_key(data["primary_key"]) if data["primary_key"] else None,
        unique=tuple(_key(k) for k in data["unique"]),
        indexes=tuple(IndexSnapshot(i["name"], tuple(i["columns"]), bool(i["unique"])) for i in data["indexes"]),
        foreign_keys=tuple(
            ForeignKeySnapshot(f["name"], tuple(f["columns"]), f["references"], tuple(f["referenced_columns"]))
            for f in data["foreign_keys"]
        ),
    )


def _key(data: dict[str, Any]) -> KeySnapshot:
    return KeySnapshot(data["name"], tuple(data["columns"]))
