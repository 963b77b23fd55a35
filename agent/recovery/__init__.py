"""Recovery past the polls (issue 11): reconciliation, hard deletes, backfill.

buckets.py     buckets of the first watermark column; count and checksum per bucket on the source and in agent_ledger
passes.py      the reconcile pass (stage what the polls missed) and the delete pass (tombstones), with narrowing
tombstones.py  which keys are gone from the source, and their tombstone rows (`stg_change = 'D'`)
backfill.py    re-read a range without moving the live watermark, resumable (`<flow>#backfill` in agent_watermark)
jobs.py        the passes as scheduled jobs of the running agent, and the `late_rows` incident
statements.py  their statements for render-sql

Everything reaches staging through the write path (agent/write.py), so agent_ledger makes it exactly-once.
"""

from __future__ import annotations

from agent.recovery.backfill import BackfillProgress, BackfillRefused, backfill, parse_bound, position_key
from agent.recovery.buckets import NotReconcilable
from agent.recovery.jobs import PassJob, record_incident, sync_jobs
from agent.recovery.passes import DELETES, RECONCILE, PassReport, detect_deletes, reconcile
from agent.recovery.statements import families_of, recovery_statements

__all__ = [
    "DELETES", "RECONCILE", "BackfillProgress", "BackfillRefused", "NotReconcilable", "PassJob", "PassReport",
    "backfill", "detect_deletes", "families_of", "parse_bound", "position_key", "reconcile", "record_incident",
    "recovery_statements", "sync_jobs",
]
