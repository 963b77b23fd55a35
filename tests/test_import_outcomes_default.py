"""Import outcomes of the default stg_* layout (a staging table `sql ddl` creates), live on PostgreSQL, MariaDB and
SQLite: stg_status PENDING is pending, ERROR an error with the ERP's message in stg_error, any other value done, a
row the import job deleted done. Rows in error raise one incident naming key, version and message, `outcomes`
lists them, `outcomes --resubmit` runs the flow's declared `resubmit:` on exactly those rows, and the incident
resolves; PENDING rows older than the limit raise the backlog incident (the same message as before outcomes were
watched), resolved when the job takes them."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa

from agent.alerts.model import utc
from helpers import cli
from outcome_support import FLOW, Plant, as_utc, new_plant, version

KINDS = ["postgresql", "mysql", "sqlite"]
COLUMNS = ("stg_source_key", "stg_source_version", "stg_status", "stg_error", "item", "qty")


def default_plant(db_factory, tmp_path, kind: str, suffix: str) -> Plant:
    return new_plant(db_factory, kind, tmp_path / "plant", vendor=False, suffix=f"{suffix}_{kind[:2]}")


def stg_id(plant: Plant, key: int, minutes: int) -> tuple[int, dt.datetime]:
    engine = plant.engine()
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT stg_id, stg_loaded_at FROM {plant.table} WHERE stg_source_version = :v"),
                           {"v": version(key, minutes)}).one()
    engine.dispose()
    return int(row[0]), as_utc(row[1])


@pytest.mark.parametrize("kind", KINDS)
def test_rows_in_error_raise_one_incident_with_stg_error_and_resolve_after_resubmit(db_factory, tmp_path, kind):
    plant = default_plant(db_factory, tmp_path, kind, "err")
    table, config = plant.table, plant.config
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in range(1, 6)])
    plant.run_once()
    plant.import_job(consume=(1,), done=(2,), fail={3: ("INV_NO_ITEM", "Item ITEM-3 does not exist")})
    row_3, staged_3 = stg_id(plant, 3, 3)
    status = json.loads(cli("status", "-c", str(config), "--json").output)[0]
    assert {k: status[k] for k in ("rows_moved", "pending_rows", "error_rows", "done_rows")} == {
        "rows_moved": 5, "pending_rows": 2, "error_rows": 1, "done_rows": 2}
    text = cli("status", "-c", str(config)).output
    assert (f"flow {FLOW}: 1 staged rows rejected by the ERP import job; see them with: mes-erp-agent outcomes -c "
            f"{config} --flow {FLOW}\n") in text
    watch = plant.monitor()
    try:
        assert watch.check(3) == [
            ("opened", f"ERP import error on {table}: flow {FLOW}, key 3: INV_NO_ITEM: Item ITEM-3 does not exist")]
        source = f"{plant.pair.mes_schema}.completion" if plant.pair.mes_schema else "completion"
        assert watch.channel.messages[0].body == f"""\
ERP IMPORT ERRORS: {FLOW}
The ERP import job rejected 1 row of flow {FLOW} in {table} on system erp (stg_status ERROR); 1 row of the flow is in error now \
({utc(watch.clock.now)}).
It came from {source} on system mes:

  key completion_id = 3, version {version(3, 3)} (staged {utc(staged_3)})
    ERP message: INV_NO_ITEM: Item ITEM-3 does not exist

Nothing is lost: each row stays where the import job left it, and the agent never stages it again.

What to do:
  1. Read the ERP's message; fix the cause in the ERP (item, organization, period...) or in the MES (a
     corrected MES row is a new version and is staged like any change).
  2. List every row of the flow in error with:
       mes-erp-agent outcomes -c {config} --flow {FLOW}
  3. Hand a fixed row back to the import job (the flow's `resubmit:` sets stg_status = PENDING,
     stg_error = NULL):
       mes-erp-agent outcomes -c {config} --flow {FLOW} --resubmit 3
  4. This incident resolves when this row is no longer in error."""
        restarted = plant.monitor()  # a restarted agent: the outbox remembers the incident and the rows it lists
        try:
            assert restarted.check(2) == []
        finally:
            restarted.close()
        mes_row = (f"MES row {source} on system mes: completion_id = 3, version {version(3, 3)} "
                   f"(staged {utc(staged_3)[:-4]} UTC, stg_id {row_3})")
        listed = cli("outcomes", "-c", str(config), "--flow", FLOW)
        assert (listed.exit_code, listed.output) == (0, f"""\
flow {FLOW}: 1 row in error in {table} on system erp (stg_status ERROR); 2 pending, 2 done
  {mes_row}
    ERP message: INV_NO_ITEM: Item ITEM-3 does not exist
""")
        before = plant.rows(*COLUMNS)
        resubmitted = cli("outcomes", "-c", str(config), "--flow", FLOW, "--resubmit", "3", "4")
        assert (resubmitted.exit_code, resubmitted.output) == (0, f"""\
flow {FLOW}: resubmitted 1 row in error in {table} on system erp: set stg_status = PENDING, stg_error = NULL
  {mes_row}; was: INV_NO_ITEM: Item ITEM-3 does not exist
flow {FLOW}: no row in error has key 4; nothing changed for it
""")
        after = plant.rows(*COLUMNS)
        assert [r for r in after if r[0] != "3"] == [r for r in before if r[0] != "3"]  # key 4 is pending: untouched
        assert [r for r in after if r[0] == "3"] == [("3", version(3, 3), "PENDING", None, "ITEM-3", Decimal("3.000"))]
        plant.import_job(consume=(3,))
        assert watch.check(2)[1:] == [("resolved", f"ERP import errors cleared on {table}: flow {FLOW}, key 3")]
        status = json.loads(cli("status", "-c", str(config), "--json").output)[0]
        assert {k: status[k] for k in ("pending_rows", "error_rows", "done_rows")} == {
            "pending_rows": 2, "error_rows": 0, "done_rows": 3}
        assert cli("outcomes", "-c", str(config)).output == f"flow {FLOW}: no row in error in {table} on system erp; 2 pending, 3 done\n"
    finally:
        watch.close()


@pytest.mark.parametrize("kind", KINDS)
def test_pending_rows_older_than_the_limit_raise_one_backlog_incident_resolved_when_taken(db_factory, tmp_path, kind):
    plant = default_plant(db_factory, tmp_path, kind, "bl")
    table = plant.table
    plant.commit([(i, f"ITEM-{i}", str(i), i) for i in range(1, 4)])
    plant.run_once()
    _row, loaded = stg_id(plant, 1, 1)
    watch = plant.monitor()
    try:
        assert watch.check(2) == []
        watch.clock.now = (loaded + dt.timedelta(hours=2, seconds=30)).replace(microsecond=0)
        oldest = watch.clock.now - dt.timedelta(seconds=round(round((watch.clock.now - loaded).total_seconds(), 1)))
        assert watch.check(3) == [("opened", f"ERP backlog on {table}: 3 rows PENDING since {utc(oldest)}")]
        assert watch.channel.messages[0].body == f"""\
ERP BACKLOG: {FLOW}
3 staging rows of flow {FLOW} in {table} on system erp are still PENDING; the oldest was staged {utc(oldest)}, 2h 0m ago, longer \
than alerts.backlog.max_pending_age = 1h 0m.
The agent delivered them; the ERP import job has not picked them up (the confirmation never arrived).

What to do:
  1. Check that the ERP import job for this staging table runs, and read its log.
  2. Look at the waiting rows:
       SELECT stg_id, stg_source_key, stg_loaded_at, stg_error FROM {table}
       WHERE stg_status = 'PENDING' ORDER BY stg_id;
  3. This incident resolves when no PENDING row is older than the limit."""
        plant.import_job(consume=(1,), done=(2, 3))
        assert watch.check(2)[1:] == [("resolved", f"ERP backlog cleared on {table}")]
        assert watch.channel.messages[1].body.splitlines()[1] == (
            f"No staging row of flow {FLOW} in {table} is PENDING longer than the limit since {utc(watch.clock.now)} "
            f"(0 PENDING now); the backlog had lasted since {utc(oldest)}.")
    finally:
        watch.close()
