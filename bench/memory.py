"""Peak RSS of the agent's product path whatever the table's size (issue 12: under 150 MB at 100,000 and at
10,000,000 rows): one initial load per size, PostgreSQL -> PostgreSQL, the agent in its own process
(bench/agent_child.py), on databases this script makes and drops.

    python bench/memory.py [--rows 100000 10000000] [--batch-size 10000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import common
from run_all import agent_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 10_000_000])
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    print(f"{'rows':>12}  {'seconds':>8}  {'rows/s':>9}  {'peak RSS':>9}  target < 150 MB", flush=True)
    for rows in args.rows:
        scratch = common.Scratch()
        try:
            with tempfile.TemporaryDirectory() as folder:
                mes_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "mes"))
                erp_url = common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "erp"))
                loaded = common.load_work_orders(mes_url, "production", rows)
                config = common.agent_config(
                    Path(folder), {"mes": {"url": mes_url}, "erp": {"url": erp_url, "staging_schema": "staging"}},
                    {"work_orders": common.work_order_flow("production.work_order", batch_size=args.batch_size)},
                )
                common.prepare_erp(config)
                run = agent_load(config, erp_url, "staging", "work_orders")
                if run["rows"] != loaded:
                    raise SystemExit(f"the agent staged {run['rows']:,} rows of {loaded:,}")
                verdict = "holds" if run["rss_mb"] < 150 else "MISSES"
                print(f"{loaded:>12,}  {run['seconds']:>8.1f}  {loaded / run['seconds']:>9,.0f}  {run['rss_mb']:>6.0f} MB  "
                      f"{verdict}", flush=True)
        finally:
            scratch.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
