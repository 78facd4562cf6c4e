"""Rate-limit compliance: paced against a lowered read limit, no 429 and >= 90% of the rate."""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass

import pytest

from tap_apixx.pacing import RatePacer
from tests.helpers.resilience import (
    no_secrets_anywhere,  # noqa: F401  (autouse: every test here is scanned for the key)
    profiles,
    record_figures,
    watch,
)
from tests.helpers.tap import config_for, latest, run_tap, truth

MIN_UTILISATION = 0.90


@dataclass(frozen=True)
class RateProfile:
    name: str
    limit: int  # reads per window
    window: int  # seconds
    records_per_entity: int
    streams: tuple[str, ...]
    page_size: int = 6  # just over the largest tie group (--max-tie-size 5)


# ~250 requests against 50 per 5 s: about 25 s, five windows
CI = RateProfile("ci", 50, 5, 600, ("order", "payment"))
# ~840 requests against the real 60 s window at 120/min: about 7 minutes
SOAK = RateProfile("soak", 120, 60, int(os.environ.get("APIXX_SOAK_RATE_RECORDS", "1250")),
                   ("order", "payment", "invoice", "refund"))


def utilisation(times: list[float], limit: int, window: float) -> tuple[float, int]:
    """Share of the allowed requests used over the whole windows from the first request."""
    windows = int((times[-1] - times[0]) // window)
    used = sum(1 for at in times if at < times[0] + windows * window)
    return used / (windows * limit), windows


@pytest.mark.parametrize("profile", profiles(ci=CI, soak=SOAK))
def test_paced_sync_meets_no_429_and_uses_the_allowed_rate(emulator_factory, profile):
    emu = emulator_factory(records_per_entity=profile.records_per_entity, max_tie_size=5,
                           read_limit=profile.limit, rate_window_seconds=profile.window)
    result = run_tap(config_for(emu, page_size=profile.page_size), streams=profile.streams)
    watch("tap output", result.messages)
    log = [r for r in emu.stats()["requests"] if r["route"].startswith("data:")]
    times = sorted(r["at"] for r in log)
    share, windows = utilisation(times, profile.limit, profile.window)

    assert windows >= 3, "the sync must outlast several windows"
    assert {r["status"] for r in log} == {200}, "the server refused a request"
    assert MIN_UTILISATION <= share <= 1.0
    for stream in profile.streams:
        assert latest(result.records(stream)) == truth(emu, stream)
    record_figures(profile.name, "rate_compliance", {
        "limit": profile.limit, "window_seconds": profile.window, "requests": len(log),
        "seconds": round(times[-1] - times[0], 1), "http_429": 0,
        "utilisation_pct": round(100 * share, 1), "full_windows": windows,
    })


class SlidingWindowServer:
    """The emulator's limiter in miniature: whole-second X-RateLimit-Reset, rounded up."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window, self.log = limit, window, deque()
        self.refused = 0

    def answer(self, now: float) -> dict[str, str]:
        while self.log and self.log[0] <= now - self.window:
            self.log.popleft()
        if len(self.log) >= self.limit:
            self.refused += 1
            reset = math.ceil(self.log[0] + self.window)
            return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset), "Retry-After": str(max(1, reset - int(now)))}
        self.log.append(now)
        return {"X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.limit - len(self.log)),
                "X-RateLimit-Reset": str(math.ceil(self.log[0] + self.window))}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.3

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("window", [5.0, 60.0])
def test_pacer_uses_the_window_fully_without_a_refusal(window: float) -> None:
    clock, server = Clock(), SlidingWindowServer(limit=50, window=window)
    pacer = RatePacer(clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(500):
        pacer.acquire()
        sent.append(clock.now)
        pacer.observe(server.answer(clock.now))
        clock.now += 0.003  # the response takes a few milliseconds
    share, _ = utilisation(sent, 50, window)
    assert server.refused == 0
    assert share >= 0.97  # whole-second rounding of the reset would cost 10% of a 5 s window


def test_pacer_trusts_the_header_when_another_client_shares_the_key() -> None:
    clock = Clock()
    pacer = RatePacer(clock=clock, sleep=clock.sleep)
    for _ in range(3):  # our three requests; the server says 48 of 50 are used (others' too)
        pacer.acquire()
        pacer.observe({"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "2",
                       "X-RateLimit-Reset": "1000005"})
    pacer.observe({"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": "1000005"})
    assert clock.now + pacer.acquire() == 1000005.0
