"""The staging table's unique key (its safety net; agent_ledger decides what is staged), on real servers.

The agent's DDL makes it (stg_flow, stg_source_version, stg_source_key): a batch's rows arrive in watermark order, so
each insert lands at the end of that index instead of on a random page. A table made by an earlier version has the
same columns key first; the agent writes into both alike: a re-read stages nothing, a changed MES row stages exactly
its new version, and a duplicate is refused by either key.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from agent.demo import adventureworks
from helpers import WORK_ORDER_COLUMNS, cli, make_pair, staging_engine, staging_rows, table_name, work_order_flow, write_config

EARLIER_ORDER = ["stg_flow", "stg_source_key", "stg_source_version"]
NOW_ORDER = ["stg_flow", "stg_source_version", "stg_source_key"]
NEW_STAMP = dt.datetime(2026, 5, 4, 3, 2, 1, 654321)
MAPPED = list(WORK_ORDER_COLUMNS)


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def plant(request, db_factory, tmp_path_factory):
    pair = make_pair(db_factory, request.param, suffix=f"_{request.param}")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=12)
    mes.dispose()
    config = write_config(tmp_path_factory.mktemp("unique") / "agent.yaml", pair, {
        "orders_now": work_order_flow(pair, staging_table="stg_now", batch_size=5),
        "orders_earlier": work_order_flow(pair, staging_table="stg_earlier", batch_size=5),
    })
    assert cli("sql", "ddl", "-c", str(config), "--system", "erp", "--apply").exit_code == 0
    _rebuild_key(pair, "stg_earlier", EARLIER_ORDER)  # as an earlier version of the agent made it
    result = cli("snapshot", "-c", str(config), "--accept", "--yes")
    assert result.exit_code == 0, result.output
    return pair, config


def _rebuild_key(pair, table: str, columns: list[str]) -> None:
    name, qualified = f"uq_{table}_source", f"{pair.staging_schema}.{table}"
    drop = f"DROP INDEX {name}" if pair.kind == "mysql" else f"DROP CONSTRAINT {name}"
    engine = staging_engine(pair)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {qualified} {drop}, ADD CONSTRAINT {name} UNIQUE ({', '.join(columns)})")
    engine.dispose()


def unique_keys(pair, table: str) -> list[list[str]]:
    engine = staging_engine(pair)
    try:
        return [list(u["column_names"]) for u in sa.inspect(engine).get_unique_constraints(table, schema=pair.staging_schema)]
    finally:
        engine.dispose()


def staged(pair, table: str) -> list[tuple[str, str]]:
    return [(r.stg_source_key, r.stg_source_version) for r in staging_rows(pair, table, "stg_source_key, stg_source_version")]


def run_once(config) -> None:
    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output


def test_the_agent_makes_the_key_version_first_and_writes_alike_into_a_table_made_key_first(plant):
    pair, config = plant
    assert unique_keys(pair, "stg_now") == [NOW_ORDER]
    assert unique_keys(pair, "stg_earlier") == [EARLIER_ORDER]

    run_once(config)
    first = staged(pair, "stg_now")
    assert len(first) == 12 and staged(pair, "stg_earlier") == first

    # A re-read from the start (the watermark forgotten, as after a restore): the ledger skips every row.
    engine = staging_engine(pair)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {pair.staging_schema}.agent_watermark"))
    engine.dispose()
    mes = sa.create_engine(pair.mes_url)
    with mes.begin() as conn:
        changed = conn.execute(sa.text(f"SELECT min(work_order_id) FROM {table_name(pair, 'work_order')}")).scalar()
        conn.execute(sa.text(f"UPDATE {table_name(pair, 'work_order')} SET modified_date = :stamp WHERE work_order_id = :id"),
                     {"stamp": NEW_STAMP, "id": changed})
    mes.dispose()
    run_once(config)
    new_version = (str(changed), f"{NEW_STAMP.isoformat()}|{changed}")
    assert staged(pair, "stg_now") == [*first, new_version]
    assert staged(pair, "stg_earlier") == [*first, new_version]


@pytest.mark.parametrize("table", ["stg_now", "stg_earlier"])
def test_either_key_refuses_a_second_row_of_the_same_flow_key_and_version(plant, table):
    pair, config = plant
    run_once(config)
    copied = ", ".join(["stg_flow", "stg_source_key", "stg_source_version", "stg_change", *MAPPED])
    engine = staging_engine(pair)
    try:
        with engine.connect() as conn:
            first = conn.execute(sa.text(f"SELECT min(stg_id) FROM {pair.staging_schema}.{table}")).scalar()
            with pytest.raises(sa.exc.IntegrityError) as refused:  # every other column as valid as the original's
                conn.execute(sa.text(
                    f"INSERT INTO {pair.staging_schema}.{table} (stg_batch_id, {copied}) "
                    f"SELECT 'by-hand', {copied} FROM {pair.staging_schema}.{table} WHERE stg_id = :first"), {"first": first})
    finally:
        engine.dispose()
    assert f"uq_{table}_source" in str(refused.value.orig)
