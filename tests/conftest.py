"""Shared fixtures: an emulator on a free port per session, and a factory for tests needing their own."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess
from tests.helpers import ROOT
from tests.helpers.emulator import FAST_FLAGS

MELTANO_SHARED = ("extractors", "loaders", "utilities", ".plugins-installed")  # installed plugins


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's `meltano` commands get a system folder of their own:
    `meltano run` writes its discovered catalog to .meltano/run/<plugin>/tap.properties.json,
    which runs side by side would overwrite under each other. The installed plugins are shared."""
    worker, installed = os.environ.get("PYTEST_XDIST_WORKER"), ROOT / ".meltano"
    if not worker or "MELTANO_SYS_DIR_ROOT" in os.environ or not installed.is_dir():
        return
    sysdir = Path(tempfile.mkdtemp(prefix=f"apixx-meltano-{worker}-"))
    for name in MELTANO_SHARED:
        if (installed / name).exists():
            (sysdir / name).symlink_to(installed / name)
    os.environ["MELTANO_SYS_DIR_ROOT"] = str(sysdir)
    config.stash[MELTANO_SYSDIR] = sysdir


def pytest_unconfigure(config: pytest.Config) -> None:
    sysdir = config.stash.get(MELTANO_SYSDIR, None)
    if sysdir is not None:
        os.environ.pop("MELTANO_SYS_DIR_ROOT", None)
        shutil.rmtree(sysdir, ignore_errors=True)


MELTANO_SYSDIR = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(**FAST_FLAGS) as emu:
        yield emu


@pytest.fixture()
def emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def start(**flags) -> EmulatorProcess:
        emu = EmulatorProcess(**{**FAST_FLAGS, **flags}).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture()
def api_key() -> str:
    return DEFAULT_KEY
