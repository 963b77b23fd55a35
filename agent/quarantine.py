"""`quarantine list` and `quarantine replay`: the rows agent_quarantine holds, and staging them once the mapping is fixed.

Replay takes the source row as it was read and stored (agent_quarantine.source_row, typed JSON: agent/row_json.py),
never the current MES row: it stages exactly the (key, version) that was quarantined, with the values it had. It maps
them with the flow's current RowMapper (pipeline.prepare), against the live staging columns, and stages what now maps
through the normal write path (write.insert_new_rows: agent_ledger first, so a row is staged once, whoever stages it
first: this replay, another one, or the running agent re-reading its overlap window). Each page of quarantined rows is
one ERP transaction: ledger and staging rows, the quarantine rows marked replayed (time, batch id, outcome), the new
reasons of rows that still fail, and an agent_run row for the batch. The live watermark is never read or moved.

A quarantined version whose key has a newer version staged (it came through later, or an earlier page of this
replay staged it) is not staged: an ERP import job applies staging rows in load order, so the older state would
overwrite the newer one. It is marked `superseded` instead, and leaves the quarantine count like a replayed row.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent import log_context, row_json
from agent.config import LoadedConfig
from agent.connect import Systems
from agent.contract import ControlTables, version_text
from agent.ledger import naive_utc
from agent.pipeline import FlowContext, new_batch_id
from agent.report import BatchReport, record_batch, utc_now
from agent.write import insert_new_rows

log = logging.getLogger("mes_erp_agent")

STAGED, SUPERSEDED, FAILING = "staged", "superseded", "still failing"
_TIMESTAMP: sa.types.TypeEngine[Any] = sa.DateTime()
_LIST_TYPES: dict[str, sa.types.TypeEngine[Any]] = {"quarantined_at": _TIMESTAMP, "replayed_at": _TIMESTAMP}
# A page that loses a race for a ledger entry (another replay, or the running agent, staged the row first: a unique
# key violation, or a deadlock on MariaDB) is rolled back by the database; it is read and written again, and the
# ledger then says the row is staged. Writing a page again is always safe: the ledger decides what is staged.
ATTEMPTS = 3


# --- list --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuarantinedRow:
    flow: str
    quarantine_id: int
    source_key: str
    source_version: str
    quarantined_at: str | None  # UTC text, as `status` shows times
    reason: str
    replayed_at: str | None
    replay_batch_id: str | None
    replay_outcome: str | None  # 'staged' or 'superseded' once replayed

    @property
    def replayed(self) -> bool:
        return self.replayed_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "replayed": self.replayed}


def list_rows(config: LoadedConfig, systems: Systems, name: str) -> list[QuarantinedRow]:
    """Every row of flow `name` in agent_quarantine, oldest first (raises SQLAlchemyError when the ERP is down)."""
    flow = config.model.flows[name]
    dialect = systems.dialect(flow.target)
    control = ControlTables.in_schema(dialect, config.model.systems[flow.target].staging_schema or "")
    statement = dialect.statement("quarantine_list", result_types=_LIST_TYPES, quarantine_table=control.quarantine)
    with systems.target(flow.target).connect() as conn:
        rows = conn.execute(statement, {"flow": name}).all()
        conn.rollback()
    return [
        QuarantinedRow(r.flow, int(r.quarantine_id), r.source_key, r.source_version, _utc_text(dialect, r.quarantined_at),
                       r.reason, _utc_text(dialect, r.replayed_at), r.replay_batch_id, r.replay_outcome)
        for r in rows
    ]


def _utc_text(dialect: Any, value: Any) -> str | None:
    return None if value is None else dialect.to_utc_text(naive_utc(value))


# --- replay ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What replay did (or, in a dry run, would do) with one quarantined row."""

    quarantine_id: int
    source_key: str
    source_version: str
    outcome: str  # STAGED, SUPERSEDED or FAILING
    detail: str = ""  # FAILING: the reason now; SUPERSEDED: which newer version is staged
    batch_id: str | None = None


@dataclass
class ReplayReport:
    flow: str
    dry_run: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    already_staged: int = 0  # staged rows the ledger already had (the running agent or another replay staged them)
    batches: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)


@dataclass(frozen=True)
class _Pending:
    quarantine_id: int
    source_key: str
    source_version: str
    source_row: str
    reason: str


@dataclass
class _Candidate:
    """A quarantined row that maps now."""

    pending: _Pending
    staging_row: tuple[Any, ...]
    watermark: tuple[Any, ...]
    newer: str | None = None  # a newer version of its key that is (or is being) staged
    in_ledger: bool = False  # this very version is staged already (by the running agent, or another replay)


def replay_flow(ctx: FlowContext, dry_run: bool = False) -> ReplayReport:
    """Replay every not-yet-replayed quarantined row of the flow, page by page (a page is `batch_size` rows)."""
    report = ReplayReport(ctx.name, dry_run)
    staged: dict[str, tuple[Any, ...]] = {}  # key -> newest watermark this run staged (or would stage)
    after = 0
    with log_context.flow(ctx.name):
        while True:
            for attempt in range(1, ATTEMPTS + 1):
                page = _read_page(ctx, after)
                try:
                    outcomes, written, batch_id = _replay_page(ctx, page, staged, dry_run) if page else ([], 0, None)
                    break
                except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                    if attempt == ATTEMPTS:
                        raise
                    log.info("flow %s: a replay page was rolled back (%s); reading and writing it again", ctx.name,
                             str(exc.orig).strip().splitlines()[0])
                    time.sleep(0.2 * attempt)
            if not page:
                return report
            after = page[-1].quarantine_id
            report.outcomes += outcomes
            report.already_staged += sum(1 for o in outcomes if o.outcome == STAGED) - written
            if batch_id is not None:
                report.batches.append(batch_id)


def _read_page(ctx: FlowContext, after: int) -> list[_Pending]:
    statement = ctx.target_dialect.statement("replay_pending", quarantine_table=ctx.control.quarantine)
    with ctx.target_engine.connect() as conn:
        rows = conn.execute(statement, {"flow": ctx.name, "after_id": after, "batch_size": ctx.flow.batch_size}).all()
        conn.rollback()
    return [_Pending(int(r.quarantine_id), r.source_key, r.source_version, r.source_row, r.reason) for r in rows]


def _replay_page(ctx: FlowContext, page: list[_Pending], staged: dict[str, tuple[Any, ...]],
                 dry_run: bool) -> tuple[list[Outcome], int, str | None]:
    """One page: map, decide, and (unless a dry run) write it all in one ERP transaction. Returns the outcomes, how
    many rows the write path appended to the staging table, and the batch id when it wrote anything."""
    batch_id, started = new_batch_id(), utc_now()
    candidates: list[_Candidate] = []
    failing: list[tuple[_Pending, str]] = []
    for pending in page:
        mapped = _map(ctx, pending, batch_id)
        if isinstance(mapped, str):
            failing.append((pending, mapped))
        else:
            candidates.append(mapped)
    with log_context.batch(batch_id), ctx.target_engine.connect() as conn:
        rounds = _plan(conn, ctx, candidates, staged)
        to_stage = [c for one in rounds for c in one]
        superseded = [c for c in candidates if c.newer is not None]
        changed = [(p, reason) for p, reason in failing if reason != p.reason]
        written = sum(1 for c in to_stage if not c.in_ledger)  # what a dry run would append
        wrote = not dry_run and bool(to_stage or superseded or changed)
        if wrote:
            written = 0
            for one in rounds:  # one statement per round: a later round's rows get later stg_ids
                written += insert_new_rows(conn, ctx.target_dialect, ctx.staging, ctx.control,
                                           [c.staging_row for c in one], batch_id)
            now = utc_now()
            _mark(conn, ctx, batch_id, now, [(c.pending.quarantine_id, STAGED) for c in to_stage]
                  + [(c.pending.quarantine_id, SUPERSEDED) for c in superseded])
            _update_reasons(conn, ctx, changed)
            record_batch(conn, ctx.target_dialect, ctx.control, BatchReport(
                ctx.name, batch_id, started, rows_read=len(page), rows_written=written,
                rows_duplicate=len(to_stage) - written, finished_at=now,
                message=f"quarantine replay: {len(to_stage)} staged, {len(superseded)} superseded, "
                        f"{len(failing)} still failing"))
            conn.commit()
        else:
            conn.rollback()
    for c in to_stage:
        if not _greater(staged.get(c.pending.source_key), c.watermark):
            staged[c.pending.source_key] = c.watermark
    if wrote:
        log.info("flow %s: replay batch %s committed: %d staged (%d already staged), %d superseded, %d still failing",
                 ctx.name, batch_id, len(to_stage), len(to_stage) - written, len(superseded), len(failing))
    done = batch_id if wrote else None
    outcomes = [Outcome(c.pending.quarantine_id, c.pending.source_key, c.pending.source_version, STAGED, "", done)
                for c in to_stage]
    outcomes += [Outcome(c.pending.quarantine_id, c.pending.source_key, c.pending.source_version, SUPERSEDED,
                         f"version {c.newer} of this key is staged; an older version staged after it would overwrite "
                         "it in the ERP", done) for c in superseded]
    outcomes += [Outcome(p.quarantine_id, p.source_key, p.source_version, FAILING, reason) for p, reason in failing]
    return sorted(outcomes, key=lambda o: o.quarantine_id), written, done


def _map(ctx: FlowContext, pending: _Pending, batch_id: str) -> _Candidate | str:
    """The row mapped with the current mapping, or why it still fails."""
    legacy = {name: c.column_type.family for name, c in ctx.source_columns.items() if c.column_type is not None}
    try:
        stored = row_json.decode(pending.source_row, legacy)
    except (ValueError, TypeError, ArithmeticError, IndexError) as exc:
        return f"replay: the stored source row cannot be read back ({exc}); fix the row in the MES (a new version flows as any change)"
    columns = ctx.mapper.source_columns
    missing = [c for c in columns if c not in stored]
    if missing:
        return (f"replay: the stored source row has no column {', '.join(missing)}, which the flow now reads; fix the "
                "row in the MES (a new version flows as any change)")
    values = tuple(stored[c] for c in columns)
    mapped = ctx.mapper.map_batch([values], batch_id)
    if mapped.quarantined:
        return mapped.quarantined[0].reason
    row = mapped.rows[0]
    if (row[2], row[3]) != (pending.source_key, pending.source_version):
        return (f"replay: the stored source row reads back as key {row[2]!r}, version {row[3]!r}, not as the quarantined "
                "key and version; it cannot be replayed exactly")
    return _Candidate(pending, row, tuple(values[i] for i in ctx.mapper.watermark_positions))


def _plan(conn: Connection, ctx: FlowContext, candidates: list[_Candidate],
          staged: dict[str, tuple[Any, ...]]) -> list[list[_Candidate]]:
    """The candidates to stage, in rounds: round n holds the n-th oldest version of each key, so that versions of
    one key reach the staging table in version order. A candidate older than a version of its key that is staged
    already (agent_ledger, or an earlier page of this replay) gets `newer` instead."""
    statement = ctx.target_dialect.statement("replay_ledger_versions", ledger_table=ctx.control.ledger)
    by_key: dict[str, list[_Candidate]] = {}
    for c in candidates:
        by_key.setdefault(c.pending.source_key, []).append(c)
    rounds: list[list[_Candidate]] = []
    for key, versions in by_key.items():
        like = versions[0].watermark
        latest: tuple[tuple[Any, ...], str] | None = (staged[key], version_text(staged[key])) if key in staged else None
        ledger = set(conn.execute(statement, {"flow": ctx.name, "source_key": key}).scalars())
        for c in versions:
            c.in_ledger = c.pending.source_version in ledger
        for text in ledger:
            values = _version_values(text, like)
            if values is not None and (latest is None or _greater(values, latest[0])):
                latest = (values, text)
        ordered = sorted(versions, key=functools.cmp_to_key(_by_version))
        position = 0
        for c in ordered:
            if latest is not None and _greater(latest[0], c.watermark):
                c.newer = latest[1]
                continue
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(c)
            position += 1
    return rounds


def _by_version(a: _Candidate, b: _Candidate) -> int:
    return 1 if _greater(a.watermark, b.watermark) else -1 if _greater(b.watermark, a.watermark) else 0


def _greater(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    try:
        return a is not None and b is not None and a > b
    except TypeError:  # values that do not compare (a zoned and a naive timestamp): not known to be newer
        return False


def _mark(conn: Connection, ctx: FlowContext, batch_id: str, now: dt.datetime, rows: list[tuple[int, str]]) -> None:
    if not rows:
        return
    statement = ctx.target_dialect.statement("replay_mark", {"replayed_at": _TIMESTAMP},
                                             quarantine_table=ctx.control.quarantine)
    conn.execute(statement, [{"replayed_at": now, "batch_id": batch_id, "replay_outcome": outcome, "quarantine_id": qid}
                             for qid, outcome in rows])


def _update_reasons(conn: Connection, ctx: FlowContext, changed: list[tuple[_Pending, str]]) -> None:
    if not changed:
        return
    statement = ctx.target_dialect.statement("replay_reason", quarantine_table=ctx.control.quarantine)
    conn.execute(statement, [{"reason": reason, "quarantine_id": p.quarantine_id} for p, reason in changed])


# --- version text back to values ---------------------------------------------------------------------
def _version_values(text: str, like: Sequence[Any]) -> tuple[Any, ...] | None:
    """A stg_source_version text as watermark values of the same types as `like` (None when it does not read so)."""
    parts = _split_version(text)
    if len(parts) != len(like):
        return None
    try:
        return tuple(_typed(part, sample) for part, sample in zip(parts, like, strict=True))
    except (ValueError, ArithmeticError):
        return None


def _split_version(text: str) -> list[str | None]:
    """The inverse of contract.version_text: `|` separates, `\\` escapes `|` and `\\`, `\\N` alone is NULL."""
    parts: list[str | None] = []
    current: list[str] = []
    escaped = null = False
    for char in text:
        if escaped:
            escaped = False
            if char == "N" and not current:
                null = True
            else:
                current.append(char)
        elif char == "\\":
            escaped = True
        elif char == "|":
            parts.append(None if null and not current else "".join(current))
            current, null = [], False
        else:
            current.append(char)
    parts.append(None if null and not current else "".join(current))
    return parts


def _typed(text: str | None, sample: Any) -> Any:
    if text is None:
        return None
    if isinstance(sample, bool):
        return text == "true"
    if isinstance(sample, int):
        return int(text)
    if isinstance(sample, Decimal):
        return Decimal(text)
    if isinstance(sample, float):
        return float(text)
    if isinstance(sample, dt.datetime):
        return dt.datetime.fromisoformat(text)
    if isinstance(sample, dt.date):
        return dt.date.fromisoformat(text)
    if isinstance(sample, dt.time):
        return dt.time.fromisoformat(text)
    if isinstance(sample, (bytes, bytearray, memoryview)):
        return bytes.fromhex(text[2:])
    return text
