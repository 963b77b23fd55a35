"""The configuration file: YAML in, validated models out, every problem reported as file:line.

Loading happens in three steps so that each error can name its line:
1. compose the YAML into nodes (line numbers) and expand ${ENV} in scalar values;
2. validate with pydantic models (`extra="forbid"`, so a typo is an error, with the nearest valid key);
3. cross-check references between sections (a flow's source and target systems exist, ...).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import URL, make_url

from agent import dialects, source_query
from agent.errors import ConfigError
from agent.types import ColumnType, parse_type

NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")
IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONTROL_COLUMN_PREFIX = "stg_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> timedelta:
    """`2s`, `5m`, `1h`, `500ms`, `1d`, or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"expected a duration such as 2s, 5m, 1h, 500ms or 1d, got {value!r}")
    number, unit = match.groups()
    return timedelta(seconds=float(number) * _DURATION_UNITS[unit])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


PASSWORD_PLACEHOLDER = "CHANGE_ME"
_PLACEHOLDER_PATTERN = re.compile(r"^[A-Za-z0-9_.:<>{}%+=@!#-]{1,128}$")


class GrantsConfig(Model):
    """How `sql grants` names the agent's login (the password itself is never written into the script)."""

    login: str | None = None  # default: the user name of the system's URL
    password_placeholder: str = PASSWORD_PLACEHOLDER
    host: str = "%"  # MySQL/MariaDB: the host part of the account

    @field_validator("login")
    @classmethod
    def _login_is_identifier(cls, value: str | None) -> str | None:
        return check_login(value) if value is not None else None

    @field_validator("password_placeholder")
    @classmethod
    def _placeholder_is_plain(cls, value: str) -> str:
        return check_placeholder(value)


def check_login(value: str) -> str:
    if not IDENTIFIER_PATTERN.match(value):
        raise ValueError(f"login {value!r} is not a plain identifier (letters, digits, _)")
    return value


def check_placeholder(value: str) -> str:
    if not _PLACEHOLDER_PATTERN.match(value):
        raise ValueError("a password placeholder uses letters, digits and _.:<>{}%+=@!#- only (no quotes, $, \\ or blanks)")
    return value


class SystemConfig(Model):
    url: str
    password_file: Path | None = None
    staging_schema: str | None = None
    # Schemas of ERP core tables: never a staging schema. The database's own core schemas (dbo, public, ...,
    # see `Dialect.default_protected_schemas`) are protected as well unless named under `allow_staging_in:`.
    protected_schemas: list[str] = Field(default_factory=list)
    allow_staging_in: list[str] = Field(default_factory=list)
    attach: dict[str, Path] = Field(default_factory=dict)  # SQLite only: schema name -> database file
    grants: GrantsConfig = GrantsConfig()

    @field_validator("url")
    @classmethod
    def _url_parses(cls, value: str) -> str:
        try:
            make_url(value)
        except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
            raise ValueError("not a valid SQLAlchemy URL (dialect+driver://user@host:port/database)") from exc
        return value

    @field_validator("staging_schema")
    @classmethod
    def _schema_is_identifier(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a plain identifier (letters, digits, _)")
        return value


def _column_shorthand(value: Any) -> Any:
    return {"from": value} if isinstance(value, str) else value


class ColumnMapping(Model):
    source: str | None = Field(default=None, alias="from")
    const: Any = None
    type: str | None = None
    map: dict[str, Any] | None = None
    default: Any = None
    required: bool = False
    trim: bool = False

    @field_validator("map", mode="before")
    @classmethod
    def _map_keys_as_text(cls, value: Any) -> Any:
        # YAML reads `1: BRKN` with an int key; source codes are compared as text.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("type")
    @classmethod
    def _type_parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_type(value)
        return value

    @model_validator(mode="after")
    def _source_or_const(self) -> ColumnMapping:
        if (self.source is None) == (self.const is None):
            raise ValueError("give exactly one of `from:` (a source column) or `const:` (a constant value)")
        if self.const is not None and self.type is None:
            raise ValueError("a `const:` column needs a `type:` (the staging column type)")
        return self

    @property
    def column_type(self) -> ColumnType | None:
        return parse_type(self.type) if self.type else None


class Schedule(Model):
    every: Duration | None = None
    cron: str | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of `every:` (e.g. 30s) or `cron:` (e.g. \"0 6 * * *\")")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            CronTrigger.from_crontab(self.cron)
        return self


class FlowConfig(Model):
    source: str
    target: str
    table: str | None = None
    query: Path | None = None
    watermark: list[str] = Field(min_length=1)
    key: list[str] = Field(min_length=1)
    staging_table: str
    columns: dict[str, Annotated[ColumnMapping, BeforeValidator(_column_shorthand)]] = Field(min_length=1)
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    lag: Duration = timedelta(0)
    overlap: Duration = timedelta(0)
    schedule: Schedule | None = None
    on_drift: Literal["halt", "halt_on_breaking", "warn"] = "halt"
    enabled: bool = True
    # SQL Server: the first watermark column is a rowversion; reads stop below MIN_ACTIVE_ROWVERSION(), so a
    # transaction still in flight is never skipped (instead of `lag:`, which is for timestamps).
    rowversion: bool = False

    @model_validator(mode="after")
    def _table_or_query(self) -> FlowConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table:` (schema.table) or `query:` (sql/flows/<file>.sql)")
        return self

    @field_validator("columns")
    @classmethod
    def _staging_column_names(cls, value: dict[str, ColumnMapping]) -> dict[str, ColumnMapping]:
        for name in value:
            if not IDENTIFIER_PATTERN.match(name):
                raise ValueError(f"staging column {name!r} is not a plain identifier (letters, digits, _)")
            if name.lower().startswith(CONTROL_COLUMN_PREFIX):
                raise ValueError(f"staging column {name!r}: names starting with stg_ are the agent's control columns")
        return value

    @property
    def source_schema(self) -> str | None:
        return _split_table(self.table)[0] if self.table else None

    @property
    def source_table(self) -> str | None:
        return _split_table(self.table)[1] if self.table else None

    @property
    def staging_table_name(self) -> str:
        return _split_table(self.staging_table)[1]

    @property
    def source_columns(self) -> list[str]:
        """Watermark, key and mapped source columns, each once, in that order: what the flow reads."""
        names: list[str] = []
        for name in [*self.watermark, *self.key, *(m.source for m in self.columns.values() if m.source)]:
            if name not in names:
                names.append(name)
        return names


class SnapshotsConfig(Model):
    dir: Path = Path("schema_snapshots")


class AlertsConfig(Model):
    dir: Path = Path("alerts")


class AgentConfig(Model):
    systems: dict[str, SystemConfig] = Field(min_length=1)
    flows: dict[str, FlowConfig] = Field(min_length=1)
    snapshots: SnapshotsConfig = SnapshotsConfig()
    alerts: AlertsConfig = AlertsConfig()


def _split_table(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return (schema or None), table


@dataclass(frozen=True)
class LoadedConfig:
    """The validated configuration plus where it came from (for paths and messages)."""

    path: Path
    model: AgentConfig
    lines: dict[tuple[str, ...], int]

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, relative: Path) -> Path:
        return relative if relative.is_absolute() else (self.folder / relative).resolve()

    def where(self, *loc: str) -> str:
        """`file:line` of the deepest key of `loc` present in the file."""
        return f"{self.path}:{_line_of(self.lines, loc)}"

    def system_url(self, name: str) -> URL:
        """The connection URL with the password from `password_file`, if any. Never log this: use `redacted_url`."""
        system = self.model.systems[name]
        url = make_url(system.url)
        if system.password_file is not None:
            url = url.set(password=self.resolve(system.password_file).read_text(encoding="utf-8").strip())
        return url

    def redacted_url(self, name: str) -> str:
        return make_url(self.model.systems[name].url).render_as_string(hide_password=True)

    def flows(self, only: str | None = None) -> dict[str, FlowConfig]:
        if only is None:
            return {name: flow for name, flow in self.model.flows.items() if flow.enabled}
        if only not in self.model.flows:
            raise ConfigError([f"{self.path}: no flow named {only!r}{_suggest(only, self.model.flows)}"])
        return {only: self.model.flows[only]}


def load_config(path: str | Path) -> LoadedConfig:
    """Read, expand and validate a configuration file. Raises ConfigError listing every problem."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file ({exc.strerror})"]) from exc
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if node is None:
        raise ConfigError([f"{path}: the file is empty; see config.example.yaml for a complete example"])
    lines: dict[tuple[str, ...], int] = {}
    env_problems: list[str] = []
    data = _to_python(node, (), lines, env_problems, path)
    try:
        model = AgentConfig.model_validate(data)
    except ValidationError as exc:
        # A value whose ${VAR} is unset is already reported; its validation error would only repeat it.
        unset = {p.split(": ", 1)[0] for p in env_problems}
        found = [_describe_error(path, lines, error) for error in exc.errors()]
        raise ConfigError(_by_line(env_problems + [f for f in found if f.split(": ", 1)[0] not in unset])) from exc
    if env_problems:
        raise ConfigError(env_problems)
    loaded = LoadedConfig(path=path, model=_with_absolute_paths(model, path.parent), lines=lines)
    problems = _cross_check(loaded)
    if problems:
        raise ConfigError(_by_line(problems))
    return loaded


def _by_line(problems: list[str]) -> list[str]:
    """Problems in file order (each starts with `file:line:`)."""

    def line(problem: str) -> int:
        match = re.match(r"^.*?:(\d+): ", problem)
        return int(match.group(1)) if match else 0

    return sorted(problems, key=line)


def _with_absolute_paths(model: AgentConfig, folder: Path) -> AgentConfig:
    """Query files resolve against the configuration file's folder, once, so every module sees one path."""
    flows = {
        name: flow.model_copy(update={"query": (folder / flow.query).resolve()})
        if flow.query is not None and not flow.query.is_absolute() else flow
        for name, flow in model.flows.items()
    }
    return model.model_copy(update={"flows": flows})


def _to_python(node: yaml.Node, loc: tuple[str, ...], lines: dict, problems: list[str], path: Path) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result = {}
        for key_node, value_node in node.value:
            key = str(yaml.safe_load(yaml.serialize(key_node)))
            result[key] = _to_python(value_node, loc + (key,), lines, problems, path)
            lines[loc + (key,)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, loc + (str(i),), lines, problems, path) for i, item in enumerate(node.value)]
    value = yaml.safe_load(yaml.serialize(node))
    if isinstance(value, str) and "${" in value:
        value = _expand_env(value, f"{path}:{node.start_mark.line + 1}", problems)
    return value


def _expand_env(value: str, where: str, problems: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            problems.append(f"{where}: environment variable {name} is not set (referenced as ${{{name}}})")
            return ""
        return os.environ[name]

    return ENV_REFERENCE.sub(replace, value)


def _line_of(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _describe_error(path: Path, lines: dict, error: dict) -> str:
    loc = tuple(str(part) for part in error["loc"] if not str(part).startswith(("function-", "tagged-union")))
    loc = tuple(part for part in loc if part not in ("ColumnMapping",))
    key = ".".join(loc) or "(top level)"
    where = f"{path}:{_line_of(lines, loc)}"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"{where}: unknown key `{key}`{_suggest(loc[-1], allowed)}"
    if error["type"] == "missing":
        return f"{where}: `{key}` is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: `{key}`: {message}"


def _suggest(word: str, candidates) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    """Field names (and aliases) of the model at `loc`, walking the model classes from the top."""
    current: Any = AgentConfig
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return []
            current = _unwrap(field.annotation)
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1])
        elif get_origin(current) is list:
            current = _unwrap(get_args(current)[0])
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) in (Annotated, Union) or type(annotation).__name__ == "UnionType":
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0]
    return annotation


def _cross_check(loaded: LoadedConfig) -> list[str]:
    model, problems = loaded.model, []
    system_dialects = {}
    for name, system in model.systems.items():
        try:
            system_dialects[name] = dialects.for_url(make_url(system.url))
        except ValueError as exc:
            problems.append(f"{loaded.where('systems', name, 'url')}: {exc}")
    for name, flow in model.flows.items():
        at = ("flows", name)
        if not NAME_PATTERN.match(name):
            problems.append(f"{loaded.where(*at)}: flow name {name!r} must use only a-z, 0-9 and _")
        for role in ("source", "target"):
            system = getattr(flow, role)
            if system not in model.systems:
                problems.append(
                    f"{loaded.where(*at, role)}: `{role}: {system}` is not a system under `systems:`"
                    f"{_suggest(system, model.systems)}"
                )
        if flow.source == flow.target:
            problems.append(f"{loaded.where(*at, 'target')}: a flow's source and target must be different systems")
        target = model.systems.get(flow.target)
        if target is not None:
            problems.extend(_check_staging_target(loaded, name, flow, target, system_dialects.get(flow.target)))
        source_dialect = system_dialects.get(flow.source)
        if flow.query is not None and not loaded.resolve(flow.query).is_file():
            problems.append(f"{loaded.where(*at, 'query')}: query file {loaded.resolve(flow.query)} does not exist")
        elif flow.query is not None and source_dialect is not None:
            problems.extend(_check_query(loaded, name, flow, source_dialect))
        if flow.rowversion and source_dialect is not None:
            problems.extend(_check_rowversion(loaded, name, flow, source_dialect))
        for column in flow.watermark + flow.key:
            if not IDENTIFIER_PATTERN.match(column):
                problems.append(f"{loaded.where(*at)}: column {column!r} is not a plain identifier")
        if flow.overlap and flow.overlap.total_seconds() < 0:
            problems.append(f"{loaded.where(*at, 'overlap')}: overlap cannot be negative")
    return problems


def _check_staging_target(
    loaded: LoadedConfig, name: str, flow: FlowConfig, target: SystemConfig, dialect: dialects.Dialect | None
) -> list[str]:
    at = ("flows", name)
    if target.staging_schema is None:
        return [
            f"{loaded.where('systems', flow.target)}: system `{flow.target}` is the target of flow `{name}` "
            "but has no `staging_schema:` (the only schema the agent may write to)"
        ]
    problems = []
    schema, table = _split_table(flow.staging_table)
    if schema is not None and schema != target.staging_schema:
        problems.append(
            f"{loaded.where(*at, 'staging_table')}: staging table {flow.staging_table!r} is outside the staging "
            f"schema {target.staging_schema!r}; the agent writes only to {target.staging_schema}.<table>"
        )
    if not IDENTIFIER_PATTERN.match(table):
        problems.append(f"{loaded.where(*at, 'staging_table')}: {table!r} is not a plain identifier")
    staging = target.staging_schema.lower()
    where = loaded.where("systems", flow.target, "staging_schema")
    if staging in (s.lower() for s in target.protected_schemas):
        problems.append(
            f"{where}: staging schema {target.staging_schema!r} is listed under protected_schemas (ERP core tables); "
            f"choose a dedicated staging schema"
        )
    elif dialect is not None and staging in (s.lower() for s in dialect.protected_schemas(make_url(target.url))):
        if staging not in (s.lower() for s in target.allow_staging_in):
            problems.append(
                f"{where}: staging schema {target.staging_schema!r} is a core schema of the {dialect.name} database "
                f"(protected by default: {', '.join(dialect.protected_schemas(make_url(target.url)))}); use a "
                f"dedicated staging schema such as `staging`, or, if the DBA wants the staging tables there, opt in "
                f"explicitly with `allow_staging_in: [{target.staging_schema}]` under systems.{flow.target}"
            )
    return problems


def _check_query(loaded: LoadedConfig, name: str, flow: FlowConfig, dialect: dialects.Dialect) -> list[str]:
    """The query file is one read-only SELECT with every column the flow reads (file:line for each problem)."""
    assert flow.query is not None
    at = f"(query of flow {name}, {loaded.where('flows', name, 'query')})"
    found = source_query.check(flow.query, dialect)
    if found:
        return [f"{problem} {at}" for problem in found]
    query = source_query.load(flow.query, dialect)
    problems = []
    if query.uses_with and not dialect.derived_table_allows_with:
        problems.append(f"{query.where(1)}: WITH (a CTE) cannot stand inside a derived table on {dialect.name}, and "
                        f"the agent reads the query as one; write the CTE as a subquery in FROM {at}")
    select_line = min((o.line for o in query.outputs), default=1)
    for column in flow.source_columns:
        output = query.output(column, dialect)
        role = "watermark" if column in flow.watermark else "key" if column in flow.key else "mapped"
        if output is None:
            names = ", ".join(o.name for o in query.outputs)
            problems.append(f"{query.where(select_line)}: the query has no output column {column!r}, which flow {name} "
                            f"reads as a {role} column (its columns: {names}) {at}")
        elif output.origin is None and column in flow.watermark:
            problems.append(f"{query.where(output.line)}: watermark column {column!r} is an expression; the keyset read "
                            f"needs a plain table column (with an index) {at}")
    for staging, mapping in flow.columns.items():
        output = query.output(mapping.source, dialect) if mapping.source else None
        if output is not None and output.origin is None and mapping.type is None and mapping.map is None:
            problems.append(f"{query.where(output.line)}: {output.name!r} is an expression, so the agent cannot learn "
                            f"its type; give staging column {staging!r} a `type:` {at}")
    return problems


def _check_rowversion(loaded: LoadedConfig, name: str, flow: FlowConfig, dialect: dialects.Dialect) -> list[str]:
    where = loaded.where("flows", name, "rowversion")
    if not dialect.supports_rowversion_watermark:
        return [f"{where}: `rowversion: true` is for SQL Server rowversion columns; system {flow.source} is {dialect.name}"]
    problems = []
    for key in ("lag", "overlap"):
        if getattr(flow, key):
            problems.append(f"{loaded.where('flows', name, key)}: `{key}:` measures time, but flow {name} has a rowversion "
                            f"watermark: MIN_ACTIVE_ROWVERSION() already keeps reads behind transactions in flight; "
                            f"remove `{key}:`")
    return problems
