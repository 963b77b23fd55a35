"""The recovery passes' statements for `render-sql`, built by the functions the passes use.

Without a connection the source columns' types come from the schema snapshot (agent/review.py reads it); a column
whose type is unknown there is shown as the pass would run it for an unknown type: counts only, no checksum.
"""

from __future__ import annotations

from typing import Any

from agent.config import FlowConfig
from agent.contract import ControlTables
from agent.dialects import Dialect
from agent.read import read_sql, source_sql_for
from agent.recovery.backfill import count_statement_sql, position_key
from agent.recovery.buckets import source_context
from agent.recovery.tombstones import keys_sql

# (system role, template, purpose, sql, meanings of its bind parameters)
Reviewed = tuple[str, str, str, str, dict[str, str]]


def recovery_statements(name: str, flow: FlowConfig, source: Dialect, target: Dialect, schema: str,
                        families: dict[str, str | None]) -> list[Reviewed]:
    first = flow.watermark[0]
    source_sql = source_sql_for(source, flow)
    control = ControlTables.in_schema(target, schema)
    canonical = all(families.get(c) in source.canonical_families for c in [*flow.key, *flow.watermark])
    families = {**families, first: families.get(first) or "timestamp"}
    bucket = {
        "prefix": "bucket width in characters of the canonical text (4 year, 7 month, 10 day, 13 hour, 16 minute, 19 second)",
        "lower_bound": f"start of the bucket ({first}, inclusive)",
        "upper_bound": f"end of the bucket ({first}, exclusive)",
        "lower_text": f"start of the bucket as version text ({first})",
        "upper_text": f"end of the bucket as version text ({first}, exclusive)",
        "flow": repr(name),
    }
    passes = "`reconcile` and `deletes` passes"
    keys = {f"k{i}_{j}": f"key column {column} of candidate key {i + 1}" for i in range(2) for j, column in enumerate(flow.key)}
    owner = repr(position_key(name))
    statements: list[Reviewed] = [
        ("source", "reconcile_source_buckets", f"{passes}: per bucket of {first}, the source rows' count and the checksum of "
         f"their key and version text{'' if canonical else ' (counts only: a column type without exact SQL text)'}",
         source.render("reconcile_source_buckets", **source_context(source, flow, source_sql, families, canonical)), bucket),
        ("target", "reconcile_ledger_buckets", f"{passes}: the same per bucket for what agent_ledger and agent_quarantine "
         "hold (each key's current version)", target.render(
             "reconcile_ledger_buckets", ledger_table=control.ledger, quarantine_table=control.quarantine), bucket),
        ("target", "reconcile_ledger_entries", f"{passes}: a narrowed bucket's ledger and quarantine entries",
         target.render("reconcile_ledger_entries", ledger_table=control.ledger, quarantine_table=control.quarantine),
         bucket),
        ("source", "read_batch", f"{passes}, a narrowed bucket (and `backfill`, a range): its rows, with the flow's keyset "
         "read (cursor from, then after); missing rows and tombstones go through the batch statements above, which "
         "move no watermark", read_sql(source, flow, source_sql, "from", True),
         {"lower_bound": f"start of the bucket or range ({first})", "upper_bound": f"end of the bucket or range ({first}, "
          "inclusive)", "batch_size": f"{flow.batch_size} (batch_size)"}),
        ("target", "ledger_oldest", "`deletes` pass: where the comparison starts (the oldest version agent_ledger holds)",
         target.render("ledger_oldest", ledger_table=control.ledger),
         {"flow": repr(name), "tombstone": "'D' (tombstone versions start with D|)"}),
        ("source", "reconcile_source_keys", "`deletes` pass: which candidate keys the source still has (shown for 2; up "
         "to 500 per statement)", keys_sql(source, flow.key, source_sql, 2), keys),
        ("source", "source_count", "`backfill`: the range's row count, for the progress bar",
         count_statement_sql(source, source_sql, first),
         {"lower_bound": f"--from ({first})", "upper_bound": f"--to ({first}, inclusive)"}),
        ("target", "watermark_select", f"`backfill`: its own position in agent_watermark (flow = {owner}); moved by "
         "each batch's watermark_insert/watermark_update", target.render("watermark_select", watermark_table=control.watermark),
         {"flow": f"{owner} (the backfill's position), and {name!r} (the live watermark, read only)"}),
    ]
    return statements


def families_of(types: dict[str, Any]) -> dict[str, str | None]:
    """Column -> family (naive timestamps only) from snapshot column types."""
    return {name: (None if t.family == "timestamp" and t.timezone else t.family) for name, t in types.items()}
