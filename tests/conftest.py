"""Shared fixtures: an emulator on a free port per session, and a factory for tests needing their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess

# Small, fast, and with limits high enough that only the rate-limit tests meet them.
FAST_FLAGS = {"records_per_entity": 300, "read_limit": 100000, "write_limit": 100000, "trigger_limit": 100000}


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
