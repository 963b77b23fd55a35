"""Import outcomes of a vendor-defined interface table (an Oracle-EBS-like MTL_TRANSACTIONS_INTERFACE built here: no
stg_* columns, SOURCE_LINE_ID as the agent's reference), live on PostgreSQL, MariaDB and SQLite:
- every MES change arrives exactly once, while the import job consumes rows and the agent re-reads its overlap;
- rows the job rejects (PROCESS_FLAG 3, ERROR_CODE / ERROR_EXPLANATION) raise exactly one incident per wave naming
  key, version and the ERP's message, `outcomes` lists them, `outcomes --resubmit KEY` sets exactly the declared
  columns of exactly those rows, and the incident resolves once they are no longer in error;
- rows pending longer than `alerts.backlog.max_pending_age` raise exactly one backlog incident, resolved when consumed;
- status and /metrics count pending, error and done.
The agent's periodic check is the real Monitor with a real IncidentBook, its clock set by the test.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.alerts.model import utc
from helpers import cli
from outcome_support import FLOW, Plant, new_plant, version

KINDS = ["postgresql", "mysql", "sqlite"]
REJECTED = ("INV_NO_ITEM", "Item ITEM-3 does not exist in organization 204")
REJECTED_5 = ("INV_PERIOD_CLOSED", "No open period for 2026-03-01")


def vendor_plant(db_factory, tmp_path, kind: str, suffix: str) -> Plant:
    return new_plant(db_factory, kind, tmp_path / "plant", vendor=True, suffix=f"{suffix}_{kind[:2]}")


@pytest.mark.parametrize("kind", KINDS)
def test_a_vendor_interface_table_receives_every_mes_change_exactly_once(db_factory, tmp_path, kind):
    plant = vendor_plant(db_factory, tmp_path, kind, "once")
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in range(1, 7)])
    plant.run_once()
    plant.import_job(consume=(1, 2))  # the transaction manager takes two rows: they leave the interface table
    plant.commit([(3, "ITEM-3", "30", 7), (7, "ITEM-7", "7", 8)])  # a changed completion and a new one
    plant.run_once()
    plant.run_once()  # `overlap: 5m` re-reads the window behind the watermark: nothing is staged again
    plant.import_job(consume=(3, 4))  # both staged versions of completion 3 are consumed
    plant.commit([(1, "ITEM-1", "10", 9)])  # a consumed completion changes again: its new version is staged
    plant.run_once()
    plant.run_once()

    ledger = plant.ledger()
    assert sorted(ledger.values()) == sorted(plant.versions) and len(plant.versions) == 9  # every change, once
    rows = plant.rows("SOURCE_LINE_ID", "TRANSACTION_REFERENCE", "ITEM_SEGMENT1", "TRANSACTION_QUANTITY", "PROCESS_FLAG",
                      "LOCK_FLAG", "TRANSACTION_MODE", "SOURCE_CODE", "SOURCE_HEADER_ID", "ERROR_CODE")
    staged = sorted((ledger[r[0]], *r[1:]) for r in rows)
    assert staged == [
        (("1", version(1, 9)), "1", "ITEM-1", Decimal("10.000"), 1, 2, 3, "MES", 101, None),
        (("5", version(5, 5)), "5", "ITEM-5", Decimal("5.000"), 1, 2, 3, "MES", 105, None),
        (("6", version(6, 6)), "6", "ITEM-6", Decimal("6.000"), 1, 2, 3, "MES", 106, None),
        (("7", version(7, 8)), "7", "ITEM-7", Decimal("7.000"), 1, 2, 3, "MES", 107, None),
    ]
    assert plant.consumed == {("1", version(1, 1)), ("2", version(2, 2)), ("3", version(3, 3)), ("3", version(3, 7)),
                              ("4", version(4, 4))}
    assert plant.consumed | {s[0] for s in staged} == set(plant.versions)  # in the table or consumed, never both
    status = json.loads(cli("status", "-c", str(plant.config), "--json").output)[0]
    assert {k: status[k] for k in ("rows_moved", "pending_rows", "error_rows", "done_rows")} == {
        "rows_moved": 9, "pending_rows": 4, "error_rows": 0, "done_rows": 5}


@pytest.mark.parametrize("kind", KINDS)
def test_rejected_rows_raise_one_incident_naming_key_and_message_and_resolve_after_resubmit(db_factory, tmp_path, kind):
    plant = vendor_plant(db_factory, tmp_path, kind, "err")
    n, table, config = plant.n, plant.table, plant.config
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in range(1, 6)])
    plant.run_once()
    plant.import_job(consume=(1, 2), fail={3: REJECTED})
    entry_3, staged_3 = plant.entry(3, 3)
    watch = plant.monitor()
    try:
        assert watch.check(3) == [
            ("opened", f"ERP import error on {table}: flow {FLOW}, key 3: INV_NO_ITEM: Item ITEM-3 does not exist in "
                       "organization 204")]
        source = f"{plant.pair.mes_schema}.completion" if plant.pair.mes_schema else "completion"
        assert watch.channel.messages[0].body == f"""\
ERP IMPORT ERRORS: {FLOW}
The ERP import job rejected 1 row of flow {FLOW} in {table} on system erp ({n('PROCESS_FLAG')} 3); 1 row of the flow is in error \
now ({utc(watch.clock.now)}).
It came from {source} on system mes:

  key completion_id = 3, version {version(3, 3)} (staged {utc(staged_3)})
    ERP message: INV_NO_ITEM: Item ITEM-3 does not exist in organization 204

Nothing is lost: each row stays where the import job left it, and the agent never stages it again.

What to do:
  1. Read the ERP's message; fix the cause in the ERP (item, organization, period...) or in the MES (a
     corrected MES row is a new version and is staged like any change).
  2. List every row of the flow in error with:
       mes-erp-agent outcomes -c {config} --flow {FLOW}
  3. Hand a fixed row back to the import job (the flow's `resubmit:` sets {n('PROCESS_FLAG')} = 1, {n('LOCK_FLAG')} = 2,
     {n('TRANSACTION_MODE')} = 3, {n('ERROR_CODE')} = NULL, {n('ERROR_EXPLANATION')} = NULL):
       mes-erp-agent outcomes -c {config} --flow {FLOW} --resubmit 3
  4. This incident resolves when this row is no longer in error."""
        assert import_rows(watch) == {"pending": 2.0, "error": 1.0, "done": 2.0}

        listed = cli("outcomes", "-c", str(config))
        assert (listed.exit_code, listed.output) == (0, f"""\
flow {FLOW}: 1 row in error in {table} on system erp ({n('PROCESS_FLAG')} 3); 2 pending, 2 done
  MES row {source} on system mes: completion_id = 3, version {version(3, 3)} (staged {utc(staged_3)[:-4]} UTC, \
{n('SOURCE_LINE_ID')} {entry_3})
    ERP message: INV_NO_ITEM: Item ITEM-3 does not exist in organization 204
""")
        as_json = json.loads(cli("outcomes", "-c", str(config), "--json").output)[0]
        assert as_json["rows"] == [{
            "source_key": "3", "key": {"completion_id": "3"}, "key_text": "completion_id = 3",
            "source_version": version(3, 3), "status": 3, "error": "INV_NO_ITEM: Item ITEM-3 does not exist in organization 204",
            "messages": ["INV_NO_ITEM: Item ITEM-3 does not exist in organization 204"],
            "staged_at": staged_3.isoformat(), "row_id_column": n("SOURCE_LINE_ID"), "row_id": entry_3}]

        # A change of another completion while row 3 waits in error: nothing the import job wrote is overwritten.
        plant.commit([(4, "ITEM-4", "40", 6)])
        plant.run_once()
        assert plant.rows("TRANSACTION_REFERENCE", "PROCESS_FLAG", "ERROR_CODE", "ERROR_EXPLANATION")[:2] == [
            ("3", 3, *REJECTED), ("4", 1, None, None)]
        # A second wave: completion 5 is rejected too. One new incident for it; the first stays open.
        plant.import_job(fail={5: REJECTED_5})
        told = watch.check(2)
        assert told[1:] == [("opened", f"ERP import error on {table}: flow {FLOW}, key 5: INV_PERIOD_CLOSED: No open "
                                       "period for 2026-03-01")]
        assert "2 rows of the flow are in error now" in watch.channel.messages[1].body

        columns = ("TRANSACTION_REFERENCE", "SOURCE_LINE_ID", "PROCESS_FLAG", "LOCK_FLAG", "TRANSACTION_MODE", "ERROR_CODE",
                   "ERROR_EXPLANATION", "ITEM_SEGMENT1", "TRANSACTION_QUANTITY")
        before = plant.rows(*columns)
        resubmitted = cli("outcomes", "-c", str(config), "--flow", FLOW, "--resubmit", "3")
        assert (resubmitted.exit_code, resubmitted.output) == (0, f"""\
flow {FLOW}: resubmitted 1 row in error in {table} on system erp: set {n('PROCESS_FLAG')} = 1, {n('LOCK_FLAG')} = 2, \
{n('TRANSACTION_MODE')} = 3, {n('ERROR_CODE')} = NULL, {n('ERROR_EXPLANATION')} = NULL
  MES row {source} on system mes: completion_id = 3, version {version(3, 3)} (staged {utc(staged_3)[:-4]} UTC, \
{n('SOURCE_LINE_ID')} {entry_3}); was: INV_NO_ITEM: Item ITEM-3 does not exist in organization 204
""")
        after = plant.rows(*columns)
        assert [r for r in after if r[0] != "3"] == [r for r in before if r[0] != "3"]  # no other row changed
        assert [r for r in after if r[0] == "3"] == [("3", entry_3, 1, 2, 3, None, None, "ITEM-3", Decimal("3.000"))]
        # The job takes the resubmitted row; the first incident resolves, the second stays open.
        plant.import_job(consume=(3,))
        assert watch.check(2)[2:] == [("resolved", f"ERP import errors cleared on {table}: flow {FLOW}, key 3")]
        assert watch.channel.messages[2].body == f"""\
ERP IMPORT ERRORS CLEARED: {FLOW}
The row of flow {FLOW} the ERP import job rejected in {table} (key 3) is no longer in error since {utc(watch.clock.now)} \
(resubmitted, consumed or removed); it was reported at {utc(watch.clock.now)}.
1 row of the flow is in error now.
Nothing more to do; the agent alerts again if it happens again."""
        assert cli("outcomes", "-c", str(config), "--flow", FLOW, "--resubmit", "5").exit_code == 0
        plant.import_job(consume=(5,))
        assert watch.check(2)[3:] == [("resolved", f"ERP import errors cleared on {table}: flow {FLOW}, key 5")]
        assert watch.book.open_incidents() == [] and import_rows(watch) == {"pending": 2.0, "error": 0.0, "done": 4.0}
    finally:
        watch.close()


@pytest.mark.parametrize("kind", KINDS)
def test_rows_pending_longer_than_the_limit_raise_one_backlog_incident_resolved_when_consumed(db_factory, tmp_path, kind):
    plant = vendor_plant(db_factory, tmp_path, kind, "bl")
    n, table = plant.n, plant.table
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in range(1, 4)])
    plant.run_once()
    watch = plant.monitor()
    try:
        assert watch.check(2) == []  # pending, but younger than max_pending_age (1h)
        _entry, staged = plant.entry(1, 1)
        watch.clock.now = (staged + dt.timedelta(hours=2, seconds=30)).replace(microsecond=0)
        age = round((watch.clock.now - staged).total_seconds(), 1)
        oldest = watch.clock.now - dt.timedelta(seconds=round(age))
        assert watch.check(3) == [
            ("opened", f"ERP backlog on {table}: 3 rows pending ({n('PROCESS_FLAG')} 1, 2) since {utc(oldest)}")]
        assert watch.channel.messages[0].body == f"""\
ERP BACKLOG: {FLOW}
3 staging rows of flow {FLOW} in {table} on system erp are still pending ({n('PROCESS_FLAG')} 1, 2); the oldest was staged \
{utc(oldest)}, 2h 0m ago, longer than alerts.backlog.max_pending_age = 1h 0m.
The agent delivered them; the ERP import job has not picked them up (the confirmation never arrived).

What to do:
  1. Check that the ERP import job for this staging table runs, and read its log.
  2. Look at the waiting rows:
       SELECT {n('SOURCE_LINE_ID')}, {n('PROCESS_FLAG')}, {n('ERROR_CODE')}, {n('ERROR_EXPLANATION')} FROM {table}
       WHERE {n('PROCESS_FLAG')} IN (1, 2) ORDER BY {n('SOURCE_LINE_ID')};
  3. This incident resolves when no pending ({n('PROCESS_FLAG')} 1, 2) row is older than the limit."""
        plant.import_job(consume=(1, 2))
        assert len(watch.check(2)) == 1  # one row still pending for 2 h: the backlog stays
        plant.import_job(consume=(3,))
        assert watch.check(2)[1:] == [("resolved", f"ERP backlog cleared on {table}")]
        assert watch.channel.messages[1].body == f"""\
ERP BACKLOG CLEARED: {FLOW}
No staging row of flow {FLOW} in {table} is pending ({n('PROCESS_FLAG')} 1, 2) longer than the limit since {utc(watch.clock.now)} \
(0 pending now); the backlog had lasted since {utc(oldest)}.
Nothing more to do; the agent alerts again if it happens again."""
    finally:
        watch.close()


def import_rows(watch) -> dict[str, float]:
    """mes_erp_agent_import_rows{flow, outcome} as /metrics serves it."""
    text = watch.health.metrics.exposition().decode()
    return {s.labels["outcome"]: s.value for family in text_string_to_metric_families(text)
            if family.name == "mes_erp_agent_import_rows" for s in family.samples if s.labels["flow"] == FLOW}
