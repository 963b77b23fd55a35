"""Password files are read only by commands that connect, at the moment they connect (agent/connect.py).

A DBA reviews the SQL on a workstation without the agent's password files: `check-config`, `render-sql`,
`sql grants` and `sql ddl --dialect` never open them. A command that connects and cannot read one exits 2
naming the file and the `password_file:` line of the configuration, never with a traceback.

PostgreSQL runs with trust authentication here, so its password files hold a password the server ignores:
those tests show that commands connect and work with the files present. The MariaDB test gives a login a real
password: a run with the file's password works and a wrong password in the file is refused by the server,
which shows the password comes from the file.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

import dbs
from agent.config import load_config
from agent.demo import adventureworks
from helpers import Pair, cli, make_pair, prepare_erp, staging_rows, work_order_flow, write_config

ROWS = 20
IGNORED_PASSWORD = "trust-auth-ignores-this-Pa55"  # what the PostgreSQL password files hold


@dataclass(frozen=True)
class Deployment:
    config: Path
    folder: Path
    password_lines: dict[str, int]  # system -> line of its `password_file:` in the configuration

    def password_file(self, system: str) -> Path:
        return self.folder / "secrets" / f"{system}.password"

    def missing_message(self, system: str, login: str = "postgres") -> str:
        return (f"{self.config}:{self.password_lines[system]}: cannot read the password of system {system}: "
                f"{self.password_file(system)} does not exist; create it with the password of login {login} on its "
                "first line, readable only by the agent's service account")


def with_password_files(config: Path, passwords: dict[str, str]) -> dict[str, int]:
    """Add `password_file: secrets/<system>.password` to each system, write the files; the keys' lines."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    (config.parent / "secrets").mkdir(exist_ok=True)
    for system, password in passwords.items():
        document["systems"][system]["password_file"] = f"secrets/{system}.password"
        (config.parent / "secrets" / f"{system}.password").write_text(password + "\n", encoding="utf-8")
    text = yaml.safe_dump(document, sort_keys=False)
    config.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    return {system: lines.index(f"    password_file: secrets/{system}.password") + 1 for system in passwords}


@pytest.fixture(scope="module")
def deployment(db_factory, tmp_path_factory) -> Deployment:
    """A PostgreSQL MES and ERP, staging created, snapshots taken and the rows moved once, with password files."""
    pair = make_pair(db_factory, "postgresql")
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=ROWS)
    mes.dispose()
    folder = tmp_path_factory.mktemp("secrets_pg")
    config = write_config(folder / "agent.yaml", pair, {"work_order_confirmations": work_order_flow(pair)})
    lines = with_password_files(config, {"mes": IGNORED_PASSWORD, "erp": IGNORED_PASSWORD})
    prepare_erp(config)
    first = cli("run", "-c", str(config), "--once")
    assert first.exit_code == 0, first.output
    assert len(staging_rows(pair)) == ROWS
    return Deployment(config, folder, lines)


@pytest.fixture
def without(deployment):
    """Remove a system's password file for one test; put it back afterwards."""
    removed: list[Path] = []

    def remove(system: str) -> None:
        path = deployment.password_file(system)
        path.unlink()
        removed.append(path)

    yield remove
    for path in removed:
        path.write_text(IGNORED_PASSWORD + "\n", encoding="utf-8")


CONNECTING_COMMANDS = [
    (["run", "--once"], "mes"),
    (["run", "--once", "--flow", "work_order_confirmations"], "erp"),
    (["run"], "mes"),  # the long-running mode stops before it starts
    (["status"], "erp"),  # status only reads the target
    (["snapshot", "--system", "mes"], "mes"),
    (["drift"], "mes"),
    (["sql", "ddl", "--system", "erp"], "mes"),  # types the staging columns from the live source
]


@pytest.mark.parametrize("command, system", CONNECTING_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_command_that_connects_exits_2_naming_the_missing_file_and_its_line(deployment, without, command, system):
    without(system)
    result = cli(*command, "-c", str(deployment.config))
    assert (result.exit_code, result.output) == (2, deployment.missing_message(system) + "\n")


def test_status_needs_no_password_of_a_source(deployment, without):
    without("mes")
    result = cli("status", "-c", str(deployment.config), "--json")
    assert result.exit_code == 0, result.output
    assert '"rows_moved": 20' in result.output


REVIEW_COMMANDS = [
    ["check-config"],
    ["render-sql"],
    ["sql", "grants", "--system", "mes"],
    ["sql", "grants", "--system", "erp"],
    ["sql", "ddl", "--system", "erp", "--dialect", "postgresql"],
    ["sql", "ddl", "--system", "erp", "--dialect", "mssql"],
]


@pytest.mark.parametrize("command", REVIEW_COMMANDS, ids=" ".join)
def test_review_commands_need_no_password_file(deployment, without, command):
    with_files = cli(*command, "-c", str(deployment.config))
    assert with_files.exit_code == 0, with_files.output
    without("mes")
    without("erp")
    result = cli(*command, "-c", str(deployment.config))
    assert (result.exit_code, result.output) == (0, with_files.output)
    assert IGNORED_PASSWORD not in result.output


@pytest.mark.parametrize("content, reason", [
    ("", "holds no password on its first line"),
    ("\nsecond-line\n", "holds no password on its first line"),
    (None, "cannot be read (Is a directory)"),
], ids=["empty", "blank first line", "a directory"])
def test_an_unusable_password_file_exits_2_with_what_to_do(deployment, without, content, reason):
    without("erp")
    path = deployment.password_file("erp")
    if content is None:
        path.mkdir()
    else:
        path.write_text(content, encoding="utf-8")
    try:
        result = cli("status", "-c", str(deployment.config))
    finally:
        path.rmdir() if content is None else path.unlink()
    assert result.exit_code == 2
    assert result.output == (
        f"{deployment.config}:{deployment.password_lines['erp']}: cannot read the password of system erp: {path} "
        f"{reason}; write the password of login postgres on its first line and make the file readable only by the "
        "agent's service account\n"
    )


def test_the_password_is_the_first_line_and_read_only_when_connecting(tmp_path):
    from agent.connect import connection_url
    from agent.errors import SecretUnavailable

    config = tmp_path / "agent.yaml"
    config.write_text(
        "systems:\n"
        "  mes: {url: \"sqlite:///mes.db\"}\n"
        "  erp:\n"
        "    url: \"postgresql+psycopg://agent@127.0.0.1:1/erp\"\n"
        "    password_file: erp.password\n"
        "    staging_schema: staging\n"
        "flows:\n"
        "  f: {source: mes, target: erp, table: t, watermark: [m], key: [k], staging_table: s, columns: {a: b}}\n",
        encoding="utf-8",
    )
    loaded = load_config(config)  # no password file yet: loading never reads it
    assert loaded.configured_url("erp").password is None
    with pytest.raises(SecretUnavailable) as missing:
        connection_url(loaded, "erp")
    assert missing.value.problems == [
        f"{config}:5: cannot read the password of system erp: {tmp_path / 'erp.password'} does not exist; create it "
        "with the password of login agent on its first line, readable only by the agent's service account"
    ]
    (tmp_path / "erp.password").write_text("  s3cret-Pa55  \nnot the password\n", encoding="utf-8")
    assert connection_url(loaded, "erp").password == "s3cret-Pa55"
    assert connection_url(loaded, "mes").password is None


@pytest.fixture(scope="module")
def mariadb_login(db_factory):
    """A MariaDB MES and ERP, and a login with a real password and every right on their databases."""
    pair = make_pair(db_factory, "mysql", suffix="_my")
    login, password = f"mea_sec_{secrets.token_hex(3)}", "Pw-" + secrets.token_hex(8)
    admin = sa.create_engine(dbs.mysql_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE USER '{login}'@'%' IDENTIFIED BY '{password}'"))
        for url in (pair.mes_url, pair.erp_url):
            conn.execute(sa.text(f"GRANT ALL ON `{make_url(url).database}`.* TO '{login}'@'%'"))
        conn.execute(sa.text(f"GRANT ALL ON `{pair.staging_schema}`.* TO '{login}'@'%'"))
    mes = sa.create_engine(pair.mes_url)
    adventureworks.create_and_load(mes, ["work_order"], schema=pair.mes_schema, limit=ROWS)
    mes.dispose()
    yield pair, login, password
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP USER IF EXISTS '{login}'@'%'"))
    admin.dispose()


def test_a_real_password_comes_from_the_file(mariadb_login, tmp_path):
    pair, login, password = mariadb_login
    as_login = {
        system: make_url(url).set(username=login, password=None).render_as_string(hide_password=False)
        for system, url in (("mes", pair.mes_url), ("erp", pair.erp_url))
    }
    agent_pair = Pair(pair.kind, as_login["mes"], as_login["erp"], pair.mes_schema, pair.staging_schema, {})
    config = write_config(tmp_path / "agent.yaml", agent_pair, {"work_order_confirmations": work_order_flow(pair)})
    with_password_files(config, {"mes": password, "erp": password})
    prepare_erp(config)
    run = cli("run", "-c", str(config), "--once")
    assert run.exit_code == 0, run.output
    assert [row.stg_source_key for row in staging_rows(pair, columns="stg_source_key")] == [
        str(key) for key in sorted_keys(pair)
    ]
    (tmp_path / "secrets" / "erp.password").write_text("not-" + password + "\n", encoding="utf-8")
    status = cli("status", "-c", str(config), "--json")
    assert status.exit_code == 1  # the server refuses the wrong password from the file
    assert f"Access denied for user '{login}'" in status.output
    assert password not in run.output + status.output


def sorted_keys(pair) -> list[int]:
    """The work order ids in watermark order (modified_date, work_order_id): the order rows are staged in."""
    engine = sa.create_engine(pair.mes_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(
                "SELECT work_order_id FROM work_order ORDER BY modified_date, work_order_id")).scalars())
    finally:
        engine.dispose()
