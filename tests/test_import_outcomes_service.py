"""The running agent (`mes-erp-agent run` as a subprocess, a real HTTP webhook) watches a vendor interface table's
import outcome for real, on PostgreSQL and MariaDB: the import job rejects one row and consumes another while a
third waits; one import-error incident and one backlog incident reach the webhook, `outcomes --resubmit` hands the
rejected row back, the job takes every row, both incidents resolve once, and /metrics counts the outcome."""

from __future__ import annotations

import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import cli
from outcome_support import FLOW, new_plant
from service_support import Service, WebhookServer, free_port, wait_until


def import_rows(service: Service) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(service.metrics())
            if family.name == "mes_erp_agent_import_rows" for s in family.samples if s.labels["flow"] == FLOW}


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_the_running_agent_alerts_import_errors_and_backlog_once_and_resolves_them(db_factory, tmp_path, kind):
    webhook = WebhookServer().start()
    port = free_port()
    plant = new_plant(db_factory, kind, tmp_path / "plant", vendor=True, suffix=f"svc_{kind[:2]}",
                      alerts={"webhook": {"url": webhook.url()}, "check_every": "500ms",
                              "backlog": {"max_pending_age": "4s"}},
                      http={"bind": f"127.0.0.1:{port}"})
    n, table = plant.n, plant.table
    plant.commit([(1, "ITEM-1", "1", 1), (2, "ITEM-2", "2", 2), (3, "ITEM-3", "3", 3)])
    service = Service(plant.config, port)
    try:
        service.start()
        wait_until(lambda: len(plant.ledger()) == 3, 30, "the three completions staged")
        plant.import_job(consume=(1,), fail={2: ("INV_NO_ITEM", "Item ITEM-2 does not exist")})
        wait_until(lambda: len(webhook.posts) == 2, 30, "the import-error and backlog alerts")
        listed = cli("outcomes", "-c", str(plant.config), "--flow", FLOW)
        resubmitted = cli("outcomes", "-c", str(plant.config), "--flow", FLOW, "--resubmit", "2")
        resubmitted_row = [r for r in plant.rows("TRANSACTION_REFERENCE", "PROCESS_FLAG", "LOCK_FLAG", "TRANSACTION_MODE",
                                                 "ERROR_CODE", "ERROR_EXPLANATION") if r[0] == "2"]
        plant.import_job(consume=(2, 3))
        wait_until(lambda: len(webhook.posts) == 4, 30, "both resolutions")
        wait_until(lambda: import_rows(service) == {"pending": 0.0, "error": 0.0, "done": 3.0}, 30, "the metrics")
        time.sleep(2)  # more checks run: nothing is sent again
    finally:
        code = service.stop() if service.process else None
        webhook.stop()
    assert code == 0, service.log[-3000:]
    assert listed.exit_code == 0 and "    ERP message: INV_NO_ITEM: Item ITEM-2 does not exist\n" in listed.output
    assert resubmitted.exit_code == 0, resubmitted.output
    assert resubmitted_row == [("2", 1, 2, 3, None, None)]
    titles = sorted(b["title"] for b in webhook.bodies())
    assert len(titles) == 4, titles
    assert titles[0] == f"ERP backlog cleared on {table}"
    assert re.fullmatch(rf"ERP backlog on {re.escape(table)}: 1 rows pending \({n('PROCESS_FLAG')} 1, 2\) since "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", titles[1]), titles[1]
    assert titles[2:] == [f"ERP import error on {table}: flow {FLOW}, key 2: INV_NO_ITEM: Item ITEM-2 does not exist",
                          f"ERP import errors cleared on {table}: flow {FLOW}, key 2"]
