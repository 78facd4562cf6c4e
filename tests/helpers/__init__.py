"""Shared by the test suites, imported as a package (`from tests.helpers.e2e import ...`)."""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

T = t.TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]  # the repository


def wait_for(predicate: t.Callable[[], T], timeout: float = 30, every: float = 0.05) -> T | None:
    """Poll until `predicate()` is truthy and return that value (None at the timeout).

    The timeout only guards against a hang; it is never what a test measures.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return None
