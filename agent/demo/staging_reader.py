"""What the agent wrote into each flow's target, read as `mes-erp-agent status` reads it (the target's read-only
engine): the ERP's staging tables for the MES -> ERP flows, the MES inbound table for the ERP -> MES flow."""

from __future__ import annotations

import sqlalchemy as sa

from agent import pipeline, report
from agent.connect import Systems
from agent.demo.screen import FlowStats

ERP_SYSTEM, MES_SYSTEM = "erp", "mes"  # the systems' names in demo.yaml


class StagingReader:
    """Staging, quarantine and backlog queries per flow; remembers per flow which rows it has already seen."""

    def __init__(self, systems: Systems, contexts: dict[str, pipeline.FlowContext]):
        self.systems = systems
        self.contexts = contexts

    def engine(self, flow: str) -> sa.Engine:
        """A read-only engine on the flow's target system (where its staging table lives)."""
        return self.systems.source(self.contexts[flow].flow.target)

    def staging_sql(self, flow: str) -> str:
        ctx = self.contexts[flow]
        return ctx.target_dialect.table(ctx.staging.schema, ctx.staging.name)

    def quarantine_sql(self, flow: str) -> str:
        return self.contexts[flow].control.quarantine

    def remember_positions(self, f: FlowStats) -> None:
        """From here on, `new_staging_rows` and `new_quarantine_rows` return only rows written after this call."""
        with self.engine(f.name).connect() as conn:
            f.last_stg_id = conn.execute(sa.text(
                f"SELECT COALESCE(MAX(stg_id), 0) FROM {self.staging_sql(f.name)}")).scalar_one()
            f.last_quarantine_id = conn.execute(sa.text(
                f"SELECT COALESCE(MAX(quarantine_id), 0) FROM {self.quarantine_sql(f.name)}")).scalar_one()

    def new_staging_rows(self, f: FlowStats) -> list[tuple[str, str]]:
        """(stg_source_key, stg_source_version) of the flow's staging rows written since the last call."""
        with self.engine(f.name).connect() as conn:
            rows = conn.execute(sa.text(
                f"SELECT stg_id, stg_source_key, stg_source_version FROM {self.staging_sql(f.name)} "
                "WHERE stg_id > :last AND stg_flow = :flow ORDER BY stg_id"), {"last": f.last_stg_id, "flow": f.name}).all()
        if rows:
            f.last_stg_id = rows[-1].stg_id
        return [(r.stg_source_key, r.stg_source_version) for r in rows]

    def new_quarantine_rows(self, f: FlowStats) -> list[tuple[str, str]]:
        """(source_key, source_version) of the flow's quarantined rows written since the last call."""
        with self.engine(f.name).connect() as conn:
            rows = conn.execute(sa.text(
                f"SELECT quarantine_id, source_key, source_version FROM {self.quarantine_sql(f.name)} "
                "WHERE quarantine_id > :last AND flow = :flow ORDER BY quarantine_id"),
                {"last": f.last_quarantine_id, "flow": f.name}).all()
        if rows:
            f.last_quarantine_id = rows[-1].quarantine_id
        return [(r.source_key, r.source_version) for r in rows]

    def pending(self, f: FlowStats) -> int | None:
        """Staging rows the ERP's import job has not taken yet, as `status` counts them."""
        ctx = self.contexts[f.name]
        with self.engine(f.name).connect() as conn:
            status = report.flow_status(conn, ctx.target_dialect, ctx.control, self.staging_sql(f.name), f.name,
                                        f.watermark)
        return status.pending_rows
