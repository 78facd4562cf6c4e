"""The install path of a user: build the wheel, `pip install` it without extras into a clean
venv, and sync from that venv against an emulator served by the development venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_tap_support import ROOT, catalog_for, config_for, latest, parse_messages, truth

from apixx_emulator.testing import EmulatorProcess

pytestmark = pytest.mark.e2e
# what the extras add: none of it may reach a plain `pip install tap-apixx`
EXTRA_ONLY = {"fastapi", "uvicorn", "starlette", "duckdb", "psycopg", "meltano", "pytest"}


@dataclass
class CleanInstall:
    venv: Path
    wheel: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([self.bin(argv[0]), *argv[1:]], capture_output=True, text=True,
                              timeout=timeout, check=False)


def _copy_sources(target: Path) -> None:
    """The files git would ship (tracked, or new and not ignored): no build/, .venv, output."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanInstall]:
    work = tmp_path_factory.mktemp("wheel")
    _copy_sources(work / "src")  # building in a copy leaves the checkout untouched
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"),
         str(work / "src")], capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (work / "dist").glob("tap_apixx-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True, timeout=300)
    install = CleanInstall(work / "venv", wheel)
    installed = install.run("pip", "install", "-q", str(wheel), timeout=900)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    yield install


def test_a_plain_install_has_no_web_server(clean_install: CleanInstall) -> None:
    listed = clean_install.run("pip", "list", "--format=json")
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "tap-apixx" in names and "singer-sdk" in names
    assert names.isdisjoint(EXTRA_ONLY), names & EXTRA_ONLY
    assert clean_install.run("python", "-c", "import fastapi").returncode != 0


def test_about_runs_from_the_plain_install(clean_install: CleanInstall) -> None:
    about = clean_install.run("tap-apixx", "--about", "--format=json")
    assert about.returncode == 0, about.stderr
    assert json.loads(about.stdout)["name"] == "tap-apixx"


@pytest.mark.parametrize("argv", [["apixx-emulator", "--port", "0"],
                                  ["python", "-m", "apixx_emulator"]])
def test_the_emulator_command_names_its_extra(clean_install: CleanInstall, argv: list[str]) -> None:
    ran = clean_install.run(*argv, timeout=60)
    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines() == [ran.stderr.strip()]  # one line
    assert "pip install 'tap-apixx[emulator]'" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_receiver_needs_no_extra_dependency(clean_install: CleanInstall) -> None:
    ran = clean_install.run("apixx-webhooks", "serve", "--help")
    assert ran.returncode == 0 and "--max-connections" in ran.stdout


def test_a_sync_from_the_plain_install_equals_ground_truth(
    clean_install: CleanInstall, tmp_path: Path
) -> None:
    config, catalog = tmp_path / "config.json", tmp_path / "catalog.json"
    with EmulatorProcess(records_per_entity=80, read_limit=100000) as emu:  # the dev venv's
        config.write_text(json.dumps(config_for(emu, page_size=7)))
        catalog.write_text(json.dumps(catalog_for(["order"])))
        synced = clean_install.run("tap-apixx", "--config", str(config), "--catalog", str(catalog))
        expected = truth(emu, "order")
    assert synced.returncode == 0, synced.stderr[-2000:]
    records = [m["record"] for m in parse_messages(synced.stdout) if m["type"] == "RECORD"]
    assert len(expected) > 7 * 3  # several pages
    assert len(records) == len(expected)
    assert latest(records) == expected
