"""The README's quick start, run as written in a copy of this project: the emulator it starts,
the `meltano run`s and the reconcile it shows, then the warehouse against the emulator's truth."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import duckdb
import pytest

from apixx_emulator.entities import ENTITIES
from apixx_emulator.testing import EmulatorProcess, free_port
from tests.helpers.packaging import ROOT, copy_sources

README_PORT = "8765"  # where the README's quick start starts the emulator and meltano.yml expects it
PLUGINS = ROOT / ".meltano"

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not (PLUGINS / ".plugins-installed").exists(), reason="Meltano plugins not installed: run `make plugins`")]


def quick_start_block() -> str:
    """The first ```bash block under the README's `## Quick start`."""
    section = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "no bash block under '## Quick start'"
    return match.group(1)


def query_block() -> str:
    """The quick start's ```sh block that looks at the data (the one that opens the warehouse)."""
    section = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    [block] = [b for b in re.findall(r"```sh\n(.*?)```", section, re.DOTALL) if "warehouse.duckdb" in b]
    return block


def project_copy(target: Path, port: str) -> Path:
    """This checkout's files, sharing its .venv and installed plugins but not its output/ or
    Meltano system database. Only the port differs, so a running demo cannot collide with it."""
    copy_sources(target)
    (target / ".venv").symlink_to(ROOT / ".venv")
    (target / ".meltano").mkdir()
    for kind in ("extractors", "loaders"):
        (target / ".meltano" / kind).symlink_to(PLUGINS / kind)
    shutil.copy2(PLUGINS / ".plugins-installed", target / ".meltano")  # mtime kept: no reinstall
    manifest = target / "meltano.yml"
    stat = manifest.stat()
    manifest.write_text(manifest.read_text().replace(f":{README_PORT}/", f":{port}/"))
    os.utime(manifest, (stat.st_atime, stat.st_mtime))
    return target


def test_the_readme_quick_start_as_written(tmp_path: Path) -> None:
    block = quick_start_block()
    assert "make install plugins" in block and f"--port {README_PORT}" in block
    assert ".venv/bin/meltano run tap-apixx target-duckdb" in block  # spelled out, no activation
    port = str(free_port())
    project = project_copy(tmp_path / "tap-apixx", port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "TAP_APIXX", "TARGET_"))}
    log = tmp_path / "quickstart.log"
    with log.open("w") as out:
        shell = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.replace(README_PORT, port)],
                                 cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        returncode = shell.wait(timeout=1200)
        text = log.read_text()
        assert returncode == 0, text[-4000:]
        emulator = EmulatorProcess(port=int(port))  # the one the quick start left running
        warehouse = duckdb.connect(str(project / "output" / "warehouse.duckdb"), read_only=True)
        for entity in ENTITIES:
            truth = {r["canonical_id"] for r in emulator.ground_truth(entity)}
            loaded = {row[0] for row in warehouse.sql(f'SELECT canonical_id FROM apixx."{entity}"').fetchall()}
            assert len(truth) == 500 and loaded == truth, entity
        for kind in ("flows", "connectors"):
            ops = emulator.control("GET", f"/_emulator/ops/{kind}", params={"tenant": "acme", "env": "live"})
            loaded = {row[0] for row in warehouse.sql(f"SELECT id FROM apixx.{kind}").fetchall()}
            assert loaded == {item["id"] for item in ops["data"]}, kind
        warehouse.close()  # DuckDB allows one writer or many readers per file, not both
        assert "No drift" in text and "Traceback" not in text
        assert text.count("Run completed") == 2  # both meltano runs
        query = query_block()  # the README's look at the data, run as written too
        shown = subprocess.run(["bash", "-c", query], cwd=project, env=env, capture_output=True,
                               text=True, timeout=120, check=False)
        assert shown.returncode == 0, shown.stderr
        counts = [int(n) for n in re.findall(r"│\s*\w+\s*│\s*(\d+)\s*│", shown.stdout)]
        assert sum(counts) == len(emulator.ground_truth("order")), shown.stdout
        # the README's query opened the file with the .venv's DuckDB, read-only; the loader's own
        # (older) DuckDB must still open it, or the next `meltano run` would fail
        target_python = PLUGINS / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
        reopened = subprocess.run(
            [str(target_python), "-c", "import duckdb; duckdb.connect('output/warehouse.duckdb').close()"],
            cwd=project, capture_output=True, text=True, timeout=120, check=False)
        assert reopened.returncode == 0, reopened.stderr
    finally:
        try:
            os.killpg(shell.pid, signal.SIGTERM)  # the emulator the block left in the background
        except ProcessLookupError:
            pass
