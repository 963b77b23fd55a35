"""One catch-up run of one flow through the product path, in its own process: prints JSON with the seconds of
`pipeline.run_flow` (drift gate, read, map/validate, ledger, staging, watermark commit per batch), the rows moved
and the process's peak RSS.

    python bench/agent_child.py CONFIG FLOW
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path

from agent import pipeline
from agent.config import load_config
from agent.connect import Systems
from agent.drift.gate import DriftGate


def main() -> int:
    config_path, flow = Path(sys.argv[1]), sys.argv[2]
    logging.disable(logging.WARNING)
    config = load_config(config_path)
    systems = Systems(config)
    gate = DriftGate(config, systems, only=flow)
    context = pipeline.prepare(config, systems, flow)
    started = time.perf_counter()
    report = pipeline.run_flow(context, gate)
    seconds = time.perf_counter() - started
    gate.close()
    systems.dispose()
    if report.outcome != "ok":
        print(json.dumps({"error": report.message}))
        return 1
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": report.rows_written, "rss_mb": rss_mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
