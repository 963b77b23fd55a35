"""The configuration file: YAML in, validated models out, every problem reported as file:line.

A leaf package: it imports no agent module that imports it back. `models` holds the pydantic models,
durations and name patterns; `loader` reads the file (line numbers, ${ENV}, pydantic errors as file:line)
into a `LoadedConfig`; `checks` cross-checks the sections (query files through agent.source_query).
Every name other modules import lives on in this package's namespace.
"""

from __future__ import annotations

from agent.config.checks import cross_check
from agent.config.loaded import LoadedConfig, suggest
from agent.config.loader import ENV_REFERENCE, load_config
from agent.config.basics import IDENTIFIER_PATTERN, MAX_DURATION, NAME_PATTERN, Duration, Model, duration_text, parse_duration
from agent.config.interface import AGENT_LAYOUT_OUTCOME, ROW_GONE, LedgerConfig, LocksConfig, OutcomeConfig
from agent.config.interface import RECONCILE_MARGIN, DeletesConfig, ReconcileConfig
from agent.config.models import (
    CONTROL_COLUMN_PREFIX, PASSWORD_PLACEHOLDER, AgentConfig, AlertsConfig, ColumnMapping, EmailAlertConfig, FlowConfig,
    FlowRetry, GrantsConfig, HttpConfig, Schedule, SnapshotsConfig, SystemConfig, check_login, check_placeholder,
    split_table,
)

__all__ = [
    "AGENT_LAYOUT_OUTCOME",
    "CONTROL_COLUMN_PREFIX",
    "ENV_REFERENCE",
    "IDENTIFIER_PATTERN",
    "MAX_DURATION",
    "NAME_PATTERN",
    "PASSWORD_PLACEHOLDER",
    "RECONCILE_MARGIN",
    "ROW_GONE",
    "AgentConfig",
    "AlertsConfig",
    "ColumnMapping",
    "DeletesConfig",
    "Duration",
    "EmailAlertConfig",
    "FlowConfig",
    "FlowRetry",
    "GrantsConfig",
    "HttpConfig",
    "LedgerConfig",
    "LoadedConfig",
    "LocksConfig",
    "Model",
    "OutcomeConfig",
    "ReconcileConfig",
    "Schedule",
    "SnapshotsConfig",
    "SystemConfig",
    "check_login",
    "check_placeholder",
    "cross_check",
    "duration_text",
    "load_config",
    "parse_duration",
    "split_table",
    "suggest",
]
