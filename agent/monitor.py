"""The running agent's monitor: after every poll it feeds FlowHealth and opens or resolves `flow_failing`;
a periodic check (every `alerts.check_every`, off the polls so they stay cheap) measures lag and the ERP's import
outcome (pending, error, done) and opens or resolves `quarantine`, `backlog` and `import_errors` incidents, and
`outcome_unreadable` when the target refuses the import outcome's queries (a vendor update changed their columns).
Every incident goes through the agent's one IncidentBook.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import sqlalchemy as sa

from agent.alerts import IncidentBook, import_errors, kinds
from agent.config import LoadedConfig
from agent.connect import known_passwords, scrub
from agent.contract import QUARANTINE_TABLE
from agent.errors import AgentError
from agent.health import FlowHealth
from agent.health.probe import measure_outcomes, refused_statement
from agent.outcome import OutcomeCounts
from agent.pipeline import FlowContext, describe_error
from agent.report import FAILED, FlowReport, quarantine_count
from agent.retry import first_line
from agent.runtime import StatusFile

log = logging.getLogger("mes_erp_agent")
Clock = Callable[[], dt.datetime]
# Rows in error the check lists per flow (only while some are): new ones open an incident. Beyond this many at once,
# incidents of the flow resolve only once fewer are in error (the listing no longer shows every row).
LISTED_ERRORS = 1000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class Monitor:
    """Thread-safe as far as it needs to be: each flow's polls call it from that flow's job only."""

    def __init__(self, config: LoadedConfig, book: IncidentBook, health: FlowHealth, status: StatusFile | None = None,
                 clock: Clock = utc_now):
        self.config, self.book, self.health, self.status, self.clock = config, book, health, status, clock
        self.alerts = config.model.alerts
        self.secrets = known_passwords(config)
        self._failing_since: dict[str, dt.datetime] = {}
        self._attempts: dict[str, int] = {}

    # --- after every poll ------------------------------------------------------------------------
    def after_poll(self, report: FlowReport, next_run: dt.datetime | None = None) -> None:
        before = self.health.state(report.flow)
        self.health.record(report)
        self.health.set_next_run(report.flow, next_run)
        if report.outcome == FAILED:
            self._failed(report)
        else:
            self._recovered(report.flow)
        self.count_open_incidents()
        if self.status is not None:
            # At most one write a second, but never a state change left out: flows polling in the same tick (one
            # cadence) end their polls within that second, and `status` must show the one that began failing.
            self.status.update(force=self.health.state(report.flow) != before)

    def _failed(self, report: FlowReport) -> None:
        flow, now = report.flow, self.clock()
        since = self._failing_since.setdefault(flow, now)
        self._attempts[flow] = self._attempts.get(flow, 0) + 1
        if now - since < self.alerts.failing_for or self.book.current(f"flow_failing:{flow}") is not None:
            return
        config = self.config.model.flows[flow]
        table = config.table or str(config.query)
        error = first_line(scrub(report.message, self.secrets))
        self.book.open(kinds.flow_failing(flow, report.system, table, error, since, self.alerts.failing_for,
                                          self._attempts[flow], self.config.path))

    def _recovered(self, flow: str) -> None:
        attempts = self._attempts.pop(flow, 0)
        self._failing_since.pop(flow, None)
        incident = self.book.current(f"flow_failing:{flow}")
        if incident is not None:
            self._resolve(kinds.flow_recovered(incident, self.clock(), attempts))

    # --- periodic ----------------------------------------------------------------------------------
    def check(self, contexts: dict[str, FlowContext]) -> None:
        """Lag, backlog and quarantine of every prepared flow; a flow whose ERP cannot be read is left as it is."""
        for name, ctx in contexts.items():
            try:
                self._check_flow(ctx)
            except (sa.exc.SQLAlchemyError, AgentError, OSError) as exc:  # the flow's own polls report the outage
                log.debug("flow %s: quarantine and backlog not checked: %s", name, first_line(scrub(str(exc), self.secrets)))
        self.count_open_incidents()
        if self.status is not None:
            self.status.update(force=True)

    def _check_flow(self, ctx: FlowContext) -> None:
        now = self.clock()
        measurement, reading = measure_outcomes(ctx, now)
        counts, refused = reading.counts, reading.refused
        self.health.record_measurement(ctx.name, measurement)
        self.health.record_outcomes(ctx.name, counts)
        if measurement.pending_rows is not None:
            self._check_backlog(ctx, measurement.pending_rows, measurement.oldest_pending_age_seconds, now)
        if counts is not None:
            try:
                self._check_import_errors(ctx, counts, now)
            except sa.exc.DBAPIError as exc:  # the messages' query (outcome_errors.sql, an error table's columns)
                if not refused_statement(exc):
                    raise
                refused = describe_error(exc)
        if refused is not None:
            self._outcome_unreadable(ctx, refused, now)
        elif counts is not None:
            self._outcome_readable(ctx, now)
        with ctx.target_engine.connect() as conn:
            rows, oldest = quarantine_count(conn, ctx.target_dialect, ctx.control, ctx.name)
        self._check_quarantine(ctx, rows, oldest, now)

    def _check_backlog(self, ctx: FlowContext, pending: int, age: float | None, now: dt.datetime) -> None:
        limit = self.alerts.backlog.max_pending_age
        key = f"backlog:{ctx.name}"
        incident = self.book.current(key)
        if pending and age is not None and age > limit.total_seconds():
            if incident is None and ctx.outcome is not None:
                oldest = now - dt.timedelta(seconds=round(age))
                waiting = ctx.outcome.pending_words()
                query = None if waiting == "PENDING" else ctx.outcome.pending_query()
                self.book.open(kinds.backlog(ctx.name, ctx.flow.target, ctx.outcome.staging_name, pending, oldest, limit,
                                             now, waiting, query))
        elif incident is not None:
            self._resolve(kinds.backlog_resolved(incident, pending, now))

    def _check_import_errors(self, ctx: FlowContext, counts: OutcomeCounts, now: dt.datetime) -> None:
        """One incident per wave of rows in error (agent/alerts/import_errors.py); each resolves when none of its
        rows is in error any more. The rows are listed only while some are in error or an incident is open."""
        source = ctx.outcome
        assert source is not None
        open_incidents = [i for i in self.book.open_incidents() if i.kind == import_errors.KIND and i.flow == ctx.name]
        if not counts.error_rows and not open_incidents:
            return
        rows = []
        if counts.error_rows:
            with ctx.target_engine.connect() as conn:
                rows = source.errors(conn, LISTED_ERRORS)
        in_error = {r.row_id for r in rows}
        complete = len(rows) < LISTED_ERRORS
        known: set[int] = set()
        for incident in open_incidents:
            listed = import_errors.incident_rows(incident)
            if complete and not listed & in_error:
                self._resolve(import_errors.import_errors_resolved(incident, counts.error_rows, now))
            else:
                known |= listed
        new = [r for r in rows if r.row_id not in known]
        if new:
            self.book.open(import_errors.import_errors(ctx.name, ctx.flow, ctx.flow.target, source.staging_name,
                                                       source.error_words(), new, max(counts.error_rows, len(rows)), now,
                                                       self.config.path))

    def _outcome_unreadable(self, ctx: FlowContext, error: str, now: dt.datetime) -> None:
        if self.book.current(f"outcome_unreadable:{ctx.name}") is not None or ctx.outcome is None:
            return
        source, outcome = ctx.outcome, ctx.outcome.outcome
        tables, columns = [source.staging_name], list(outcome.columns)
        if outcome.error_table is not None and source.error_table_name:
            tables.append(source.error_table_name)
            columns += [f"{outcome.error_table.table}.{c}" for c in (outcome.error_table.link, *outcome.error_table.text)]
        self.book.open(kinds.outcome_unreadable(ctx.name, ctx.flow.target, tables, columns,
                                                first_line(scrub(error, self.secrets)), now, self.config.path))

    def _outcome_readable(self, ctx: FlowContext, now: dt.datetime) -> None:
        incident = self.book.current(f"outcome_unreadable:{ctx.name}")
        if incident is not None:
            self._resolve(kinds.outcome_readable(incident, now))

    def _check_quarantine(self, ctx: FlowContext, rows: int, oldest: dt.datetime | None, now: dt.datetime) -> None:
        limit = self.alerts.quarantine.max_rows
        incident = self.book.current(f"quarantine:{ctx.name}")
        if rows > limit:
            if incident is None:
                table = f"{ctx.staging.schema}.{QUARANTINE_TABLE}"
                self.book.open(kinds.quarantine(ctx.name, ctx.flow.target, table, rows, limit, oldest, now))
        elif incident is not None:
            self._resolve(kinds.quarantine_resolved(incident, rows, limit, now))

    # --- shared ------------------------------------------------------------------------------------
    def count_open_incidents(self) -> None:
        """Per flow, the open incidents that name it (drift names every flow it halts)."""
        counts = dict.fromkeys(self.health_flows(), 0)
        for incident in self.book.open_incidents():
            for flow in (incident.flow or "").split(", "):
                if flow in counts:
                    counts[flow] += 1
        for flow, count in counts.items():
            self.health.set_open_incidents(flow, count)

    def health_flows(self) -> list[str]:
        return [f["flow"] for f in self.health.snapshot()]

    def _resolve(self, resolved: kinds.Resolved) -> None:
        self.book.resolve(resolved.key, resolved.title, resolved.body, resolved.data, resolved.at)
