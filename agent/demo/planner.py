"""The demo's ERP planner: a background thread that changes the production schedule in the ERP database.

It reschedules released production orders (the due date and the start move by a few days), changes their
quantities and releases new orders (real AdventureWorks products), each one ERP transaction that sets
`modified_at`, as an ERP does. Each change is recorded in the demo's `ChangeLog` with the time of its commit,
so that the demo can show when it reached the MES inbound table (latency) and check that it arrived exactly
once. As the shop floor does, the planner changes an order again only after its previous state reached the MES.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

from agent.demo.erp_schedule import TABLE, define_production_order, released_order
from agent.demo.shopfloor import Change, ChangeLog, RowIdentity


@dataclass
class PlannerCounters:
    rescheduled: int = 0
    quantities_changed: int = 0
    released: int = 0

    @property
    def changes(self) -> int:
        return self.rescheduled + self.quantities_changed + self.released


class Planner(threading.Thread):
    """Works in the ERP's `production_order` until `stop()`; one ERP transaction per change."""

    # The first changes are one of each kind, so that even a short demo shows them all; then at random.
    FIRST_ACTIONS = ("reschedule", "quantity", "release")
    WEIGHTS: ClassVar[dict[str, float]] = {"reschedule": 3.0, "quantity": 2.0, "release": 1.0}

    def __init__(self, erp_db: Path, log: ChangeLog, identity: RowIdentity, product_names: dict[int, str],
                 on_event: Callable[[str], None] | None = None, seed: int = 11, pace: tuple[float, float] = (0.4, 0.9)):
        super().__init__(name="erp-planner", daemon=True)
        self.engine = sa.create_engine(f"sqlite:///{erp_db}", connect_args={"timeout": 60})
        self.table = define_production_order(sa.MetaData())
        self.log, self.identity, self.product_names = log, identity, product_names
        self.on_event = on_event or (lambda text: None)
        self.random = random.Random(seed)
        self.pace = pace
        self.counters = PlannerCounters()
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._orders: dict[int, dict[str, Any]] = {}
        self._next_order_no = 0
        self._last_stamp = dt.datetime.min
        self._steps = 0

    # --- thread -----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read the released orders; call before `start()` (errors surface in the caller)."""
        with self.engine.connect() as conn:
            self._orders = {r.order_no: dict(r._mapping) for r in conn.execute(sa.select(self.table))}
        self._next_order_no = max(self._orders, default=0) + 1
        self._last_stamp = max((o["modified_at"] for o in self._orders.values()), default=dt.datetime.min)

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            if not self._orders:
                self.prepare()
            while not self._stop_event.wait(self.random.uniform(*self.pace)):
                self.step()
        except BaseException as exc:  # shown by the demo, which then exits 1
            self.error = exc
        finally:
            self.engine.dispose()

    # --- one change per step --------------------------------------------------------------------
    def step(self) -> None:
        if self._steps < len(self.FIRST_ACTIONS):
            action = self.FIRST_ACTIONS[self._steps]
        else:
            action = self.random.choices(list(self.WEIGHTS), list(self.WEIGHTS.values()))[0]
        self._steps += 1
        if action == "release":
            self.release()
            return
        settled = [o for o in self._orders.values() if self.log.settled(TABLE, self.identity.key_text(o))]
        if not settled:
            return
        order = self.random.choice(settled[:60])  # the next days' orders: what a planner works on
        if action == "reschedule":
            self.reschedule(order)
        else:
            self.change_quantity(order)

    def reschedule(self, order: dict[str, Any]) -> None:
        days = self.random.choice([-2, -1, 1, 2, 3, 5])
        row = dict(order, scheduled_start=order["scheduled_start"] + dt.timedelta(days=days),
                   due_date=order["due_date"] + dt.timedelta(days=days), modified_at=self._stamp())
        what = f"order {order['order_no']} rescheduled: due {order['due_date']} -> {row['due_date']}"
        self._write(row, what, insert=False)
        self.counters.rescheduled += 1

    def change_quantity(self, order: dict[str, Any]) -> None:
        qty = max(Decimal(1), order["order_qty"] + self.random.choice([-2, -1, 1, 2, 4, 10]))
        row = dict(order, order_qty=qty, modified_at=self._stamp())
        what = f"order {order['order_no']} quantity {_qty(order['order_qty'])} -> {_qty(qty)}"
        self._write(row, what, insert=False)
        self.counters.quantities_changed += 1

    def release(self) -> None:
        template = self.random.choice(list(self._orders.values()))
        stamp = self._stamp()
        start = dt.datetime.combine(stamp.date(), dt.time(6)) + dt.timedelta(days=self.random.randint(1, 4))
        row = released_order(self._next_order_no, template["product_id"], self.random.randint(2, 40), start,
                             (template["due_date"] - template["scheduled_start"].date()).days, stamp)
        self._next_order_no += 1
        name = self.product_names.get(row["product_id"], "?")
        what = f"order {row['order_no']} released: {_qty(row['order_qty'])} x {name}, due {row['due_date']}"
        self._write(row, what, insert=True)
        self.counters.released += 1

    # --- helpers ---------------------------------------------------------------------------------
    def _write(self, row: dict[str, Any], what: str, insert: bool) -> None:
        """One ERP transaction; the change is logged with the time right after its commit."""
        with self.engine.begin() as conn:
            if insert:
                conn.execute(self.table.insert(), row)
            else:
                conn.execute(self.table.update().where(self.table.c.order_no == row["order_no"]),
                             {k: v for k, v in row.items() if k != "order_no"})
        committed = time.monotonic()
        self._orders[row["order_no"]] = row
        self.log.record(Change(TABLE, self.identity.key_text(row), self.identity.version_text(row), what, committed))
        self.on_event(what)

    def _stamp(self) -> dt.datetime:
        """The ERP clock (local time), strictly increasing."""
        self._last_stamp = max(dt.datetime.now(), self._last_stamp + dt.timedelta(microseconds=1))
        return self._last_stamp


def _qty(value: Decimal | int) -> str:
    return format(Decimal(value).normalize(), "f")
