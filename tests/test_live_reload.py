"""Live reload of the running agent (PostgreSQL, `mes-erp-agent run` as a subprocess, a webhook for alerts).

An invalid edit is rejected with a `config_rejected` incident naming file:line while the agent keeps moving
rows on the configuration it had; a valid edit that adds a flow starts that flow without a restart (and
resolves the incident); a removed flow stops polling; SIGHUP reloads too.
"""

from __future__ import annotations

import signal
import time

import sqlalchemy as sa
import yaml

from helpers import make_pair, prepare_erp, staging_engine, table_name, write_config
from service_support import Service, WebhookServer, free_port, wait_until
from test_import_job import create_mes_table, recent, write_mes


def flow(pair, table: str, staging: str) -> dict:
    return {"source": "mes", "target": "erp", "table": table_name(pair, table), "watermark": ["updated_at", "wo_id"],
            "key": ["wo_id"], "staging_table": staging, "columns": {"order_no": "wo_id", "qty": "qty"},
            "schedule": {"every": "300ms"}}


def staged(pair, staging: str) -> list[tuple]:
    engine = staging_engine(pair)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(f"SELECT order_no, qty FROM {pair.staging_schema}.{staging} "
                                                           "ORDER BY stg_id"))]
    finally:
        engine.dispose()


def test_invalid_edit_is_rejected_and_a_valid_one_adds_a_flow_without_a_restart(db_factory, tmp_path):
    pair = make_pair(db_factory, "postgresql", suffix="_pg_reload")
    orders = create_mes_table(pair)
    holds = sa.Table("hold", sa.MetaData(), *[sa.Column(c.name, c.type, primary_key=c.primary_key, autoincrement=False)
                                              for c in orders.columns], schema=pair.mes_schema)
    engine = sa.create_engine(pair.mes_url)
    holds.metadata.create_all(engine)
    engine.dispose()
    write_mes(pair, orders, [{"wo_id": 1, "qty": 10, "updated_at": recent(30)}])
    write_mes(pair, holds, [{"wo_id": 7, "qty": 70, "updated_at": recent(30)}])

    webhook = WebhookServer().start()
    service = Service(tmp_path / "agent.yaml", free_port())
    extra = {"alerts": {"webhook": {"url": webhook.url()}, "check_every": "1s"}}
    write_config(service.config, pair, {"orders": flow(pair, "wo", "stg_orders")}, **extra)
    prepare_erp(service.config)
    # What the DBA and the admin do before the edit goes live: the new flow's staging table and snapshots,
    # from the next configuration kept beside the running one.
    both = {"orders": flow(pair, "wo", "stg_orders"), "holds": flow(pair, "hold", "stg_holds")}
    following = write_config(tmp_path / "agent.next.yaml", pair, both, **extra)
    try:
        service.start()
        wait_until(lambda: staged(pair, "stg_orders") == [(1, 10)], 30, "the first flow's first row")
        prepare_erp(following)

        # 1. An invalid edit: rejected, an incident names file:line, the agent keeps running the old configuration.
        text = service.config.read_text(encoding="utf-8")
        service.config.write_text(text.replace("schedule:", "batch_size: lots\n    schedule:", 1), encoding="utf-8")
        bad_line = next(n for n, line in enumerate(service.config.read_text().splitlines(), 1) if "batch_size: lots" in line)
        wait_until(lambda: len(webhook.posts) == 1, 30, "the config_rejected alert")
        write_mes(pair, orders, [{"wo_id": 2, "qty": 20, "updated_at": recent(1)}])
        wait_until(lambda: staged(pair, "stg_orders") == [(1, 10), (2, 20)], 30, "a row moved on the old configuration")

        # 2. A valid edit adding a flow: it starts without a restart; the incident resolves.
        service.config.write_text(following.read_text(encoding="utf-8"), encoding="utf-8")
        wait_until(lambda: staged(pair, "stg_holds") == [(7, 70)], 30, "the added flow's row")
        wait_until(lambda: len(webhook.posts) == 2, 30, "the resolution")
        pid = service.process.pid

        # 3. SIGHUP reloads too; removing a flow stops it polling.
        only_holds = yaml.safe_load(following.read_text(encoding="utf-8"))
        del only_holds["flows"]["orders"]
        tmp = tmp_path / "agent.tmp.yaml"
        tmp.write_text(yaml.safe_dump(only_holds, sort_keys=False), encoding="utf-8")
        tmp.replace(service.config)  # an atomic save, as editors and config management do
        service.process.send_signal(signal.SIGHUP)
        time.sleep(3)
        write_mes(pair, orders, [{"wo_id": 3, "qty": 30, "updated_at": recent(1)}])
        write_mes(pair, holds, [{"wo_id": 8, "qty": 80, "updated_at": recent(1)}])
        wait_until(lambda: staged(pair, "stg_holds") == [(7, 70), (8, 80)], 30, "the remaining flow's row")
        time.sleep(1.5)
        assert staged(pair, "stg_orders") == [(1, 10), (2, 20)]  # the removed flow polls no more
        assert service.process.pid == pid and service.process.poll() is None  # never restarted
    finally:
        code = service.stop() if service.process else None
        webhook.stop()
    assert code == 0, service.log[-3000:]
    rejected, resolved = webhook.bodies()
    assert rejected["title"] == "Configuration rejected: agent.yaml (1 problem)"
    assert (f"  1. {service.config}:{bad_line}: `flows.orders.batch_size`: Input should be a valid integer, unable to "
            "parse string as an integer\n") in rejected["text"], rejected["text"]
    assert "It keeps running every flow on the configuration it loaded before" in rejected["text"]
    assert resolved["title"] == "Configuration loaded: agent.yaml"
    log = service.log
    assert "configuration" in log and "rejected; the agent keeps running on the configuration it loaded before" in log
    assert "flow holds added: it starts polling now" in log
    assert "reloading (SIGHUP)" in log
    assert "flow orders removed from the configuration: it no longer polls" in log
