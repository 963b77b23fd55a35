"""Per-flow settings of the recovery passes (agent/recovery): reconciliation past the overlap window, hard deletes.

`reconcile: {every: 1h, window: 7d}`: every `every`, compare the source with what agent_ledger says was staged, for
the `window` of the first watermark column below the watermark minus overlap, and stage what is missing.
`deletes: {detect: true, every: 15m}`: every `every`, find the keys agent_ledger knows whose source row is gone and
write one tombstone staging row each (`stg_change = 'D'`). A vendor-defined interface table has no stg_change
column: `constants:` say how its import job recognises a deletion (e.g. `{TRANSACTION_TYPE_ID: 99}`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, model_validator

from agent.config.basics import Duration, Model

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
