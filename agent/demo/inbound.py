"""Step 5, ERP -> MES: each schedule change the ERP planner made, as the MES inbound table holds it.

For every simulated ERP change (a rescheduled order, a changed quantity, a new released order) the summary looks
up its (key, version) in the MES inbound staging table and shows the row the MES's import job will read: exactly
one row per change, with the ERP's values.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from rich.console import Console
from rich.text import Text

from agent.demo.screen import FlowStats, Printer, rows_table
from agent.demo.shopfloor import Change
from agent.demo.staging_reader import StagingReader

SHOWN = 12  # changes listed; the check covers all of them


def inbound_rows(reader: StagingReader, flow: FlowStats, changes: Sequence[Change]) -> dict[tuple[str, str], list[sa.Row]]:
    """(key, version) of each change -> its rows in the flow's staging table (one, when all is well)."""
    found: dict[tuple[str, str], list[sa.Row]] = {(c.key, c.version): [] for c in changes}
    if not changes:
        return found
    with reader.engine(flow.name).connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT stg_id, stg_source_key, stg_source_version, stg_status, qty, scheduled_start, due_date "
            f"FROM {reader.staging_sql(flow.name)} WHERE stg_flow = :flow ORDER BY stg_id"), {"flow": flow.name}).all()
    for row in rows:
        if (row.stg_source_key, row.stg_source_version) in found:
            found[(row.stg_source_key, row.stg_source_version)].append(row)
    return found


def show_schedule_changes(console: Console, printer: Printer, reader: StagingReader, flow: FlowStats,
                          changes: Sequence[Change]) -> bool:
    """Print the ERP -> MES part of the summary; True when every change is in the inbound table exactly once."""
    console.print()
    printer.say(f"[bold]ERP -> MES: the production schedule in the MES inbound table[/] ({flow.target.upper()} "
                f"{flow.staging}): one row per ERP change, PENDING until the MES's import job turns it into a work order")
    if not changes:
        console.print(Text("The planner made no change (the shop floor ran 0 s).", style="dim"))
        return True
    found = inbound_rows(reader, flow, changes)
    wrong = [c for c in changes if len(found[(c.key, c.version)]) != 1]
    if wrong:
        printer.say(f"[bold red]CHECK FAILED[/] {len(wrong)} of {len(changes)} ERP changes are not in {flow.staging} "
                    "exactly once:")
        for c in wrong[:10]:
            console.print(f"  {c.key} {c.version}: {c.what} ({len(found[(c.key, c.version)])} rows)", markup=False,
                          highlight=False)
    else:
        printer.say(f"[green]check[/] each of the {len(changes)} ERP schedule changes is in {flow.staging} exactly once, "
                    "with the ERP's values")
    table_rows = []
    for c in changes[:SHOWN]:
        rows = found[(c.key, c.version)]
        if rows:
            r = rows[0]
            table_rows.append((c.what, r.stg_id, r.stg_source_version, r.qty, r.scheduled_start, r.due_date, len(rows)))
        else:
            table_rows.append((c.what, None, c.version, None, None, None, 0))
    more = f" (the first {SHOWN} of {len(changes)})" if len(changes) > SHOWN else ""
    console.print(rows_table(f"ERP changes and their rows in {flow.staging}{more}",
                             ["ERP change", "stg_id", "stg_source_version", "qty", "scheduled_start", "due_date", "rows"],
                             table_rows))
    return not wrong
