"""`service print|install|uninstall` on Linux: the systemd unit of a configuration, checked by systemd itself.

`print` is the exact unit (every directive), and `systemd-analyze verify` accepts it with the real executable;
`install` writes it, skips `systemctl daemon-reload` where systemd does not run and says what to run next;
`uninstall` removes it. Configuration errors exit 2 and name file:line, as every command does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from agent.cli import main
from agent.service.unit import agent_command

SYSTEMD_RUNNING = Path("/run/systemd/system").is_dir()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def write_plant_config(folder: Path) -> Path:
    """A plant's configuration in the layout the README recommends, with SQLite files in two more folders."""
    folder.mkdir(parents=True)
    document = {
        "systems": {
            "mes": {"url": "sqlite:///mes/mes.db"},
            "erp": {"url": f"sqlite:///{folder / 'erp' / 'erp.db'}", "staging_schema": "staging",
                    "attach": {"staging": "erp/erp_staging.db"}},
        },
        "flows": {"work_orders": {
            "source": "mes", "target": "erp", "table": "work_order", "watermark": ["modified_date", "work_order_id"],
            "key": ["work_order_id"], "staging_table": "stg_work_order", "columns": {"order_no": "work_order_id"}}},
        "alerts": {"dir": "/var/lib/mes-erp-agent/alerts"},
    }
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def line_of(path: Path, start: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.startswith(start))


def expected_unit(config: Path, user: str = "mes-erp-agent", watchdog: str = "60s") -> str:
    folder = config.parent
    exec_start = " ".join(agent_command())
    return f"""\
# mes-erp-agent.service: `mes-erp-agent service print -c {config}` wrote it; review it, then
# `mes-erp-agent service install -c {config}`. Local changes go in `systemctl edit mes-erp-agent`.
[Unit]
Description=mes-erp-agent: MES changes into ERP staging tables ({config})
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 once every flow is prepared, WATCHDOG=1 from the scheduler loop, STOPPING=1 at stop.
Type=notify
NotifyAccess=main
ExecStart={exec_start} run -c {config}
# SIGHUP asks the agent to reload its configuration.
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory={folder}
User={user}
Group={user}
Restart=on-failure
RestartSec=5s
# Exit 2 (a configuration error) and 4 (a login with more rights than its grants) need a person: no restart.
RestartPreventExitStatus=2 4
WatchdogSec={watchdog}
# A clean stop takes at most 30s (`stop_timeout`: the batch in flight is finished or rolled back).
TimeoutStopSec=45s
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
# What the agent writes: alerts.dir (incidents, alert outbox, status file), snapshots.dir, SQLite files' folders.
ReadWritePaths=/var/lib/mes-erp-agent/alerts {folder}/schema_snapshots {folder}/mes {folder}/erp

[Install]
WantedBy=multi-user.target
"""


def tmp_warning(config: Path) -> str:
    folder = config.parent
    executable = Path(agent_command()[0])  # CI installs into a fresh venv under /tmp: it is named too
    hidden = [str(executable)] if any(p in executable.parents for p in (Path("/tmp"), Path("/var/tmp"))) else []
    paths = ", ".join([str(config), str(folder), *hidden, f"{folder}/schema_snapshots", f"{folder}/mes", f"{folder}/erp"])
    return (f"warning: PrivateTmp=true gives the service its own empty /tmp and /var/tmp; it cannot reach: {paths} "
            "(move them, e.g. to /etc/mes-erp-agent, /var/lib/mes-erp-agent, /opt/mes-erp-agent)\n")


def test_exec_start_is_this_installations_console_script():
    script = Path(os.path.abspath(sys.executable)).parent / "mes-erp-agent"
    if script.is_file():
        assert agent_command() == [str(script)]
    else:
        assert agent_command() == [os.path.abspath(sys.executable), "-m", "agent"]


def test_print_writes_the_unit_with_every_directive_and_the_configs_folders(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    result = invoke("service", "print", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout == expected_unit(config)
    assert result.stderr == tmp_warning(config)  # a test's folder is under /tmp: the service could not see it


def test_print_takes_the_user_and_the_watchdog(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    result = invoke("service", "print", "-c", str(config), "--user", "svc_mes", "--watchdog", "1500ms")
    assert result.exit_code == 0, result.output
    assert result.stdout == expected_unit(config, user="svc_mes", watchdog="1500ms")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install -y systemd): the unit is not verified here")
@pytest.mark.parametrize("folder_name", ["plant", "plant 1 50%"])
def test_systemd_analyze_verify_accepts_the_printed_unit(tmp_path, folder_name):
    """With the real executable (verify checks that ExecStart's binary exists) and an existing user; a folder with a
    blank and a `%` checks the quoting and the specifier escaping."""
    config = write_plant_config(tmp_path / folder_name)
    result = invoke("service", "print", "-c", str(config), "--user", "root")
    assert result.exit_code == 0, result.output
    unit = tmp_path / "mes-erp-agent.service"
    unit.write_text(result.stdout, encoding="utf-8")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    if " " in folder_name:
        assert f'ExecStart={" ".join(agent_command())} run -c "{tmp_path}/plant 1 50%%/agent.yaml"\n' in result.stdout
        assert f'ReadWritePaths=/var/lib/mes-erp-agent/alerts "{tmp_path}/plant 1 50%%/schema_snapshots" ' in result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_does_check_the_executable(tmp_path):
    """The verify test above proves something: a unit whose ExecStart names no executable is refused."""
    config = write_plant_config(tmp_path / "plant")
    unit = tmp_path / "mes-erp-agent.service"
    text = invoke("service", "print", "-c", str(config), "--user", "root").stdout
    unit.write_text(text.replace(f"ExecStart={agent_command()[0]}", "ExecStart=/nonexistent/mes-erp-agent"), encoding="utf-8")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode != 0
    assert "/nonexistent/mes-erp-agent" in verify.stderr


def reload_skipped() -> str:
    why = "systemctl is not installed here" if shutil.which("systemctl") is None else \
        "systemd is not running here (no /run/systemd/system)"
    return f"skipped `systemctl daemon-reload`: {why}"


@pytest.mark.skipif(SYSTEMD_RUNNING, reason="systemd runs here: install would run a real `systemctl daemon-reload`")
def test_install_writes_the_unit_says_what_to_run_next_and_uninstall_removes_it(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    units = tmp_path / "units"
    units.mkdir()
    args = ("-c", str(config), "--unit-dir", str(units), "--user", "mea-test-nouser")
    result = invoke("service", "install", *args)
    assert result.exit_code == 0, result.output
    unit = units / "mes-erp-agent.service"
    folder = config.parent
    assert result.stdout.splitlines() == [
        f"wrote {unit}",
        reload_skipped(),
        "next, as root:",
        "  useradd --system --no-create-home --shell /usr/sbin/nologin mea-test-nouser",
        f"  install -d -o mea-test-nouser -g mea-test-nouser /var/lib/mes-erp-agent/alerts {folder}/schema_snapshots "
        f"{folder}/mes {folder}/erp",
        "  systemctl daemon-reload",
        "  systemctl enable --now mes-erp-agent",
        "  journalctl -u mes-erp-agent -f",
    ]
    assert unit.read_text(encoding="utf-8") == expected_unit(config, user="mea-test-nouser")
    assert result.stderr == tmp_warning(config)

    again = invoke("service", "install", *args)
    assert again.stdout.splitlines()[0] == f"unchanged {unit}"
    changed = invoke("service", "install", *args, "--watchdog", "2m")
    assert changed.stdout.splitlines()[0] == f"replaced {unit}"
    assert "WatchdogSec=120s\n" in unit.read_text(encoding="utf-8")

    removed = invoke("service", "uninstall", "--unit-dir", str(units))
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.splitlines() == [
        f"removed {unit}",
        reload_skipped(),
        "not checked here whether mes-erp-agent still runs: on the server, `systemctl disable --now mes-erp-agent` "
        "comes before `service uninstall`",
    ]
    assert not unit.exists()
    twice = invoke("service", "uninstall", "--unit-dir", str(units))
    assert twice.exit_code == 1
    assert twice.stderr == f"there is no {unit}: nothing removed (check --name and --unit-dir)\n"


@pytest.mark.skipif(SYSTEMD_RUNNING, reason="systemd runs here: install would run a real `systemctl daemon-reload`")
def test_install_takes_a_name_for_a_second_agent_and_an_existing_user_needs_no_useradd(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    units = tmp_path / "units"
    units.mkdir()
    result = invoke("service", "install", "-c", str(config), "--unit-dir", str(units), "--name", "mes-erp-agent-line2",
                    "--user", "root")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"wrote {units / 'mes-erp-agent-line2.service'}"
    assert result.stdout.splitlines()[3:] == [
        f"  install -d -o root -g root /var/lib/mes-erp-agent/alerts {config.parent}/schema_snapshots "
        f"{config.parent}/mes {config.parent}/erp",
        "  systemctl daemon-reload",
        "  systemctl enable --now mes-erp-agent-line2",
        "  journalctl -u mes-erp-agent-line2 -f",
    ]
    text = (units / "mes-erp-agent-line2.service").read_text(encoding="utf-8")
    assert text.startswith("# mes-erp-agent-line2.service: ")
    bad = invoke("service", "print", "-c", str(config), "--name", "line 2")
    assert bad.exit_code == 2
    assert "Invalid value for '--name': 'line 2': a service name has letters, digits, `_`, `.` and `-` only" in bad.stderr


def test_install_into_a_folder_it_cannot_write_exits_1_and_says_why(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    missing = tmp_path / "no-such-folder"
    result = invoke("service", "install", "-c", str(config), "--unit-dir", str(missing))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (f"cannot write {missing}/mes-erp-agent.service (No such file or directory): "
                                              "run it as root (sudo), or choose --unit-dir")


def test_an_invalid_configuration_exits_2_and_names_file_and_line(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    config.write_text(config.read_text(encoding="utf-8").replace("alerts:\n  dir:", "alerts:\n  folder:"), encoding="utf-8")
    for command in (("print",), ("install", "--unit-dir", str(tmp_path))):
        result = invoke("service", *command, "-c", str(config))
        assert result.exit_code == 2
        assert result.stderr == (f"{config}: configuration is not valid (1 problem):\n"
                                 f"  {config}:{line_of(config, '  folder:')}: unknown key `alerts.folder`\n")
    assert not (tmp_path / "mes-erp-agent.service").exists()


def test_a_folder_no_unit_file_can_hold_exits_2_and_names_file_and_line(tmp_path):
    config = write_plant_config(tmp_path / "plant")
    config.write_text(config.read_text(encoding="utf-8").replace("dir: /var/lib/mes-erp-agent/alerts",
                                                                 'dir: "/var/lib/mes-erp-agent/alerts\\nfor line 2"'),
                      encoding="utf-8")
    result = invoke("service", "print", "-c", str(config))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"{config}: no systemd unit can be written for this configuration:\n"
        f"  {config}:{line_of(config, '  dir:')}: alerts.dir: the path '/var/lib/mes-erp-agent/alerts\\nfor line 2' "
        "holds a control character (a line break, a tab, ...), which a systemd unit cannot hold\n")
