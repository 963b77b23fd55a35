"""Bad rows go to agent_quarantine with a reason a person understands; the rest of the batch flows."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa

from helpers import cli, make_pair, prepare_erp, staging_rows, table_name, write_config

T0 = dt.datetime(2026, 3, 2, 6, 0, 0)
GOOD = [
    (1, "LOT-A1", "SCR", Decimal("12.5000"), "L1"),
    (2, "LOT-A2", None, Decimal("3.2500"), "L1"),
    (4, "LOT-A4", "DNT", Decimal("0.1000"), "L2"),
    (6, "LOT-A6", "SCR", Decimal("7.0000"), "L2"),
    (8, "LOT-A8", None, Decimal("1.0000"), "L3"),
    (10, "LOT-A10", "DNT", Decimal("2.2000"), "L3"),
]
BAD = [
    (3, "LOT-2026-000003X", "SCR", Decimal("1.0000"), "L1"),
    (5, "LOT-A5", "XYZ", Decimal("1.0000"), "L1"),
    (7, "LOT-A7", None, Decimal("1.2340"), "L2"),
    (9, "LOT-A9", "SCR", Decimal("1.0000"), None),
]
EXPECTED_REASONS = [
    ("3", "lot: 16 characters, the staging column holds at most 12 (source column lot_no, value 'LOT-2026-000003X')"),
    ("5", "defect: code 'XYZ' from defect_code is not in the column's map and it has no default"),
    ("7", "measured_mm: has more than 2 decimal places (decimal(8,2)) (source column measured, value '1.2340')"),
    ("9", "line: required, but source column line is NULL"),
]


def qc_table(schema):
    return sa.Table(
        "qc_result", sa.MetaData(), sa.Column("result_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("lot_no", sa.String(40), nullable=False), sa.Column("defect_code", sa.String(10)),
        sa.Column("measured", sa.Numeric(10, 4), nullable=False), sa.Column("line", sa.String(10)),
        sa.Column("modified_at", sa.DateTime, nullable=False), schema=schema,
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "mysql", "mysql_odbc"])
def test_bad_rows_are_quarantined_with_reasons_while_good_rows_flow(kind, db_factory, tmp_path):
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    table = qc_table(pair.mes_schema)
    mes = sa.create_engine(pair.mes_url)
    table.metadata.create_all(mes)
    rows = sorted(GOOD + BAD)
    with mes.begin() as conn:
        conn.execute(table.insert(), [
            {"result_id": r[0], "lot_no": r[1], "defect_code": r[2], "measured": r[3], "line": r[4],
             "modified_at": T0 + dt.timedelta(minutes=r[0])} for r in rows
        ])
    mes.dispose()
    flow = {
        "source": "mes", "target": "erp", "table": table_name(pair, "qc_result"),
        "watermark": ["modified_at", "result_id"], "key": ["result_id"], "staging_table": "stg_quality",
        "batch_size": 4, "overlap": "1h",
        "columns": {
            "result_no": "result_id",
            "lot": {"from": "lot_no", "type": "varchar(12)"},
            "defect": {"from": "defect_code", "map": {"SCR": "SCRATCH", "DNT": "DENT"}},
            "measured_mm": {"from": "measured", "type": "decimal(8,2)"},
            "line": {"from": "line", "required": True},
            "plant": {"const": "P01", "type": "varchar(4)"},
        },
    }
    config = write_config(tmp_path / "agent.yaml", pair, {"quality_results": flow})
    prepare_erp(config)

    result = cli("run", "-c", str(config), "--once")
    assert result.exit_code == 0, result.output  # quarantined rows are not a failure

    staged = staging_rows(pair, "stg_quality", "result_no, lot, defect, measured_mm, line, plant", "result_no")
    assert [(r[0], r[1], r[2], Decimal(str(r[3])), r[4], r[5]) for r in staged] == [
        (g[0], g[1], {"SCR": "SCRATCH", "DNT": "DENT"}.get(g[2]), g[3], g[4], "P01") for g in GOOD
    ]
    quarantined = staging_rows(pair, "agent_quarantine", "source_key, reason, source_row, flow, source_version",
                               "quarantine_id")
    assert [(q[0], q[1]) for q in quarantined] == EXPECTED_REASONS
    assert json.loads(quarantined[0][2])["lot_no"] == "LOT-2026-000003X"
    assert quarantined[0][3:] == ("quality_results", "2026-03-02T06:03:00.000000|3")

    # The next run re-reads the whole overlap window (1h behind the watermark): nothing is recorded twice.
    assert cli("run", "-c", str(config), "--once").exit_code == 0
    assert len(staging_rows(pair, "stg_quality", "stg_id", "stg_id")) == 6
    assert len(staging_rows(pair, "agent_quarantine", "quarantine_id", "quarantine_id")) == 4
    reread = staging_rows(pair, "agent_run", "rows_read, rows_written, rows_duplicate", "run_id")[-3:]
    assert [tuple(r) for r in reread] == [(4, 0, 3), (4, 0, 2), (2, 0, 1)]

    status = json.loads(cli("status", "-c", str(config), "--json").output)[0]
    assert (status["rows_moved"], status["rows_quarantined"], status["pending_rows"]) == (6, 4, 6)
