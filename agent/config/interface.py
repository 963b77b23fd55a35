"""How a flow's staging (interface) table reports the ERP's import outcome, how long the ledger keeps entries, and
the flow's recovery passes (agent/recovery): `reconcile:` past the overlap window and `deletes:` (tombstones).

The default `stg_*` layout needs no `outcome:`: the agent writes stg_status = 'PENDING', the import job sets
'ERROR' (its message in stg_error) or any other value (done), and a row it deleted is done. A vendor-defined
interface table names its own status column and values (Oracle EBS PROCESS_FLAG 1/2 pending, 3 error, ...).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.config.basics import IDENTIFIER_PATTERN, Duration, Model
from agent.contract import ERROR_COLUMN, STATUS_COLUMN, STATUS_ERROR, STATUS_PENDING

ROW_GONE: Literal["row_gone"] = "row_gone"


def _as_list(value: Any) -> Any:
    return [value] if value is not None and not isinstance(value, list) else value


class ErrorTableConfig(Model):
    """`error_table: {table: WIP_INTERFACE_ERRORS, link: INTERFACE_ID, text: [ERROR_TYPE, ERROR]}`: where an ERP keeps
    the messages of rejected interface rows in a table of their own, joined to the staging row by `link` (a column
    of both tables). The table is in the target's staging schema unless named as schema.table."""

    table: str
    link: str
    text: list[str] = Field(min_length=1)

    @field_validator("text", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @model_validator(mode="after")
    def _plain_names(self) -> ErrorTableConfig:
        for name in [*self.table.split(".", 1), self.link, *self.text]:
            if not IDENTIFIER_PATTERN.match(name):
                raise ValueError(f"{name!r} is not a plain identifier (letters, digits, _)")
        return self


class OutcomeConfig(Model):
    """`outcome: {status_column: PROCESS_FLAG, pending: [1, 2], error: [3], error_text: ERROR_EXPLANATION, ...}`.

    A row whose status is in `pending` waits for the import job; in `error`, the job rejected it (`error_text`:
    the columns holding its message); a row the job deleted (consumed) is done. `done: row_gone` (the default):
    every other status is done too. `done: [4]`: only those values are done, and a status in no list counts as
    pending (a row stuck in an unknown state is worth a backlog alert). `error_table:` where the messages are
    when they are not columns of the staging row (Oracle WIP_INTERFACE_ERRORS). `resubmit:` the columns and values that
    `outcomes --resubmit` sets on a row in error so that the import job takes it again (the ERP's own procedure).
    `pending_since:` a staging column holding when the row was written (default: when the agent staged it).
    """

    status_column: str
    pending: list[Any] = Field(min_length=1)
    error: list[Any] = Field(default_factory=list)
    done: list[Any] | Literal["row_gone"] = ROW_GONE
    error_text: list[str] = Field(default_factory=list)
    error_table: ErrorTableConfig | None = None
    resubmit: dict[str, Any] | None = None
    pending_since: str | None = None

    @field_validator("pending", "error", "error_text", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("done", mode="before")
    @classmethod
    def _done_values(cls, value: Any) -> Any:
        return value if value == ROW_GONE else _as_list(value)

    @model_validator(mode="after")
    def _plain_columns_disjoint_values(self) -> OutcomeConfig:
        columns = [self.status_column, *self.error_text, *(self.resubmit or {}), *([self.pending_since] if self.pending_since else [])]
        for column in columns:
            if not IDENTIFIER_PATTERN.match(column):
                raise ValueError(f"column {column!r} is not a plain identifier (letters, digits, _)")
        lists = {"pending": self.pending, "error": self.error, "done": [] if self.done == ROW_GONE else self.done}
        seen: dict[str, str] = {}
        for name, values in lists.items():
            for value in values:
                text = str(value)
                if text in seen:
                    raise ValueError(f"status {value!r} is listed under both `{seen[text]}` and `{name}`")
                seen[text] = name
        if self.resubmit is not None and not self.resubmit:
            raise ValueError("`resubmit:` needs at least one column: value (e.g. {PROCESS_FLAG: 1, ERROR_CODE: null})")
        return self

    @property
    def columns(self) -> list[str]:
        """Staging columns the outcome reads (they must exist in the staging table)."""
        linked = [self.error_table.link] if self.error_table else []
        since = [self.pending_since] if self.pending_since else []
        return list(dict.fromkeys([self.status_column, *self.error_text, *linked, *since]))


# The default layout's outcome: what `sql ddl` creates and the agent writes.
AGENT_LAYOUT_OUTCOME = OutcomeConfig(
    status_column=STATUS_COLUMN, pending=[STATUS_PENDING], error=[STATUS_ERROR], error_text=[ERROR_COLUMN],
)


class LedgerConfig(Model):
    """`ledger: {keep: 30d, prune_every: 1h}`: how long agent_ledger keeps what each flow staged.

    An entry is pruned once it is older than `keep` counted back from the flow's newest entry (so a quiet MES,
    whose overlap window re-reads rows staged long ago, keeps them). `keep` must exceed every window the agent
    re-reads (each flow's overlap plus lag); check-config says so."""

    keep: Duration = timedelta(days=30)
    prune_every: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _positive(self) -> LedgerConfig:
        if self.keep < timedelta(hours=1):
            raise ValueError("`keep:` must be at least 1h (it must cover every window the agent re-reads)")
        if self.prune_every <= timedelta(0):
            raise ValueError("`prune_every:` must be positive, e.g. 1h")
        return self


class LocksConfig(Model):
    """`locks: {check_every: 2s}`: how often a running agent checks the flow locks it holds (in each target database),
    tries the free ones, and writes its heartbeat into agent_holder. A flow whose holder died is taken over within
    about two rounds; a holder is shown stale after `stale_after` (default five rounds) without a heartbeat."""

    check_every: Duration = timedelta(seconds=2)
    stale_after: Duration | None = None

    @model_validator(mode="after")
    def _sensible(self) -> LocksConfig:
        if not timedelta(milliseconds=100) <= self.check_every <= timedelta(minutes=5):
            raise ValueError("`check_every:` must be between 100ms and 5m, e.g. 2s")
        if self.stale_after is not None and self.stale_after < 2 * self.check_every:
            raise ValueError("`stale_after:` must be at least twice `check_every`, e.g. 10s")
        return self

    @property
    def stale_bound(self) -> timedelta:
        return self.stale_after if self.stale_after is not None else 5 * self.check_every


Layout = Literal["agent", "vendor"]


# --- recovery passes ----------------------------------------------------------------------------------
# `reconcile: {every: 1h, window: 7d}`: every `every`, compare the source with what agent_ledger says was staged, for
# the `window` of the first watermark column below the watermark minus overlap, and stage what is missing.
# `deletes: {detect: true, every: 15m}`: every `every`, find the keys agent_ledger knows whose source row is gone and
# write one tombstone staging row each (`stg_change = 'D'`). A vendor-defined interface table has no stg_change
# column: `constants:` say how its import job recognises a deletion (e.g. `{TRANSACTION_TYPE_ID: 99}`).
# check-config wants `ledger.keep` to exceed a reconcile window by this much besides overlap and lag: versions are
# on the MES clock (possibly local time, up to 14 h off UTC) while the ledger is pruned by when rows were staged (UTC).
RECONCILE_MARGIN = timedelta(days=1)


class ReconcileConfig(Model):
    every: Duration = timedelta(hours=1)
    window: Duration = timedelta(days=7)

    @model_validator(mode="after")
    def _positive(self) -> ReconcileConfig:
        if self.every <= timedelta(0) or self.window <= timedelta(0):
            raise ValueError("`every:` and `window:` must be positive, e.g. {every: 1h, window: 7d}")
        return self


class DeletesConfig(Model):
    detect: bool = False
    every: Duration = timedelta(minutes=15)
    # Staging column -> value written into a tombstone (instead of NULL or the key's value): how a vendor-layout
    # interface table tells a deletion (required there); optional for the stg_* layout, which has stg_change = 'D'.
    constants: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive(self) -> DeletesConfig:
        if self.every <= timedelta(0):
            raise ValueError("`every:` must be positive, e.g. 15m")
        return self
