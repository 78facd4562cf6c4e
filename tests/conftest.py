"""Shared fixtures: an emulator on a free port per session, and a factory for tests needing their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess
from tests.helpers.emulator import FAST_FLAGS


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
