"""Every file in sql/ is used by the code and runs: live on PostgreSQL, MariaDB and SQLite, compiled for SQL Server.

The mechanism is generic, so templates added later are covered the same way:
- every dialect folder holds the same file names, and a template has the same bind parameters everywhere;
- a live scenario runs the agent's real commands (`sql ddl --apply`, `sql grants` run by the administrator,
  `snapshot`, `run --once` twice under the granted login, `status`) while recording every template the code
  renders and every statement the database receives; each template must be rendered, and each non-empty
  rendering must reach the database (a template that is only a comment, such as SQLite's grants.sql, is a
  documented no-op);
- for SQL Server, `render-sql`, `sql ddl --dialect mssql` and `sql grants --dialect mssql` render every
  template; each statement compiles for the mssql dialect and parses as T-SQL.
A template the scenario does not reach fails the test with what to do: reach it from a command the scenario
runs, or add an entry to EXERCISES saying how to run it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot
import yaml
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import make_url

from agent import review as sql_review
from agent.config import load_config
from agent.demo import adventureworks
from agent.dialects import DIALECTS, for_name, for_url, templates
from helpers import Pair, cli, drop_login, make_pair, run_script, staging_engine, table_name, write_config

ROWS = 300
AGENT = Path(__file__).resolve().parents[1] / "agent"
LIVE = ["postgresql", "mysql", "sqlite"]


def names(dialect: str) -> list[str]:
    return templates.template_names(dialect)


# --- the same files, the same parameters, referenced by the code -----------------------------------------
def test_every_dialect_folder_has_the_same_templates():
    folders = {dialect: names(dialect) for dialect in DIALECTS}
    assert sorted(folders) == ["mssql", "mysql", "postgresql", "sqlite"]
    assert len({tuple(files) for files in folders.values()}) == 1, folders


def test_every_template_name_is_referenced_by_the_code():
    code = "\n".join(p.read_text(encoding="utf-8") for p in AGENT.rglob("*.py"))
    unreferenced = [n for n in names("postgresql") if f'"{n}"' not in code]
    assert unreferenced == [], f"templates no code renders: {unreferenced}"


def review_config(tmp_path: Path, dialect: str) -> Path:
    urls = {
        "postgresql": "postgresql+psycopg://agent@db/{db}",
        "mysql": "mysql+pymysql://agent@db/{db}",
        "mssql": "mssql+pyodbc://agent@db/{db}?driver=ODBC+Driver+18+for+SQL+Server",
        "sqlite": "sqlite:///{db}.db",
    }
    folder = tmp_path / dialect
    (folder / "sql" / "flows").mkdir(parents=True)
    (folder / "sql" / "flows" / "q.sql").write_text(
        "SELECT wo.work_order_id, wo.modified_date, sr.name AS scrap_name\n"
        "FROM work_order wo JOIN scrap_reason sr ON sr.scrap_reason_id = wo.scrap_reason_id\n", encoding="utf-8")
    attach = ", attach: {staging: stg.db}" if dialect == "sqlite" else ""
    (folder / "agent.yaml").write_text(f"""\
systems:
  mes: {{url: "{urls[dialect].format(db='mes')}"}}
  erp: {{url: "{urls[dialect].format(db='erp')}", staging_schema: staging{attach}}}
flows:
  wo: {{source: mes, target: erp, table: work_order, watermark: [modified_date, work_order_id], key: [work_order_id],
       staging_table: stg_wo, lag: 1s, overlap: 5m,
       columns: {{order_no: {{from: work_order_id, type: int}}, qty: {{from: stocked_qty, type: int}}}},
       outcome: {{status_column: stg_status, pending: [PENDING], error: [ERROR], error_text: [stg_error],
                 resubmit: {{stg_status: PENDING, stg_error: null}}}}}}
  q: {{source: mes, target: erp, query: sql/flows/q.sql, watermark: [modified_date, work_order_id], key: [work_order_id],
      staging_table: stg_q,
      columns: {{order_no: {{from: work_order_id, type: int}}, scrap: {{from: scrap_name, type: "varchar(50)"}}}}}}
""", encoding="utf-8")
    return folder / "agent.yaml"


def test_a_template_has_the_same_bind_parameters_in_every_dialect(tmp_path):
    found: dict[str, dict[tuple[str, str], list[str]]] = {}
    runs: dict[str, set[tuple[str, str]]] = {}
    for dialect in DIALECTS:
        config = load_config(review_config(tmp_path, dialect))
        statements = sql_review.startup_statements(config) + [
            s for name in config.model.flows
            for s in sql_review.flow_statements(config, name) + sql_review.status_statements(config, name)
            + sql_review.quarantine_statements(config, name) + sql_review.lock_statements(config, name)
        ]
        # PostgreSQL loads a batch with COPY (a stream) and MySQL with LOAD DATA (a file): no bind parameters; the others
        # bind one row's values.
        found[dialect] = {(s.template, s.purpose): sorted(dict(s.params)) for s in statements
                          if s.template != "load_batch_table"}
        # A template of comments only runs nothing there (PostgreSQL's batch-table drop and separate ledger insert).
        runs[dialect] = {(s.template, s.purpose) for s in statements if s.sql.strip()}
    keys = {dialect: set(statements) for dialect, statements in found.items()}
    # SQLite has no logins and no sessions: its privilege check and its flow-lock templates (a file lock instead) are
    # comments, so they run nothing and bind nothing.
    comments = {"privilege_check", "flow_lock_take", "flow_lock_release", "flow_lock_session"}
    assert keys["sqlite"] | {k for k in keys["postgresql"] if k[0] in comments} == keys["postgresql"]
    for dialect in ("mysql", "mssql"):
        assert keys[dialect] == keys["postgresql"]
    for key in keys["postgresql"]:  # every dialect that runs a statement binds the same parameters for it
        bound = {dialect: found[dialect][key] for dialect in DIALECTS if key in runs[dialect]}
        assert len({tuple(params) for params in bound.values()}) <= 1, (key, bound)


# --- live: every template runs ---------------------------------------------------------------------------
@dataclass
class Recorder:
    """Templates the code renders and statements the database receives, while the scenario runs."""

    rendered: dict[str, list[str]] = field(default_factory=dict)  # template -> rendered texts
    executed: set[str] = field(default_factory=set)  # as sent to the driver

    def render(self, original: Callable[..., str]) -> Callable[..., str]:
        def recording(dialect_name: str, template: str, keep_comments: bool = False, **context) -> str:
            text = original(dialect_name, template, keep_comments=keep_comments, **context)
            self.rendered.setdefault(template, []).append(text)
            return text

        return recording

    def on_execute(self, _conn, _cursor, statement, _parameters, _context, _executemany) -> None:
        self.executed.add(_normal(statement))


@dataclass
class Scenario:
    kind: str
    pair: Pair
    config: Path  # the agent's configuration (the granted login where the database has logins)
    admin_config: Path
    recorder: Recorder
    results: dict[str, object]


# Templates the standard scenario does not reach, and how to run them: name -> function(scenario).
EXERCISES: dict[str, Callable[[Scenario], None]] = {}


def _measure_health(scenario: Scenario) -> None:
    """The health probe after a poll (source_newest), under the agent's own login: both flows caught up."""
    from agent import pipeline
    from agent.connect import Systems
    from agent.health import probe

    config = load_config(scenario.config)
    systems = Systems(config)
    try:
        lags = {name: probe.measure(pipeline.prepare(config, systems, name)).lag_seconds for name in config.model.flows}
    finally:
        systems.dispose()
    assert lags == {"work_orders": 0.0, "scrap_view": 0.0}


EXERCISES["source_newest"] = _measure_health


def _lock_round(scenario: Scenario) -> None:
    """A lock round of the long-running agent under its own login (agent/locks.py): the heartbeat, the prune of
    agents that stopped writing theirs, the take of every free flow; then the stop releases them."""
    from agent.connect import Systems
    from agent.locks import FlowLocks

    config = load_config(scenario.config)
    systems = Systems(config)
    locks = FlowLocks(config, systems)
    try:
        locks.round()
        assert locks.held() == ["scrap_view", "work_orders"]
    finally:
        locks.close()
        systems.dispose()


EXERCISES["holder_prune"] = _lock_round

RESUBMIT = {"status_column": "stg_status", "pending": ["PENDING"], "error": ["ERROR"], "error_text": ["stg_error"],
            "resubmit": {"stg_status": "PENDING", "stg_error": None}}


def _import_outcomes(scenario: Scenario) -> None:
    """A row the import job rejected: `outcomes` lists it under the agent's login (outcome_errors); `outcomes
    --resubmit` runs as the administrator, whose configuration declares the flow's `resubmit:` (outcome_resubmit)."""
    staging = f"{scenario.pair.staging_schema}.stg_work_order"
    engine = staging_engine(scenario.pair)
    with engine.begin() as conn:
        row_id, key = conn.execute(sa.text(f"SELECT stg_id, stg_source_key FROM {staging} ORDER BY stg_id")).first()
        conn.execute(sa.text(f"UPDATE {staging} SET stg_status = 'ERROR', stg_error = 'no such item' "
                             "WHERE stg_id = :row"), {"row": row_id})
    engine.dispose()
    listed = cli("outcomes", "-c", str(scenario.config), "--flow", "work_orders")
    assert (listed.exit_code, listed.output.count("ERP message: no such item")) == (0, 1), listed.output
    flow = {**scenario_flows(scenario.pair)["work_orders"], "outcome": RESUBMIT}
    admin = write_config(scenario.admin_config.with_name("resubmit.yaml"), scenario.pair, {"work_orders": flow})
    done = cli("outcomes", "-c", str(admin), "--flow", "work_orders", "--resubmit", key)
    assert (done.exit_code, done.output.startswith("flow work_orders: resubmitted 1 row")) == (0, True), done.output


EXERCISES["outcome_resubmit"] = _import_outcomes

def _recover(scenario: Scenario) -> None:
    """`reconcile` (with `deletes: {detect: true}`) and `backfill` under the agent's own login: a row committed late
    (an old modified_date past the overlap) is staged, a deleted row gets its tombstone, a range is read again."""
    import yaml

    document = yaml.safe_load(scenario.config.read_text(encoding="utf-8"))
    document["flows"]["work_orders"].update(reconcile={"every": "1h", "window": "7d"}, deletes={"detect": True})
    recover = scenario.config.with_name("recover.yaml")
    recover.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    mes = sa.create_engine(scenario.pair.mes_url)
    work_order = table_name(scenario.pair, "work_order")
    with mes.begin() as conn:
        conn.execute(sa.text(f"UPDATE {work_order} SET modified_date = :at WHERE work_order_id = 6"),
                     {"at": "2023-01-01 06:00:00"})
        conn.execute(sa.text(f"DELETE FROM {work_order} WHERE work_order_id = 7"))
    mes.dispose()
    scenario.results["reconcile"] = result = cli("reconcile", "-c", str(recover), "--strict-privileges")
    assert "rows missing: 1, staged: 1" in result.output and "keys gone: 1, tombstones staged: 1" in result.output, \
        result.output
    scenario.results["backfill"] = cli("backfill", "-c", str(recover), "--flow", "work_orders", "--from", "2023-01-01",
                                       "--to", "2023-01-03", "--strict-privileges")


EXERCISES["reconcile_source_buckets"] = _recover


def _replay_quarantine(scenario: Scenario) -> None:
    """`quarantine list` and `quarantine replay` under the agent's own login, after the admin fixed the code map:
    codes 7, 11 and 15 now map (staged, marked replayed); 14 maps to a value too long for the column (a new reason)."""
    document = yaml.safe_load(scenario.config.read_text(encoding="utf-8"))
    document["flows"]["work_orders"]["columns"]["scrap"]["map"].update(
        {"7": "SEVEN", "11": "ELEVN", "14": "FOURTEEN-TOO-LONG", "15": "FIFTN"})
    fixed = scenario.config.with_name("fixed.yaml")
    fixed.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    listing = cli("quarantine", "list", "-c", str(fixed), "--json")
    assert listing.exit_code == 0, listing.output
    assert [r["replayed"] for r in json.loads(listing.stdout)] == [False] * 4  # scrap reasons 7, 11, 14 and 15
    replay = cli("quarantine", "replay", "-c", str(fixed))
    assert replay.exit_code == 1, replay.output  # code 14 still fails
    assert replay.stdout.splitlines()[-2].startswith("flow work_orders: 3 staged, 0 superseded, 1 still failing; batches ")
    assert replay.stdout.splitlines()[-1] == "flow scrap_view: nothing to replay"
    listing = cli("quarantine", "list", "-c", str(fixed), "--json")
    assert sorted(str(r["replay_outcome"]) for r in json.loads(listing.stdout)) == ["None", "staged", "staged", "staged"]
    (reason,) = [r["reason"] for r in json.loads(listing.stdout) if not r["replayed"]]
    assert reason.startswith("scrap: 17 characters, the staging column holds at most 5 (source column scrap_reason_id")


def _upgrade_quarantine(scenario: Scenario) -> None:
    """An agent_quarantine made before `quarantine replay` (its replay columns dropped): `sql ddl --apply` adds them."""
    table = f"{scenario.pair.staging_schema}.agent_quarantine"
    engine = staging_engine(scenario.pair)
    with engine.begin() as conn:
        for column in ("replayed_at", "replay_batch_id", "replay_outcome"):
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
    engine.dispose()
    result = cli("sql", "ddl", "-c", str(scenario.admin_config), "--system", "erp", "--apply")
    assert result.exit_code == 0, result.output
    assert "ALTER TABLE" in result.stdout
    result = cli("sql", "ddl", "-c", str(scenario.admin_config), "--system", "erp")
    assert result.exit_code == 0 and "ALTER TABLE" not in result.stdout, result.output


EXERCISES["quarantine list|replay"] = _replay_quarantine
EXERCISES["ddl_quarantine_upgrade"] = _upgrade_quarantine  # last: it drops columns the login had grants on

QUERY = """\
SELECT wo.work_order_id, wo.modified_date, wo.stocked_qty, sr.name AS scrap_name
FROM {work_order} wo
LEFT JOIN {scrap_reason} sr ON sr.scrap_reason_id = wo.scrap_reason_id
"""


def scenario_flows(pair: Pair) -> dict:
    work_order = table_name(pair, "work_order")
    return {
        # lag (server_time), overlap (cursor `from`), a code map without default (quarantine)
        "work_orders": {
            "source": "mes", "target": "erp", "table": work_order, "watermark": ["modified_date", "work_order_id"],
            "key": ["work_order_id"], "staging_table": "stg_work_order", "batch_size": 100, "lag": "1s", "overlap": "5m",
            "columns": {"order_no": "work_order_id", "qty": "stocked_qty",
                        "scrap": {"from": "scrap_reason_id", "map": {"1": "BRKN", "2": "DRILL", "3": "GOUGE"}}},
        },
        "scrap_view": {
            "source": "mes", "target": "erp", "query": "sql/flows/scrap_view.sql", "batch_size": 64,
            "watermark": ["modified_date", "work_order_id"], "key": ["work_order_id"], "staging_table": "stg_scrap_view",
            "columns": {"order_no": "work_order_id", "qty": "stocked_qty", "scrap": "scrap_name"},
        },
    }


def write_scenario_config(folder: Path, pair: Pair) -> Path:
    (folder / "sql" / "flows").mkdir(parents=True, exist_ok=True)
    (folder / "sql" / "flows" / "scrap_view.sql").write_text(QUERY.format(
        work_order=table_name(pair, "work_order"), scrap_reason=table_name(pair, "scrap_reason")), encoding="utf-8")
    return write_config(folder / "agent.yaml", pair, scenario_flows(pair))


@pytest.fixture(scope="module", params=LIVE)
def scenario(request, db_factory, tmp_path_factory) -> Iterator[Scenario]:
    kind = request.param
    pair = make_pair(db_factory, kind, suffix=f"_{kind}")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order", "scrap_reason"], schema=pair.mes_schema, limit=ROWS)
    mes.dispose()
    recorder = Recorder()
    patch = pytest.MonkeyPatch()
    patch.setattr(templates, "render", recorder.render(templates.render))
    if kind == "postgresql":
        import psycopg

        original_copy = psycopg.Cursor.copy

        def copy(cursor, statement, *args, **kwargs):
            recorder.executed.add(_normal(str(statement)))
            return original_copy(cursor, statement, *args, **kwargs)

        patch.setattr(psycopg.Cursor, "copy", copy)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", recorder.on_execute)
    login = f"mea_tpl_{kind[:2]}_{secrets.token_hex(3)}"
    results: dict[str, object] = {}
    try:
        admin_config = write_scenario_config(tmp_path_factory.mktemp(f"admin_{kind}"), pair)
        results["ddl"] = cli("sql", "ddl", "-c", str(admin_config), "--system", "erp", "--apply")
        agent_pair = pair
        if for_url(make_url(pair.erp_url)).has_logins:
            password = "Pw-" + secrets.token_hex(8)
            for system, url in (("mes", pair.mes_url), ("erp", pair.erp_url)):
                script = cli("sql", "grants", "-c", str(admin_config), "--system", system, "--login", login,
                             "--password-placeholder", password)
                results[f"grants {system}"] = script
                run_script(url, script.output, lambda statement: recorder.executed.add(_normal(statement)))
            erp = make_url(pair.erp_url).set(username=login, password=password)
            if kind == "mysql":
                erp = erp.set(database=pair.staging_schema)
            agent_pair = Pair(kind, make_url(pair.mes_url).set(username=login, password=password)
                              .render_as_string(hide_password=False), erp.render_as_string(hide_password=False),
                              pair.mes_schema, pair.staging_schema, pair.attach)
        else:
            for system in ("mes", "erp"):
                results[f"grants {system}"] = cli("sql", "grants", "-c", str(admin_config), "--system", system)
        config = write_scenario_config(tmp_path_factory.mktemp(f"agent_{kind}"), agent_pair)
        results["snapshot"] = cli("snapshot", "-c", str(config))
        results["first run"] = cli("run", "-c", str(config), "--once", "--strict-privileges")
        mes = sa.create_engine(pair.mes_url)
        with mes.begin() as conn:
            conn.execute(sa.text(f"UPDATE {table_name(pair, 'work_order')} SET modified_date = :at "
                                 "WHERE work_order_id <= 5"), {"at": "2023-01-02 03:04:05"})
        mes.dispose()
        results["second run"] = cli("run", "-c", str(config), "--once", "--strict-privileges")
        results["status"] = cli("status", "-c", str(config), "--json")
        results["ledger prune"] = cli("ledger", "prune", "-c", str(config))
        made = Scenario(kind, pair, config, admin_config, recorder, results)
        for exercise in EXERCISES.values():
            exercise(made)
        yield made
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", recorder.on_execute)
        patch.undo()
        drop_login(kind, login, [pair.mes_url, pair.erp_url])


def test_the_scenario_succeeds(scenario):
    for step, result in scenario.results.items():
        assert result.exit_code == 0, f"{step}: {result.output}"
    status = {s["flow"]: s for s in json.loads(scenario.results["status"].output)}
    assert status["work_orders"]["rows_quarantined"] > 0  # the quarantine insert ran
    assert status["scrap_view"]["rows_moved"] == ROWS + 5  # the second run moves the 5 changed rows


def test_every_template_is_rendered_by_the_code_and_runs_on_the_live_database(scenario):
    dialect = for_name(scenario.kind)
    sa_dialect = sa.create_engine(make_url(scenario.pair.erp_url)).dialect
    missing = [n for n in names(dialect.name) if n not in scenario.recorder.rendered]
    assert missing == [], (
        f"templates of sql/{dialect.name} no command of the live scenario renders: {missing}; reach them from a "
        "command the scenario runs, or add to EXERCISES how to run them"
    )
    not_run = {}
    for template, texts in scenario.recorder.rendered.items():
        for text in texts:
            parts = dialect.split_script(_code_only(text))
            sent = [p for p in parts if not _was_executed(p, sa_dialect, scenario.recorder.executed)]
            if sent:
                not_run.setdefault(template, sent[0])
    assert not_run == {}, f"rendered on {dialect.name} but never sent to the database: {not_run}"


def _code_only(text: str) -> str:
    """A script without its comment lines (grants keep theirs for the reader)."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--")).strip()


# psycopg receives a typed parameter with a cast SQLAlchemy adds (`%(at)s::TIMESTAMP WITHOUT TIME ZONE`).
_CAST = re.compile(r"(%\(\w+\)s)::(?:(?:TIMESTAMP|TIME) WITH(?:OUT)? TIME ZONE|INTEGER|BIGINT|SMALLINT|FLOAT|DATE|"
                   r"BOOLEAN|BYTEA|VARCHAR|NUMERIC)(?:\(\d+(?:, \d+)?\))?")


def _normal(statement: str) -> str:
    return _CAST.sub(r"\1", _code_only(statement).rstrip(";").strip())


def _was_executed(part: str, sa_dialect, executed: set[str]) -> bool:
    part = _normal(part)
    return not part or part in executed or _normal(str(sa.text(part).compile(dialect=sa_dialect))) in executed


# --- SQL Server: compiled and parsed, never run here -----------------------------------------------------
def test_every_sql_server_template_is_rendered_and_compiles_as_tsql(tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(templates, "render", recorder.render(templates.render))
    config = load_config(review_config(tmp_path, "mssql"))
    text = sql_review.render_sql_text(config)
    assert text.count(";\n") > 20
    ddl = sql_review.ddl_for_dialect(config, "erp", "mssql")
    for system in ("mes", "erp"):
        result = cli("sql", "grants", "-c", str(config.path), "--system", system)
        assert result.exit_code == 0, result.output
    missing = [n for n in names("mssql") if n not in recorder.rendered]
    assert missing == [], f"templates of sql/mssql that no code path renders: {missing}"
    dialect, qmark = for_name("mssql"), mssql.dialect(paramstyle="qmark")
    for template, texts in recorder.rendered.items():
        for rendered in texts:
            for part in dialect.split_script(_code_only(rendered)):
                compiled = str(sa.text(part).compile(dialect=qmark))
                assert re.search(r"(?<![:\w\\]):[A-Za-z_]", compiled) is None, (template, compiled)  # all bound as ?
                parsed = sqlglot.parse(re.sub(r"(?<![:\w\\]):(\w+)", r"@\1", part.rstrip(";")), read="tsql")
                assert len(parsed) == 1 and not isinstance(parsed[0], sqlglot.exp.Command), (template, part)
    # the schema, five control tables, the upgrade note for an old agent_quarantine, and per staging table (2) its
    # table, index and ledger seed
    assert len(ddl) == 13

