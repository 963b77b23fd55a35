"""The demo's shop floor: a background thread that works in the MES database like an MES would.

It starts work orders (new ids, real AdventureWorks products and order quantities), confirms their
operations (real routings, locations and labor hours), sometimes without labor hours (the operator
forgot to book them; a supervisor corrects the row a little later), and completes orders, some with
scrap (real scrap reasons). Every change is one MES transaction that sets `modified_date`, as an MES
does, and is recorded in a `ChangeLog` with the time of its commit, so that the demo can show when
each change reached the ERP staging table (latency) and check that every change arrived.

Polling sees each row's state at each poll: if an MES changes a row twice between two polls, only the
second state is staged. So that every change can be followed on screen, the simulator changes a row
again only after its previous state has arrived in the ERP (`ChangeLog.settled`).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent.contract import version_text

STAGED, QUARANTINED = "staged", "quarantined"


@dataclass
class Change:
    """One MES change (one row version), from its MES commit to its arrival in the ERP."""

    table: str
    key: str  # as stg_source_key
    version: str  # as stg_source_version
    what: str  # for people: "order 72592 started: 12 x HL Road Frame - Red, 58"
    committed_at: float  # time.monotonic() right after the MES commit
    expected: str = STAGED  # or QUARANTINED
    arrived_at: float | None = None  # time.monotonic() right after the ERP commit
    outcome: str | None = None  # STAGED or QUARANTINED, once arrived

    @property
    def latency(self) -> float | None:
        return None if self.arrived_at is None else self.arrived_at - self.committed_at


@dataclass(frozen=True)
class RowIdentity:
    """How a flow names a row of this table: its key columns and its watermark columns."""

    key: tuple[str, ...]
    watermark: tuple[str, ...]

    def key_text(self, row: dict[str, Any]) -> str:
        return version_text(tuple(row[c] for c in self.key))

    def version_text(self, row: dict[str, Any]) -> str:
        return version_text(tuple(row[c] for c in self.watermark))


class ChangeLog:
    """Every simulated change, shared by the simulator thread and the agent loop (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: dict[tuple[str, str, str], Change] = {}
        self._latest: dict[tuple[str, str], Change] = {}

    def record(self, change: Change) -> None:
        with self._lock:
            self._changes[(change.table, change.key, change.version)] = change
            self._latest[(change.table, change.key)] = change

    def arrive(self, table: str, key: str, version: str, outcome: str, at: float) -> Change | None:
        """Mark a row version as arrived in the ERP; None if the simulator did not make it (history)."""
        with self._lock:
            change = self._changes.get((table, key, version))
            if change is not None and change.arrived_at is None:
                change.arrived_at, change.outcome = at, outcome
            return change

    def settled(self, table: str, key: str) -> bool:
        """The row's latest change has arrived in the ERP (staged or quarantined)."""
        with self._lock:
            latest = self._latest.get((table, key))
            return latest is None or latest.arrived_at is not None

    def changes(self) -> list[Change]:
        with self._lock:
            return list(self._changes.values())

    def last_commit(self) -> float | None:
        with self._lock:
            return max((c.committed_at for c in self._changes.values()), default=None)


@dataclass
class Operation:
    sequence: int
    location_id: int
    hours: Decimal


@dataclass
class OpenOrder:
    work_order_id: int
    product_id: int
    order_qty: int
    start_date: dt.datetime
    due_date: dt.datetime
    operations: list[Operation]  # still to confirm, in sequence order
    last_finish: dt.datetime
    last_change_at: float  # monotonic


@dataclass
class MissingHours:
    """An operation confirmed without labor hours, waiting for the supervisor's correction."""

    row: dict[str, Any]
    hours: Decimal
    cost_rate: Decimal


@dataclass
class Counters:
    orders_started: int = 0
    operations_confirmed: int = 0
    operations_without_hours: int = 0
    operations_corrected: int = 0
    orders_completed: int = 0
    orders_scrapped: int = 0


@dataclass
class Reference:
    """Real AdventureWorks data the simulator draws from (read from the MES once)."""

    recent_orders: list[tuple[int, int]]  # (product_id, order_qty) of the latest historical orders
    product_names: dict[int, str]
    days_to_manufacture: dict[int, int]
    routings: dict[int, list[Operation]]  # product -> operations of its latest historical order
    cost_rates: dict[int, Decimal]
    scrap_reasons: dict[int, str]
    next_work_order_id: int
    last_modified: dt.datetime


def read_reference(engine: sa.Engine) -> Reference:
    with engine.connect() as conn:
        recent = [(r.product_id, r.order_qty) for r in conn.execute(sa.text(
            "SELECT product_id, order_qty FROM work_order ORDER BY work_order_id DESC LIMIT 3000"))]
        products = conn.execute(sa.text("SELECT product_id, name, days_to_manufacture FROM product")).all()
        routing_rows = conn.execute(sa.text(
            "SELECT r.product_id, r.operation_sequence, r.location_id, r.actual_resource_hrs "
            "FROM work_order_routing r JOIN (SELECT product_id, MAX(work_order_id) AS work_order_id "
            "FROM work_order_routing GROUP BY product_id) latest "
            "ON r.product_id = latest.product_id AND r.work_order_id = latest.work_order_id "
            "ORDER BY r.product_id, r.operation_sequence")).all()
        rates = conn.execute(sa.text("SELECT location_id, cost_rate FROM location")).all()
        reasons = conn.execute(sa.text("SELECT scrap_reason_id, name FROM scrap_reason")).all()
        next_id = conn.execute(sa.text("SELECT COALESCE(MAX(work_order_id), 0) + 1 FROM work_order")).scalar_one()
        last_modified = max(
            _as_datetime(conn.execute(sa.text(f"SELECT MAX(modified_date) FROM {table}")).scalar_one())
            for table in ("work_order", "work_order_routing")
        )
    routings: dict[int, list[Operation]] = {}
    for r in routing_rows:
        routings.setdefault(r.product_id, []).append(
            Operation(r.operation_sequence, r.location_id, Decimal(str(r.actual_resource_hrs))))
    return Reference(
        recent_orders=recent,
        product_names={p.product_id: p.name for p in products},
        days_to_manufacture={p.product_id: p.days_to_manufacture for p in products},
        routings=routings,
        cost_rates={r.location_id: Decimal(str(r.cost_rate)) for r in rates},
        scrap_reasons={r.scrap_reason_id: r.name for r in reasons},
        next_work_order_id=int(next_id),
        last_modified=last_modified,
    )


def _as_datetime(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


class ShopFloor(threading.Thread):
    """Works in the MES database until `stop()`; one MES transaction per change."""

    MAX_OPEN_ORDERS = 6
    MISSING_HOURS_SHARE = 0.12  # operations confirmed without labor hours
    SCRAP_SHARE = 0.25  # completed orders with scrap (AdventureWorks history: 1 %; more, to see it)

    def __init__(
        self, mes_db: Path, log: ChangeLog, identities: dict[str, RowIdentity],
        on_event: Callable[[str], None] | None = None, seed: int = 7, pace: tuple[float, float] = (0.12, 0.32),
    ):
        super().__init__(name="shop-floor", daemon=True)
        self.engine = sa.create_engine(f"sqlite:///{mes_db}", connect_args={"timeout": 60})
        self.log = log
        self.identities = identities
        self.on_event = on_event or (lambda text: None)
        self.random = random.Random(seed)
        self.pace = pace
        self.counters = Counters()
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._reference: Reference | None = None
        self._open: list[OpenOrder] = []
        self._missing_hours: list[MissingHours] = []
        self._last_stamp = dt.datetime.min

    # --- thread -----------------------------------------------------------------------------------
    def prepare(self) -> Reference:
        """Read the real data to draw from; call before `start()` (errors surface in the caller)."""
        self._reference = read_reference(self.engine)
        return self._reference

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            if self._reference is None:
                self.prepare()
            while not self._stop_event.wait(self.random.uniform(*self.pace)):
                self.step()
        except BaseException as exc:  # shown by the demo, which then exits 1
            self.error = exc
        finally:
            self.engine.dispose()

    # --- one change per step --------------------------------------------------------------------
    def step(self) -> None:
        now = time.monotonic()
        actions: list[tuple[float, Callable[[], None]]] = []
        if len(self._open) < self.MAX_OPEN_ORDERS:
            actions.append((2.0 if len(self._open) < 2 else 1.0, self.start_order))
        for order in self._open:
            if now - order.last_change_at < 0.4:
                continue
            if order.operations:
                actions.append((1.5, partial(self.confirm_operation, order)))
            elif now - order.last_change_at > 1.0 and self.log.settled(
                "work_order", self.identities["work_order"].key_text({"work_order_id": order.work_order_id})
            ):
                actions.append((1.5, partial(self.complete_order, order)))
        for missing in self._missing_hours:
            identity = self.identities["work_order_routing"]
            if self.log.settled("work_order_routing", identity.key_text(missing.row)):
                actions.append((2.0, partial(self.correct_hours, missing)))
        if not actions:
            return
        weights = [w for w, _ in actions]
        self.random.choices([a for _, a in actions], weights)[0]()

    def start_order(self) -> None:
        ref = self._ref()
        product_id, order_qty = self.random.choice(ref.recent_orders)
        stamp = self._stamp()
        start = stamp
        due = dt.datetime.combine(stamp.date(), dt.time()) + dt.timedelta(days=ref.days_to_manufacture.get(product_id, 1) + 10)
        work_order_id = ref.next_work_order_id
        ref.next_work_order_id += 1
        row = {
            "work_order_id": work_order_id, "product_id": product_id, "order_qty": order_qty, "stocked_qty": 0,
            "scrapped_qty": 0, "start_date": start, "end_date": None, "due_date": due, "scrap_reason_id": None,
            "modified_date": stamp,
        }
        what = f"order {work_order_id} started: {order_qty} x {self._product(product_id)}"
        self._write("work_order", row, what, insert=True)
        self.counters.orders_started += 1
        operations = [Operation(o.sequence, o.location_id, o.hours) for o in ref.routings.get(product_id, [])]
        self._open.append(OpenOrder(work_order_id, product_id, order_qty, start, due, operations, start, time.monotonic()))

    def confirm_operation(self, order: OpenOrder) -> None:
        ref = self._ref()
        operation = order.operations.pop(0)
        stamp = self._stamp()
        rate = ref.cost_rates.get(operation.location_id, Decimal(0))
        # The first confirmation always lacks its hours, so that even a short demo shows a quarantined row.
        without_hours = self.counters.operations_confirmed == 0 or self.random.random() < self.MISSING_HOURS_SHARE
        hours = None if without_hours else operation.hours
        row = {
            "work_order_id": order.work_order_id, "product_id": order.product_id,
            "operation_sequence": operation.sequence, "location_id": operation.location_id,
            "scheduled_start_date": order.start_date, "scheduled_end_date": order.due_date,
            "actual_start_date": order.last_finish, "actual_end_date": stamp,
            "actual_resource_hrs": hours, "planned_cost": _money(operation.hours * rate),
            "actual_cost": None if hours is None else _money(hours * rate), "modified_date": stamp,
        }
        if without_hours:
            what = f"order {order.work_order_id} operation {operation.sequence} confirmed WITHOUT labor hours"
        else:
            what = f"order {order.work_order_id} operation {operation.sequence} confirmed: {_hours(hours)} h"
        self._write("work_order_routing", row, what, insert=True, expected=QUARANTINED if without_hours else STAGED)
        self.counters.operations_confirmed += 1
        if without_hours:
            self.counters.operations_without_hours += 1
            self._missing_hours.append(MissingHours(row, operation.hours, rate))
        order.last_finish, order.last_change_at = stamp, time.monotonic()

    def correct_hours(self, missing: MissingHours) -> None:
        self._missing_hours.remove(missing)
        row = dict(missing.row, actual_resource_hrs=missing.hours, actual_cost=_money(missing.hours * missing.cost_rate),
                   modified_date=self._stamp())
        what = (f"order {row['work_order_id']} operation {row['operation_sequence']}: supervisor booked the missing "
                f"{_hours(missing.hours)} h")
        self._write("work_order_routing", row, what, insert=False)
        self.counters.operations_corrected += 1

    def complete_order(self, order: OpenOrder) -> None:
        ref = self._ref()
        self._open.remove(order)
        stamp = self._stamp()
        scrapped, reason = 0, None
        if self.random.random() < self.SCRAP_SHARE:
            scrapped = self.random.randint(1, max(1, order.order_qty // 8))
            reason = self.random.choice(sorted(ref.scrap_reasons))
        row = {
            "work_order_id": order.work_order_id, "product_id": order.product_id, "order_qty": order.order_qty,
            "stocked_qty": order.order_qty - scrapped, "scrapped_qty": scrapped, "start_date": order.start_date,
            "end_date": stamp, "due_date": order.due_date, "scrap_reason_id": reason, "modified_date": stamp,
        }
        what = f"order {order.work_order_id} completed: {order.order_qty - scrapped} good"
        if reason is not None:  # drawn together with a scrapped quantity of at least 1
            what += f", {scrapped} scrapped ({ref.scrap_reasons[reason]})"
            self.counters.orders_scrapped += 1
        self._write("work_order", row, what, insert=False)
        self.counters.orders_completed += 1

    # --- helpers ---------------------------------------------------------------------------------
    def _write(self, table: str, row: dict[str, Any], what: str, insert: bool, expected: str = STAGED) -> None:
        """One MES transaction; the change is logged with the time right after its commit."""
        metadata_table = _table(table)
        with self.engine.begin() as conn:
            if insert:
                conn.execute(metadata_table.insert(), row)
            else:
                keys = self.identities[table].key
                statement = metadata_table.update().where(*(metadata_table.c[k] == row[k] for k in keys))
                conn.execute(statement, {k: v for k, v in row.items() if k not in keys})
        committed = time.monotonic()
        identity = self.identities[table]
        self.log.record(Change(table, identity.key_text(row), identity.version_text(row), what, committed, expected))
        self.on_event(what)

    def _stamp(self) -> dt.datetime:
        """The MES clock (local time, like AdventureWorks' modified_date), strictly increasing."""
        ref = self._ref()
        stamp = max(dt.datetime.now(), self._last_stamp + dt.timedelta(microseconds=1))
        if stamp <= ref.last_modified:
            raise RuntimeError(
                f"this computer's clock ({stamp:%Y-%m-%d %H:%M}) is before the last AdventureWorks change "
                f"({ref.last_modified:%Y-%m-%d}); the simulated changes would sort before history"
            )
        self._last_stamp = stamp
        return stamp

    def _product(self, product_id: int) -> str:
        return f"{self._ref().product_names.get(product_id, '?')} (product {product_id})"

    def _ref(self) -> Reference:
        assert self._reference is not None, "prepare() first"
        return self._reference


_TABLES: dict[str, sa.Table] = {}


def _table(name: str) -> sa.Table:
    if name not in _TABLES:
        from agent.demo.adventureworks import define_table

        _TABLES[name] = define_table(sa.MetaData(), name, None)
    return _TABLES[name]


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.0001"))


def _hours(value: Decimal | None) -> str:
    return "?" if value is None else format(value.normalize(), "f")


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (share 0.5 = median), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(share * len(ordered))))
    return ordered[rank - 1]
