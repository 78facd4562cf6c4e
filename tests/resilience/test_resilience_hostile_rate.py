"""Hostile input class 4: rate-limit headers are advice, never orders.

Whatever X-RateLimit-* and Retry-After say (epoch milliseconds, negative, NaN, an hour away, an
HTTP date), the tap waits at most `max_rate_limit_wait` at a time, says once what it waits for
and why, and never crashes on a value it cannot read.
"""

from __future__ import annotations

import math
import time
import typing as t
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tap_apixx.pacing import RatePacer, parse_reset, parse_retry_after
from tests.helpers.hostile import Tally, fuzz, run_cli, tally_fixture, write_inputs
from tests.helpers.hostile_server import (
    HostileServer,
    Reply,
    Request,
    data_page,
    data_records,
    json_reply,
)
from tests.helpers.resilience import no_secrets_anywhere  # noqa: F401  (autouse: scanned for the key)
from tests.helpers.tap import catalog_for

KEY = "apx_live_acme_hostile_rate_5c1d9e"
NOW = 1_800_000_000.0  # a fixed "now" for the unit properties (2027-01-15)
CEILING = 30.0

tally = tally_fixture(4)

# Header values: what a server (or a proxy in front of it) might send.
NUMBERS = st.one_of(
    st.integers(-10**13, 10**13).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-0", "0x10", "", " ", "٣", "7" * 400,
                     "soon", "null", "1.5", "  42  ", "+5", "1_000"]),
)
RESETS = st.one_of(
    NUMBERS,
    st.floats(-3600, 7200).map(lambda d: str(int(NOW + d))),  # epoch seconds near now
    st.floats(-3600, 7200).map(lambda d: str(int((NOW + d) * 1000))),  # epoch milliseconds
    st.integers(0, 3600).map(str),  # seconds from now (IETF RateLimit-Reset style)
)


def http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset, timezone.utc), usegmt=True)


RETRY_AFTERS = st.one_of(
    NUMBERS,
    st.floats(-86400, 86400 * 3).map(http_date),
    st.sampled_from(["Wed, 21 Oct 2015 07:28:00 GMT", "Wednesday, 21-Oct-15 07:28:00 GMT",
                     "Wed Oct 21 07:28:00 2015", "Fri, 31 Dec 9999 23:59:59 GMT",
                     "Mon, 01 Jan 0001 00:00:00 GMT", "Thu, 32 Foo 2026 99:99:99 GMT"]),
)
HEADERS = st.fixed_dictionaries({}, optional={
    "X-RateLimit-Limit": NUMBERS, "X-RateLimit-Remaining": NUMBERS,
    "X-RateLimit-Reset": RESETS, "Retry-After": RETRY_AFTERS,
})


@fuzz(400)
@given(value=RETRY_AFTERS)
def test_retry_after_is_a_finite_wait_or_nothing(value: str, tally: Tally) -> None:
    wait = parse_retry_after(value, NOW)
    assert wait is None or (math.isfinite(wait) and wait >= 0)
    if value.strip().isdecimal() and value.strip().isascii() and len(value.strip()) < 12:
        assert wait == float(value.strip())
    tally.add("unreadable: ignored" if wait is None else "a finite wait")


@fuzz(200)
@given(offset=st.integers(0, 86400 * 2))
def test_retry_after_as_an_http_date_is_honoured(offset: int, tally: Tally) -> None:
    assert parse_retry_after(http_date(offset), NOW) == pytest.approx(offset, abs=1)
    assert parse_retry_after(http_date(-offset), NOW) == 0  # in the past: go now
    tally.add("HTTP date honoured")


@fuzz(400)
@given(value=RESETS)
def test_reset_is_a_sane_instant_or_nothing(value: str, tally: Tally) -> None:
    reset = parse_reset(value, NOW)
    assert reset is None or (math.isfinite(reset) and reset >= NOW)
    if reset is not None:
        assert reset <= NOW + 10 * 86400 * 365  # never decades away: ms and junk are caught
    tally.add("unreadable: ignored" if reset is None else "an instant")


def test_reset_in_epoch_milliseconds_is_read_as_seconds() -> None:
    assert parse_reset(str(int((NOW + 30) * 1000)), NOW) == pytest.approx(NOW + 30)
    assert parse_reset(str(int(NOW + 30)), NOW) == NOW + 30
    assert parse_reset("30", NOW) == NOW + 30  # seconds from now
    for junk in ("-5", "nan", "inf", "1e400", "", "soon"):
        assert parse_reset(junk, NOW) is None
    assert parse_reset("99999999999999", NOW) == NOW + 366 * 86400  # centuries away: clamped


class FakeTime:
    def __init__(self) -> None:
        self.now = NOW
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert math.isfinite(seconds) and seconds >= 0
        self.waits.append(seconds)
        self.now += seconds


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, level: int, msg: str, *args: t.Any) -> None:
        self.lines.append(msg % args)


@fuzz(300)
@given(answers=st.lists(HEADERS, min_size=1, max_size=30), cap=st.none() | st.integers(1, 600))
def test_pacer_never_waits_past_the_ceiling_whatever_the_headers(answers, cap, tally: Tally):
    fake, lines = FakeTime(), Lines()
    pacer = RatePacer(cap, max_wait=CEILING, clock=fake.clock, sleep=fake.sleep, logger=lines)
    for headers in answers:
        pacer.acquire()
        pacer.observe(headers)
        fake.now += 0.05  # the request took a little time
    pacer.acquire()
    assert all(w <= CEILING + 1e-6 for w in fake.waits), fake.waits
    long_waits = [w for w in fake.waits if w >= 1.0]
    if long_waits:
        assert lines.lines, "waited without saying why"
    assert len(lines.lines) <= len(long_waits)  # at most one line per wait, never a flood
    tally.add("waited, said why" if long_waits else "no long wait")


def test_an_hour_away_reset_is_waited_out_once_capped_and_said_once() -> None:
    fake, lines = FakeTime(), Lines()
    pacer = RatePacer(None, max_wait=CEILING, clock=fake.clock, sleep=fake.sleep, logger=lines)
    headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": str(int(NOW + 3600))}
    for _ in range(20):
        pacer.acquire()
        pacer.observe(headers)
    assert max(fake.waits) == pytest.approx(CEILING)
    assert len(lines.lines) == 1, lines.lines
    assert "X-RateLimit-Remaining" in lines.lines[0] and "max_rate_limit_wait" in lines.lines[0]


# End to end: the tap against a server sending these headers on every 200 or 429.

RECORDS = data_records(120)


def run_against(route: t.Callable[[Request], Reply], tmp_path, **settings_: t.Any):
    with HostileServer(route) as server:
        config = {"api_key": KEY, "data_url": f"{server.url}/api/public/data", "page_size": 50,
                  "max_parallel_streams": 1, "max_rate_limit_wait": 2, "semantics_probe": False,
                  **settings_}
        argv = write_inputs(tmp_path, config=config, catalog=catalog_for(["order"]))
        started = time.monotonic()
        outcome = run_cli(argv).check()
        return outcome, server, time.monotonic() - started


ADVICE = {
    "an hour away": lambda: str(int(time.time() + 3600)),
    "epoch milliseconds": lambda: str(int((time.time() + 3600) * 1000)),
    "negative": lambda: "-1767225600",
    "NaN": lambda: "NaN",
    "huge": lambda: "9" * 40,
}


@pytest.mark.parametrize("reset", ADVICE, ids=list(ADVICE))
def test_a_200_with_nothing_remaining_waits_at_most_the_ceiling(reset, tmp_path, tally: Tally):
    def route(request: Request) -> Reply:
        return data_page(RECORDS, request, **{"X-RateLimit-Limit": "600",
                                              "X-RateLimit-Remaining": "0",
                                              "X-RateLimit-Reset": ADVICE[reset]()})

    outcome, server, seconds = run_against(route, tmp_path)
    assert outcome.code == 0, outcome.stderr
    ids = [line for line in outcome.stdout.splitlines() if '"RECORD"' in line]
    assert len(ids) == len(RECORDS)
    waits = [line for line in outcome.log.splitlines() if "X-RateLimit" in line]
    assert len(waits) <= 1, waits  # said once, not per request
    if reset in ("an hour away", "epoch milliseconds"):
        assert waits and "max_rate_limit_wait" in waits[0]
    assert seconds < 2 * len(server.requests) + 30  # each wait capped at 2 s: no hour-long sleep
    tally.add("exit 0, " + ("waited (capped), said once" if waits else "header ignored"))


def test_retry_after_as_an_http_date_is_waited_then_retried(tmp_path, tally: Tally) -> None:
    refused = []

    def route(request: Request) -> Reply:
        if not refused:
            refused.append(request)
            when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=1), usegmt=True)
            return json_reply({"error": {"code": "rate_limited", "message": "slow down"}}, 429,
                              **{"Retry-After": when})
        return data_page(RECORDS, request)

    outcome, _, _ = run_against(route, tmp_path)
    assert outcome.code == 0, outcome.stderr
    assert len([ln for ln in outcome.stdout.splitlines() if '"RECORD"' in ln]) == len(RECORDS)
    assert any("429" in line for line in outcome.warnings)
    tally.add("exit 0, waited the date out")


@pytest.mark.parametrize("retry_after", [http_date(0).replace(str(2027), "2099"), "86400"])
def test_retry_after_beyond_the_ceiling_is_one_line(retry_after, tmp_path, tally: Tally) -> None:
    def route(request: Request) -> Reply:
        return json_reply({"error": {"code": "rate_limited", "message": "later"}}, 429,
                          **{"Retry-After": retry_after, "request_id": "req_rate_1"})

    outcome, _, _ = run_against(route, tmp_path)
    assert outcome.code == 1
    assert "order" in outcome.errors[0] and "req_rate_1" in outcome.errors[0]
    assert "max_rate_limit_wait" in outcome.errors[0]
    tally.add("exit 1, one line")
