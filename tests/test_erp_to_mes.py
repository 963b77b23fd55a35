"""The ERP -> MES direction, live: an ERP schedule change appears in the MES inbound table exactly once.

Two systems, each the source of one flow and the target of the other (tests/two_way.py): `released_orders` reads
the ERP's released production orders into the MES's inbound staging schema `mes_inbound`, while
`work_order_confirmations` moves MES work orders into the ERP's staging schema. `mes-erp-agent run` runs as a
subprocess with both flows every 300 ms and `batch_size: 4`, while an ERP writer releases new orders (groups
of 9 with one timestamp: ties across batch boundaries), reschedules due dates (several orders in one
transaction: ties again), changes one order's quantity three times in a row and stamps every change with
microseconds; an MES writer changes work orders at the same time.

Afterwards the MES inbound table holds every (key, version) the ERP committed exactly once, with the ERP's
values, and the ERP staging table every MES (key, version) exactly once. Polling stages each row's state at
each poll, so the writers change an order again only after its previous version was staged (as the demo's
simulators do): otherwise a version overwritten between two polls is, by design, never seen.

New behaviour: no test before this one made a system the target of one flow and the source of another.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

from agent.contract import version_text
from agent.demo.erp_schedule import released_order
from helpers import cli
from service_support import Service, free_port, wait_until
from two_way import ERP_BASE, FIRST, RELEASED_ORDERS, Plant, Side, flows, make_plant, production_order, versions_of, \
    work_order, write_config

BATCH_SIZE = 4
TIE_GROUP = 2 * BATCH_SIZE + 1  # new orders released in one transaction with one timestamp: spans 3 batches
ROUNDS = 6


class Writer(threading.Thread):
    """Commits changes to one source table, one transaction at a time, and remembers every (key, version)."""

    def __init__(self, source: Side, target: Side, staging_table: str, table: sa.Table, key: str, watermark: str,
                 start: dt.datetime, seed: int):
        super().__init__(daemon=True)
        self.source_engine, self.target_engine = source.engine(), target.engine()
        self.staging = f"{target.staging}.{staging_table}"
        self.table, self.key, self.watermark = table, key, watermark
        self.clock = start
        self.random = random.Random(seed)
        self.committed: dict[tuple[str, str], dict] = {}  # (key, version) -> the row as committed
        self.latest: dict[int, dict] = {}  # key -> its latest committed row
        self.error: BaseException | None = None

    def stamp(self) -> dt.datetime:
        self.clock += dt.timedelta(microseconds=self.random.randint(1, 997))
        return self.clock

    def commit(self, rows: list[dict], insert: bool) -> None:
        with self.source_engine.begin() as conn:
            if insert:
                conn.execute(self.table.insert(), rows)
            else:
                key = self.table.c[self.key]
                for row in rows:
                    conn.execute(self.table.update().where(key == row[self.key]), row)
        for row in rows:
            self.latest[row[self.key]] = row
            self.committed[(version_text((row[self.key],)), version_text((row[self.watermark], row[self.key])))] = row
        time.sleep(self.random.uniform(0, 0.08))

    def wait_staged(self, key: int) -> None:
        """Until the latest version of `key` is in the target's staging table (its next change may follow)."""
        row = self.latest[key]
        version = version_text((row[self.watermark], key))
        sql = sa.text(f"SELECT COUNT(*) FROM {self.staging} WHERE stg_source_key = :key AND stg_source_version = :version")

        def staged() -> bool:
            with self.target_engine.connect() as conn:
                return conn.execute(sql, {"key": str(key), "version": version}).scalar_one() == 1
        wait_until(staged, 30, f"{self.staging}: version {version} of {key}")

    def run(self) -> None:
        try:
            for n in range(ROUNDS):
                self.round(n)
        except BaseException as exc:  # the test fails with it
            self.error = exc
        finally:
            self.source_engine.dispose()
            self.target_engine.dispose()

    def round(self, n: int) -> None:
        raise NotImplementedError


class ErpPlanner(Writer):
    next_order = FIRST + RELEASED_ORDERS

    def round(self, n: int) -> None:
        at = self.stamp()  # new released orders, one timestamp for the group
        group = [released_order(self.next_order + i, 800 + i, 5 + i, at.replace(microsecond=0), 2 + i % 4, at)
                 for i in range(TIE_GROUP)]
        self.next_order += TIE_GROUP
        self.commit(group, insert=True)
        at = self.stamp()  # reschedule five orders in one transaction: their due dates move, one timestamp
        chosen = self.random.sample(sorted(self.latest), 5)
        for key in chosen:
            self.wait_staged(key)
        self.commit([dict(self.latest[k], due_date=self.latest[k]["due_date"] + dt.timedelta(days=1 + n),
                          scheduled_start=self.latest[k]["scheduled_start"] + dt.timedelta(hours=4), modified_at=at)
                     for k in chosen], insert=False)
        key = self.random.choice(sorted(self.latest))  # one order's quantity, three times in a row
        for qty in (Decimal("12.5"), Decimal("13.125"), Decimal(40 + n)):
            self.wait_staged(key)
            self.commit([dict(self.latest[key], order_qty=qty, modified_at=self.stamp())], insert=False)
        for _ in range(2):  # two single releases, a microsecond apart
            at = self.clock = self.clock + dt.timedelta(microseconds=1)
            self.commit([released_order(self.next_order, 900 + n, 3, at.replace(microsecond=0), 7, at)], insert=True)
            self.next_order += 1


class ShopFloor(Writer):
    next_order = 100_000

    def round(self, n: int) -> None:
        at = self.stamp()
        self.commit([{"work_order_id": self.next_order + i, "product_id": 722, "order_qty": 10, "stocked_qty": 0,
                      "scrapped_qty": 0, "start_date": at, "end_date": None, "due_date": at, "scrap_reason_id": None,
                      "modified_date": at} for i in range(BATCH_SIZE + 1)], insert=True)
        self.next_order += BATCH_SIZE + 1
        key = self.random.choice(sorted(self.latest))
        self.wait_staged(key)
        self.commit([dict(self.latest[key], stocked_qty=10, end_date=self.stamp(), modified_date=self.clock)],
                    insert=False)


def current_rows(side: Side, table: sa.Table, key: str) -> dict[int, dict]:
    engine = side.engine()
    try:
        with engine.connect() as conn:
            return {r._mapping[key]: dict(r._mapping) for r in conn.execute(sa.select(table))}
    finally:
        engine.dispose()


def typed(value):
    # SQLite hands back text for dates and timestamps and floats for decimals through raw SQL.
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-":
        return dt.datetime.fromisoformat(value) if len(value) > 10 else dt.date.fromisoformat(value)
    if isinstance(value, float):
        return Decimal(str(value))
    return value


@pytest.mark.parametrize("kind", ["postgresql", "mysql", "sqlite"])
def test_every_erp_schedule_change_reaches_the_mes_inbound_table_exactly_once_while_confirmations_flow(
        db_factory, tmp_path, kind):
    plant: Plant = make_plant(db_factory, kind, tmp_path, suffix=f"_{kind[:2]}")
    service = Service(tmp_path / "agent.yaml", free_port())
    write_config(service.config, plant, flows(plant, BATCH_SIZE), http={"bind": f"127.0.0.1:{service.http_port}"})
    for system in ("mes", "erp"):
        result = cli("sql", "ddl", "-c", str(service.config), "--system", system, "--apply")
        assert result.exit_code == 0, result.output
    assert cli("snapshot", "-c", str(service.config), "--accept", "--yes").exit_code == 0
    orders, work_orders = production_order(plant), work_order(plant)
    initial_erp = versions_of(plant.erp, orders, ("modified_at", "order_no"), ("order_no",))
    initial_mes = versions_of(plant.mes, work_orders, ("modified_date", "work_order_id"), ("work_order_id",))
    planner = ErpPlanner(plant.erp, plant.mes, "stg_released_order", orders, "order_no", "modified_at", ERP_BASE, 1)
    planner.latest = current_rows(plant.erp, orders, "order_no")
    shop = ShopFloor(plant.mes, plant.erp, "stg_work_order", work_orders, "work_order_id", "modified_date",
                     dt.datetime(2030, 3, 2, 7, 0, 0, 500_000), 2)
    shop.latest = current_rows(plant.mes, work_orders, "work_order_id")
    try:
        service.start()
        wait_until(lambda: len(plant.mes.staged("stg_released_order")) == RELEASED_ORDERS
                   and len(plant.erp.staged("stg_work_order")) == len(initial_mes), 60, "the initial load of both flows")
        planner.start()
        shop.start()
        planner.join(timeout=240)
        shop.join(timeout=240)
        assert planner.error is None and shop.error is None, (planner.error, shop.error)
        expected_erp = initial_erp | set(planner.committed)
        expected_mes = initial_mes | set(shop.committed)
        wait_until(lambda: set(plant.mes.staged("stg_released_order")) == expected_erp
                   and set(plant.erp.staged("stg_work_order")) == expected_mes, 60, "every change staged")
        time.sleep(1)  # three more polls of each flow: nothing more arrives
    finally:
        code = service.stop() if service.process else None
    assert code == 0, service.log[-3000:]

    inbound = plant.mes.staged("stg_released_order")
    assert sorted(inbound) == sorted(expected_erp)  # every ERP (key, version) exactly once, nothing else
    assert len(expected_erp) == RELEASED_ORDERS + ROUNDS * (TIE_GROUP + 5 + 3 + 2)
    confirmations = plant.erp.staged("stg_work_order")
    assert sorted(confirmations) == sorted(expected_mes)  # and the other direction, at the same time
    assert len(expected_mes) == len(initial_mes) + ROUNDS * (BATCH_SIZE + 2)

    # The ERP's values as each version was committed, mapped into the MES inbound table.
    staged_rows = plant.mes.rows(
        "SELECT stg_flow, stg_source_key, stg_source_version, stg_status, order_no, product_id, qty, scheduled_start, "
        f"due_date, status, erp_modified_at FROM {plant.mes.staging}.stg_released_order")
    for row in staged_rows:
        assert (row.stg_flow, row.stg_status) == ("released_orders", "PENDING")
        if (row.stg_source_key, row.stg_source_version) in planner.committed:
            erp_row = planner.committed[(row.stg_source_key, row.stg_source_version)]
            assert [typed(v) for v in row[4:]] == [
                erp_row["order_no"], erp_row["product_id"], erp_row["order_qty"], erp_row["scheduled_start"],
                erp_row["due_date"], erp_row["status"], erp_row["modified_at"]]
    # Ties at batch boundaries: some batch ended inside a group of orders released with one timestamp.
    ends = [r.watermark_after for r in plant.mes.rows(
        f"SELECT watermark_after FROM {plant.mes.staging}.agent_run WHERE flow = 'released_orders' AND rows_read > 0")]
    released = [int(e.rpartition("order_no=")[2]) - FIRST - RELEASED_ORDERS for e in ends]
    tie_ends = [n for n in released if n >= 0 and n % (TIE_GROUP + 2) < TIE_GROUP - 1]  # not a group's last order
    assert tie_ends, ends
    log = service.log.splitlines()
    assert not [line for line in log if " ERROR " in line or "Traceback" in line], service.log[-3000:]
    assert "mes-erp-agent running 2 flows" in service.log
