"""The demo's folder: one the demo made (or a new or empty one), started over on each run.

A marker file says the demo made the folder and holds the sha256 of `demo.yaml` as the demo wrote it, so a
new run can tell a user's edited `demo.yaml` (kept as `demo.yaml.edited`) from its own. A folder without
the marker that holds anything is refused and left untouched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

CONFIG_NAME = "demo.yaml"
EDITED_CONFIG_NAME = "demo.yaml.edited"
MARKER_NAME = ".mes-erp-agent-demo"
MES_FILE, ERP_FILE, STAGING_FILE = "mes.db", "erp.db", "erp_staging.db"
INBOUND_FILE = "mes_inbound.db"  # the MES's inbound staging schema, where the ERP -> MES flow writes
# Everything a demo run creates in its folder; a new run in the same folder removes exactly these.
DEMO_FILES = tuple(
    f"{name}{suffix}" for name in (MES_FILE, ERP_FILE, STAGING_FILE, INBOUND_FILE) for suffix in ("", "-journal", "-wal", "-shm")
) + (CONFIG_NAME, MARKER_NAME)
DEMO_FOLDERS = ("schema_snapshots", "alerts")  # written by the agent (drift gate) next to the config


class FolderRefused(Exception):
    """The folder holds something the demo did not make; nothing was changed."""


def shown(path: Path) -> str:
    """A path as the user should type it: relative to the current folder when inside it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def prepare_folder(folder: Path) -> str | None:
    """Create the folder, or clear a previous demo's files from it; returns a note for the user when it did.

    Raises FolderRefused for a file, or a non-empty folder the demo did not make.
    """
    if folder.exists() and not folder.is_dir():
        raise FolderRefused(f"{shown(folder)} is a file. Choose a folder: mes-erp-agent demo --dir NEW-FOLDER")
    if not folder.exists():
        folder.mkdir(parents=True)
        return None
    if not any(folder.iterdir()):
        return None
    marker = folder / MARKER_NAME
    if not marker.is_file():
        raise FolderRefused(
            f"{shown(folder)} already exists and was not made by `mes-erp-agent demo`; nothing in it was "
            "changed. Choose another folder: mes-erp-agent demo --dir NEW-FOLDER"
        )
    note = f"{shown(folder)} holds a previous demo: starting over (its databases are replaced)."
    config = folder / CONFIG_NAME
    if config.is_file() and _sha256(config.read_bytes()) not in marker.read_text(encoding="utf-8"):
        config.replace(folder / EDITED_CONFIG_NAME)
        note += f" Your edited {CONFIG_NAME} is kept as {shown(folder / EDITED_CONFIG_NAME)}."
    for name in DEMO_FILES:
        (folder / name).unlink(missing_ok=True)
    for name in DEMO_FOLDERS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
    return note


def mark_as_demo(folder: Path, config_text: str) -> None:
    """Write the marker, with the digest of `demo.yaml` as written, so that the next run can see edits."""
    (folder / MARKER_NAME).write_text(
        "This folder was made by `mes-erp-agent demo`; running the demo again here replaces its databases.\n"
        f"{CONFIG_NAME} as written (sha256): {_sha256(config_text.encode('utf-8'))}\n",
        encoding="utf-8",
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
