"""Monitoring: each flow's state and figures (FlowHealth), Prometheus metrics, and the /healthz, /metrics server.

The scheduler feeds a FlowHealth (see agent/health/registry.py for the calls); `status --json` shows its
snapshot; HealthServer serves it when the configuration has `http: {bind: ...}`.
"""

from agent.health.metrics import AgentMetrics
from agent.health.probe import Measurement, measure
from agent.health.registry import HEALTHY_STATES, FlowHealth
from agent.health.server import HealthServer, HttpBindError

__all__ = ["HEALTHY_STATES", "AgentMetrics", "FlowHealth", "HealthServer", "HttpBindError", "Measurement", "measure"]
