"""`mes-erp-agent backfill`, live on PostgreSQL and MariaDB: a range is read again and only what agent_ledger does not
know is staged, the live watermark never moves, piped output gets one progress line per batch, and a backfill killed
with SIGKILL mid-way resumes after its last committed batch and completes the range exactly.

The audit trigger of test_import_job proves that no (key, version) reaches the staging table twice.
"""

from __future__ import annotations

import datetime as dt
import zlib
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
import sqlalchemy as sa

from helpers import cli, make_pair, prepare_erp, write_config
from test_import_job import add_audit_trigger, audited, create_mes_table, flow, query, version
from test_reconcile import DAY, LATER, at, live_watermark, run_once, source_pairs, staged_pairs, t, write


@pytest.fixture(params=["postgresql", "mysql"])
def plant(request, db_factory, tmp_path):
    kind = request.param
    pair = make_pair(db_factory, kind, suffix=f"_{kind}_{zlib.crc32(request.node.name.encode()) % 10**6}")
    return pair, create_mes_table(pair), tmp_path


def position(pair) -> list[tuple]:
    return query(pair, f"SELECT flow, watermark_columns, watermark_values FROM {pair.staging_schema}.agent_watermark "
                       "WHERE flow = 'wo#backfill'")


def test_a_backfill_stages_only_what_is_missing_and_never_moves_the_watermark(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, batch_size=4)})
    write(pair, table, [{"wo_id": i, "qty": i, "updated_at": at(i)} for i in range(1, 11)])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    write(pair, table, [{"wo_id": 12, "qty": 12, "updated_at": LATER}])
    run_once(config)
    # Two transactions commit long after the watermark (and overlap) passed their updated_at: no poll sees them.
    write(pair, table, [{"wo_id": 11, "qty": 11, "updated_at": at(2.5)}, {"wo_id": 13, "qty": 13, "updated_at": at(7.5)}])
    run_once(config)
    assert staged_pairs(pair) == source_pairs(pair, table) - {version(11, at(2.5)), version(13, at(7.5))}
    before = live_watermark(pair)

    result = cli("backfill", "-c", str(config), "--flow", "wo", "--from", "2026-03-10", "--to", "2026-03-10T23:59:59")
    assert result.exit_code == 0, result.output
    # keyset order: 1, 2, 11, 3 | 4, 5, 6, 7 | 13, 8, 9, 10 (then an empty page ends the range)
    assert result.output.splitlines() == [
        "backfill wo: updated_at 2026-03-10T00:00:00.000000 .. 2026-03-10T23:59:59.000000, 12 rows in the source",
        "backfill wo: 4/12 rows read, 1 staged, 3 already staged, 0 quarantined",
        "backfill wo: 8/12 rows read, 1 staged, 7 already staged, 0 quarantined",
        "backfill wo: 12/12 rows read, 2 staged, 10 already staged, 0 quarantined",
        "backfill wo: done, 12 rows read in 3 batches, 2 staged, 10 already staged, 0 quarantined; the live watermark "
        f"stays at updated_at={t(LATER)}, wo_id=12",
    ]
    assert staged_pairs(pair) == source_pairs(pair, table)
    assert audited(pair) == Counter(dict.fromkeys(source_pairs(pair, table), 1))
    assert live_watermark(pair) == before  # values, revision and time: untouched
    assert position(pair) == [("wo#backfill", '["backfill_from", "backfill_to", "backfill_done", "updated_at", "wo_id"]',
                               '[{"type": "datetime", "value": "2026-03-10T00:00:00.000000"}, {"type": "datetime", '
                               '"value": "2026-03-10T23:59:59.000000"}, {"type": "bool", "value": true}, {"type": '
                               f'"datetime", "value": "{t(at(10))}"}}, {{"type": "int", "value": "10"}}]')]

    # Done, so the same backfill again reads the whole range from its start, and stages nothing.
    result = cli("backfill", "-c", str(config), "--flow", "wo", "--from", "2026-03-10", "--to", "2026-03-10T23:59:59")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == ("backfill wo: done, 12 rows read in 3 batches, 0 staged, 12 already "
                                              f"staged, 0 quarantined; the live watermark stays at updated_at={t(LATER)}, "
                                              "wo_id=12")
    assert audited(pair) == Counter(dict.fromkeys(source_pairs(pair, table), 1))
    assert live_watermark(pair) == before


def test_a_backfill_killed_mid_range_resumes_and_completes_it_exactly(plant):
    pair, table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair, batch_size=25)})
    engine = sa.create_engine(pair.mes_url)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"wo_id": i, "qty": i, "updated_at": DAY + dt.timedelta(seconds=i)}
                                      for i in range(1, 301)])
    prepare_erp(config)
    add_audit_trigger(pair)
    run_once(config)
    write(pair, table, [{"wo_id": 9999, "qty": 1, "updated_at": LATER}])
    run_once(config)
    with engine.begin() as conn:  # 1,500 late rows between the staged ones: 60 batches of 25 are missing
        conn.execute(table.insert(), [{"wo_id": 1000 + i, "qty": i, "updated_at": DAY + dt.timedelta(seconds=i % 300,
                                                                                                     microseconds=500 + i)}
                                      for i in range(1500)])
    engine.dispose()
    before = live_watermark(pair)
    args = [sys.executable, "-m", "agent", "backfill", "-c", str(config), "--flow", "wo", "--from", "2026-03-10",
            "--to", "2026-03-11"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    backfill = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert backfill.stdout is not None
    lines = [backfill.stdout.readline() for _ in range(6)]  # the range, then five committed batches
    backfill.send_signal(signal.SIGKILL)
    backfill.wait(timeout=30)
    assert lines[0] == "backfill wo: updated_at 2026-03-10T00:00:00.000000 .. 2026-03-11T00:00:00.000000, 1800 rows in the source\n"
    assert lines[5].startswith("backfill wo: 125/1800 rows read, ")
    stored = position(pair)
    assert len(stored) == 1 and '{"type": "bool", "value": false}' in stored[0][2]  # mid-range, not done
    assert 0 < len(staged_pairs(pair) - {version(i, DAY + dt.timedelta(seconds=i)) for i in range(1, 301)}) < 1500

    result = cli("backfill", "-c", str(config), "--flow", "wo", "--from", "2026-03-10", "--to", "2026-03-11")
    assert result.exit_code == 0, result.output
    output = result.output.splitlines()
    assert output[1].startswith("backfill wo: resuming after updated_at=2026-03-10T")
    assert output[1].endswith(" (an earlier backfill of this range did not finish)")
    assert staged_pairs(pair) == source_pairs(pair, table)
    assert audited(pair) == Counter(dict.fromkeys(source_pairs(pair, table), 1))
    assert live_watermark(pair) == before
    assert '{"type": "bool", "value": true}' in position(pair)[0][2]


def test_a_backfill_needs_values_of_the_first_watermark_column(plant):
    pair, _table, folder = plant
    config = write_config(folder / "agent.yaml", pair, {"wo": flow(pair)})
    prepare_erp(config)
    result = cli("backfill", "-c", str(config), "--flow", "wo", "--from", "yesterday", "--to", "2026-03-11")
    assert result.exit_code == 2
    assert result.output.strip() == ("'yesterday' is not a value of updated_at (timestamp); e.g. 2026-03-10 or "
                                     "2026-03-10T12:00:00")
    result = cli("backfill", "-c", str(config), "--flow", "wo", "--from", "2026-03-12", "--to", "2026-03-11")
    assert result.exit_code == 2
    assert result.output.strip() == "--from 2026-03-12 00:00:00 is after --to 2026-03-11 00:00:00"

