"""Transient faults injected on API routes: 500s, HTML 502s, resets, truncated bodies, 429s, latency."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

MAX_LATENCY_MS = 60_000  # injected latency (and jitter) is at most a minute: a client's timeout, not a hang
MAX_RETRY_AFTER = 86_400  # an injected 429 asks for at most a day's wait
FAULT_KINDS = ("error_500", "html_502", "rate_429", "reset", "truncated")

HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass
class FaultConfig:
    error_500_rate: float = 0.0
    html_502_rate: float = 0.0
    rate_429_rate: float = 0.0
    reset_rate: float = 0.0
    truncated_rate: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    retry_after: int = 1  # seconds an injected 429 asks the client to wait
    seed: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> FaultConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        config = cls(**body)
        rates = [getattr(config, f"{k}_rate") for k in FAULT_KINDS]
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            raise ValueError("each *_rate must be within 0..1 and together at most 1")
        if not (0 <= config.latency_ms <= MAX_LATENCY_MS and 0 <= config.jitter_ms <= MAX_LATENCY_MS):
            raise ValueError(f"latency_ms and jitter_ms must be within 0..{MAX_LATENCY_MS}")
        if not 0 <= config.retry_after <= MAX_RETRY_AFTER:
            raise ValueError(f"retry_after must be within 0..{MAX_RETRY_AFTER}")
        return config


class FaultInjector:
    """Draws, per API request, whether to misbehave and how long to stall first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.configure(FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self.injected: dict[str, int] = {k: 0 for k in FAULT_KINDS}

    def draw(self) -> tuple[str | None, float]:
        """(fault kind or None, seconds of latency to add)."""
        with self._lock:
            c = self.config
            delay = 0.0
            if c.latency_ms or c.jitter_ms:
                delay = max(0.0, c.latency_ms + self._rng.uniform(-c.jitter_ms, c.jitter_ms)) / 1000
            roll = self._rng.random()
            for kind in FAULT_KINDS:
                roll -= getattr(c, f"{kind}_rate")
                if roll < 0:
                    self.injected[kind] += 1
                    return kind, delay
            return None, delay

    def describe(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "injected": dict(self.injected)}
