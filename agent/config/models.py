"""The configuration's pydantic models, durations and name patterns (no I/O: loading is agent/config/loader.py)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from sqlalchemy.engine import make_url

from agent.config.basics import (
    IDENTIFIER_PATTERN, Duration, FilePath, Model,
)
from agent.config.interface import AGENT_LAYOUT_OUTCOME, DeletesConfig, LedgerConfig, LocksConfig, OutcomeConfig, ReconcileConfig
from agent.contract import CONTROL_COLUMN_PREFIX
from agent.dialects import parse_any_type
from agent.types import ColumnType

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
    password_file: FilePath | None = None
    staging_schema: str | None = None
    # Schemas of ERP core tables: never a staging schema. The database's own core schemas (dbo, public, ...,
    # see `Dialect.default_protected_schemas`) are protected as well unless named under `allow_staging_in:`.
    protected_schemas: list[str] = Field(default_factory=list)
    allow_staging_in: list[str] = Field(default_factory=list)
    attach: dict[str, FilePath] = Field(default_factory=dict)  # SQLite only: schema name -> database file
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
            parse_any_type(value)
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
        return parse_any_type(self.type) if self.type else None


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
    query: FilePath | None = None
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
    # `agent`: the stg_* layout of a table `sql ddl` creates. `vendor`: an interface table the ERP vendor defines;
    # the agent adds no columns to it (its control data lives in agent_ledger) and creates no DDL for it.
    layout: Literal["agent", "vendor"] = "agent"
    # Vendor layout: a staging column the agent fills with the row's agent_ledger entry_id (an integer), so an
    # import outcome can be traced back to the MES row (e.g. SOURCE_LINE_ID, INTERFACE_ID).
    reference: str | None = None
    # How the ERP reports its import outcome (agent/config/interface.py); the stg_* layout needs none.
    outcome: OutcomeConfig | None = None
    # Recovery passes (agent/config/interface.py, agent/recovery): reconciliation past the overlap window, hard-delete tombstones.
    reconcile: ReconcileConfig | None = None
    deletes: DeletesConfig | None = None

    @model_validator(mode="after")
    def _table_or_query(self) -> FlowConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table:` (schema.table) or `query:` (sql/flows/<file>.sql)")
        return self

    @model_validator(mode="after")
    def _layout_keys(self) -> FlowConfig:
        if self.layout == "agent" and self.reference is not None:
            raise ValueError("`reference:` is for `layout: vendor` (the stg_* layout traces rows by stg_source_key)")
        if self.reference is not None and not IDENTIFIER_PATTERN.match(self.reference):
            raise ValueError(f"reference column {self.reference!r} is not a plain identifier (letters, digits, _)")
        if self.reference is not None and self.reference in self.columns:
            raise ValueError(f"reference column {self.reference!r} is also under `columns:`; the agent fills it itself")
        if self.layout == "vendor" and self.outcome is not None and self.reference is None:
            raise ValueError("a vendor-layout flow with `outcome:` needs `reference:` (the staging column the agent "
                             "fills with its ledger entry id), so an outcome can be traced to the MES row")
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
    def vendor_layout(self) -> bool:
        return self.layout == "vendor"

    @property
    def import_outcome(self) -> OutcomeConfig | None:
        """How the ERP reports this flow's import outcome: its `outcome:`, the stg_* default, or None (not watched)."""
        if self.outcome is not None:
            return self.outcome
        return None if self.vendor_layout else AGENT_LAYOUT_OUTCOME

    @property
    def source_schema(self) -> str | None:
        return split_table(self.table)[0] if self.table else None

    @property
    def source_table(self) -> str | None:
        return split_table(self.table)[1] if self.table else None

    @property
    def staging_table_name(self) -> str:
        return split_table(self.staging_table)[1]

    @property
    def source_columns(self) -> list[str]:
        """Watermark, key and mapped source columns, each once, in that order: what the flow reads."""
        names: list[str] = []
        for name in [*self.watermark, *self.key, *(m.source for m in self.columns.values() if m.source)]:
            if name not in names:
                names.append(name)
        return names


class SnapshotsConfig(Model):
    dir: FilePath = Path("schema_snapshots")


class WebhookAlertConfig(Model):
    url: str
    timeout: Duration = timedelta(seconds=10)


class EmailAlertConfig(Model):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password_file: FilePath | None = None  # read only when sending, never logged
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _login_needs_both(self) -> EmailAlertConfig:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("set both `username` and `password_file` (for SMTP login), or neither")
        return self


class QuarantineAlertConfig(Model):
    max_rows: int = Field(default=100, ge=0)


class BacklogAlertConfig(Model):
    max_pending_age: Duration = timedelta(minutes=15)


class AlertRateLimit(Model):
    messages: int = Field(default=10, ge=1)
    per: Duration = timedelta(minutes=1)


class AlertRetry(Model):
    first_wait: Duration = timedelta(seconds=2)
    max_wait: Duration = timedelta(minutes=5)


class AlertsConfig(Model):
    dir: FilePath = Path("alerts")
    # How often the running agent checks quarantine and backlog (ERP queries of their own, kept off the polls).
    check_every: Duration = timedelta(seconds=30)
    webhook: WebhookAlertConfig | None = None
    email: EmailAlertConfig | None = None
    apprise: list[str] = Field(default_factory=list)
    failing_for: Duration = timedelta(minutes=5)
    quarantine: QuarantineAlertConfig = QuarantineAlertConfig()
    backlog: BacklogAlertConfig = BacklogAlertConfig()
    rate_limit: AlertRateLimit = AlertRateLimit()
    retry: AlertRetry = AlertRetry()
    exit_wait: Duration = timedelta(seconds=10)


class HttpConfig(Model):
    """`http: {bind: "127.0.0.1:9464"}`: serve /healthz and /metrics (Prometheus) while the agent runs."""

    bind: str

    @field_validator("bind")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected host:port such as 127.0.0.1:9464 (or [::1]:9464), got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])


class FlowRetry(Model):
    """A failed poll: the flow waits before it touches a database again, the wait growing (with jitter) up to max_wait."""

    first_wait: Duration = timedelta(seconds=1)
    max_wait: Duration = timedelta(minutes=1)

    @model_validator(mode="after")
    def _ordered(self) -> FlowRetry:
        if self.first_wait <= timedelta(0) or self.max_wait < self.first_wait:
            raise ValueError("expected 0 < first_wait <= max_wait, e.g. {first_wait: 1s, max_wait: 1m}")
        return self


class AgentConfig(Model):
    systems: dict[str, SystemConfig] = Field(min_length=1)
    flows: dict[str, FlowConfig] = Field(min_length=1)
    snapshots: SnapshotsConfig = SnapshotsConfig()
    alerts: AlertsConfig = AlertsConfig()
    retry: FlowRetry = FlowRetry()  # every flow's retry after a failed poll (database down, refused, restarting)
    http: HttpConfig | None = None  # None: no HTTP endpoint
    ledger: LedgerConfig = LedgerConfig()  # how long agent_ledger keeps what each flow staged
    locks: LocksConfig = LocksConfig()  # several agents on one configuration: how often flow locks are checked
    # SIGTERM/SIGINT/service stop: flows finish the batch in flight; the agent exits (0) within this time at most,
    # a batch still being written then rolled back by the database (the next run re-reads it).
    stop_timeout: Duration = timedelta(seconds=30)

    @field_validator("stop_timeout")
    @classmethod
    def _stop_timeout_sensible(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(hours=1):
            raise ValueError("expected a stop timeout between 1s and 1h, e.g. 30s")
        return value


def split_table(name: str) -> tuple[str | None, str]:
    """`schema.table` -> (schema, table); a name without a dot has no schema."""
    schema, _, table = name.rpartition(".")
    return (schema or None), table
