"""The demo ERP's production schedule: released production orders, the table the ERP -> MES flow reads.

`production_order` is an ERP core table (in the demo: the main file erp.db): one row per production order the
ERP's planning released to the shop floor, with what to make, how many, when to start and when it is due. The
ERP sets `modified_at` on every change (a planner reschedules, changes a quantity, releases a new order), which
is the flow's watermark, with the order number to break ties. The agent only reads it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

TABLE = "production_order"
RELEASED = "RELEASED"
FIRST_ORDER_NO = 1_000_001  # ERP order numbers: a range of their own, apart from the MES's work order ids


def _datetime() -> sa.types.TypeEngine[dt.datetime]:
    # MySQL/MariaDB DATETIME drops fractional seconds unless fsp is given: the watermark needs microseconds.
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def define_production_order(metadata: sa.MetaData, schema: str | None = None) -> sa.Table:
    """The ERP's released production orders, with the index the keyset read uses (modified_at, order_no)."""
    table = sa.Table(
        TABLE, metadata,
        sa.Column("order_no", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("order_qty", sa.Numeric(12, 3), nullable=False),
        sa.Column("scheduled_start", _datetime(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("modified_at", _datetime(), nullable=False),
        schema=schema,
    )
    sa.Index(f"ix_{TABLE}_modified", table.c.modified_at, table.c.order_no)
    return table


def released_order(order_no: int, product_id: int, qty: int | Decimal, start: dt.datetime, days: int,
                   modified_at: dt.datetime) -> dict[str, Any]:
    """One released production order as a row of `production_order`."""
    return {
        "order_no": order_no, "product_id": product_id, "order_qty": Decimal(qty), "scheduled_start": start,
        "due_date": (start + dt.timedelta(days=days)).date(), "status": RELEASED, "modified_at": modified_at,
    }


def create_schedule(engine: sa.Engine, rows: list[dict[str, Any]], schema: str | None = None) -> sa.Table:
    """Create `production_order` (with its index) and insert `rows`, in one transaction."""
    metadata = sa.MetaData()
    table = define_production_order(metadata, schema)
    with engine.begin() as conn:
        metadata.create_all(conn)
        if rows:
            conn.execute(table.insert(), rows)
    return table


def initial_schedule(now: dt.datetime, orders: int = 240, per_day: int = 20) -> list[dict[str, Any]]:
    """The ERP's schedule as the demo starts: the products and quantities of the latest AdventureWorks work orders,
    released again as new production orders over the next days. One planning run released them all, so they share
    one `modified_at`: the order number breaks the tie (and with `batch_size: 100` the initial load of this flow
    shows ties across batch boundaries)."""
    from agent.demo import adventureworks

    days = {p["product_id"]: p["days_to_manufacture"] for p in adventureworks.iter_rows("product")}
    recent = list(adventureworks.iter_rows("work_order"))[-orders:]
    released_at = (now - dt.timedelta(minutes=10)).replace(microsecond=0)
    first_day = dt.datetime.combine(now.date(), dt.time(6)) + dt.timedelta(days=1)
    return [
        released_order(FIRST_ORDER_NO + n, wo["product_id"], wo["order_qty"], first_day + dt.timedelta(days=n // per_day),
                       days.get(wo["product_id"], 1) + 2, released_at)
        for n, wo in enumerate(recent)
    ]
