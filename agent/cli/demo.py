"""`demo`: the embedded demo (SQLite MES and ERP, real AdventureWorks data, the agent live)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.cli.common import console


@click.command("demo")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-run"),
              show_default=True, help="Folder for the demo's SQLite databases and configuration.")
@click.option("--seconds", default=20, show_default=True, help="How long to simulate shop-floor activity.")
def demo(folder: Path, seconds: int) -> None:
    """Embedded demo, no server needed: SQLite MES and ERP with real AdventureWorks data, live."""
    from agent.demo.run import run_demo

    sys.exit(int(run_demo(folder, seconds, console)))
