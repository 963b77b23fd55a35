"""dlt on the same PostgreSQL MES: an initial load into a fresh ERP database, then an incremental poll that finds
nothing and one moving 1,000 rows. Installed only for the benchmark (`pip install '.[bench]'`), never a dependency
of the agent. `sqlalchemy` is dlt's default backend; `pyarrow` its fastest one here (needs pyarrow)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from typing import Any

import dlt
import sqlalchemy as sa
from dlt.sources.sql_database import sql_table

import common


def measure(mes_url: str, scratch: common.Scratch, backend: str, runs: int) -> tuple[float, float | None, float | None]:
    """(median seconds of an initial load, seconds of a poll finding nothing, of a poll moving 1,000 rows)."""
    if backend == "pyarrow" and importlib.util.find_spec("pyarrow") is None:
        raise ImportError("pyarrow is not installed")
    source = _credentials(mes_url)
    loads, empty, moving = [], None, None
    with tempfile.TemporaryDirectory() as folder:
        os.environ["DLT_DATA_DIR"] = folder
        for run in range(runs):
            erp = _credentials(common.url_of(common.PG_ADMIN, scratch.database(common.PG_ADMIN, "dlt")))
            pipeline = dlt.pipeline(pipeline_name=f"bench_{backend}_{run}", destination=dlt.destinations.postgres(erp),
                                    dataset_name="staging", pipelines_dir=folder)
            started = time.perf_counter()
            pipeline.run(_table(source, backend))
            loads.append(time.perf_counter() - started)
            if run == runs - 1:
                started = time.perf_counter()
                pipeline.run(_table(source, backend))
                empty = time.perf_counter() - started
                common.append_rows(mes_url, "production.work_order", 1000)
                started = time.perf_counter()
                info: Any = pipeline.run(_table(source, backend))
                moving = time.perf_counter() - started
                assert info is not None
    return common.median(loads), empty, moving


def _table(credentials: str, backend: str) -> Any:
    return sql_table(credentials=credentials, schema="production", table="work_order", backend=backend,
                     incremental=dlt.sources.incremental("modified_date"), chunk_size=10000)


def _credentials(url: str) -> str:
    """libpq URL; dlt's destination insists on a password (a trust login ignores it)."""
    parsed = sa.make_url(url).set(drivername="postgresql")
    return parsed.set(password=parsed.password or "unused").render_as_string(hide_password=False)
