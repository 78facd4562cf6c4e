"""Emulator time: the wall clock plus an offset that the control plane can advance."""

from __future__ import annotations

import threading
import time
from typing import Any

from ..timestamps import iso_ms


class EmulatorClock:
    """`now()` is real time plus `offset`; advancing moves every later reading forward."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.offset += seconds

    def reset(self) -> None:
        with self._lock:
            self.offset = 0.0

    def describe(self) -> dict[str, Any]:
        now = self.now()
        return {"now": iso_ms(int(now * 1000)), "unix": round(now, 3), "offset_seconds": self.offset}
