"""What a flow does about drift on its tables: its `on_drift:` policy applied to the diffs that concern it.

- halt (default): any difference on a table the flow uses halts it.
- halt_on_breaking: only a breaking difference halts it; others are reported and it keeps running.
- warn: never halts; differences are reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.drift.diff import Diff


@dataclass(frozen=True)
class FlowDecision:
    flow: str
    on_drift: str
    changes: int  # differences on tables the flow uses
    breaking: int  # of which breaking for this flow

    @property
    def halts(self) -> bool:
        return self.on_drift == "halt" or (self.on_drift == "halt_on_breaking" and self.breaking > 0)

    def describe(self) -> str:
        """`work_order_confirmations (on_drift: halt; 2 changes, 1 breaking for this flow)`"""
        changes = f"{self.changes} change{'s' if self.changes != 1 else ''}"
        return f"{self.flow} (on_drift: {self.on_drift}; {changes}, {self.breaking} breaking for this flow)"


def decide(diffs: Iterable[Diff], on_drift: Mapping[str, str]) -> list[FlowDecision]:
    """One decision per flow that a diff concerns, in flow name order."""
    counts: dict[str, list[int]] = {}
    for diff in diffs:
        for impact in diff.impacts:
            changes_breaking = counts.setdefault(impact.flow, [0, 0])
            changes_breaking[0] += 1
            changes_breaking[1] += int(impact.breaking)
    return [FlowDecision(flow, on_drift[flow], c, b) for flow, (c, b) in sorted(counts.items())]


def decision_for(flow: str, diffs: Iterable[Diff], on_drift: str) -> FlowDecision | None:
    """The flow's decision, or None when no diff concerns it."""
    impacts = [impact for diff in diffs if (impact := diff.impact_on(flow)) is not None]
    if not impacts:
        return None
    return FlowDecision(flow, on_drift, len(impacts), sum(i.breaking for i in impacts))
