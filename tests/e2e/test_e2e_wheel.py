"""The install path of a user: build the wheel, `pip install` it without extras into a clean
venv, and sync from that venv against an emulator served by the development venv."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from apixx_emulator.testing import EmulatorProcess
from tests.helpers.packaging import build_wheel, copy_sources, installed_distributions, make_venv
from tests.helpers.tap import catalog_for, config_for, latest, parse_messages, truth

pytestmark = pytest.mark.e2e
# what the extras add: none of it may reach a plain `pip install tap-apixx`
EXTRA_ONLY = {"fastapi", "uvicorn", "starlette", "duckdb", "psycopg", "meltano", "pytest"}


@dataclass
class CleanInstall:
    bin: Path

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / argv[0]), *argv[1:]], capture_output=True,
                              text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def clean_install(tmp_path_factory: pytest.TempPathFactory) -> CleanInstall:
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(copy_sources(work / "src"), work / "dist")
    return CleanInstall(make_venv(work / "venv", str(wheel)))  # no extras


def test_a_plain_install_has_no_web_server(clean_install: CleanInstall) -> None:
    names = installed_distributions(clean_install.bin / "python")
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
