"""Hostile input class 3: slow and oversized responses.

A server that trickles its answer one byte a second never holds a request past
`request_deadline` (connect, headers and body together): running past it is a transient
failure, retried, then one line. A body larger than `max_response_bytes` (announced or not,
compressed or not) ends in one clear line, without reading it all.
"""

from __future__ import annotations

import gzip
import json
import time
import typing as t

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tap_apixx.streams import CanonicalStream
from tests.helpers.hostile import Tally, fuzz, run_cli, tally_fixture, write_inputs
from tests.helpers.hostile_server import HostileServer, Reply, Request, data_page, data_records
from tests.helpers.resilience import no_secrets_anywhere  # noqa: F401  (autouse: scanned for the key)
from tests.helpers.tap import catalog_for

KEY = "apx_live_acme_hostile_transport_6d2f"
tally = tally_fixture(3)
RECORDS = data_records(10)
DEADLINE = 2  # seconds, the smallest request_deadline the settings allow is 1


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CanonicalStream, "backoff_base_seconds", 0.01)
    monkeypatch.setattr(CanonicalStream, "backoff_max_tries", lambda self: 2)


def run_against(route: t.Callable[[Request], Reply], tmp_path, **extra: t.Any):
    with HostileServer(route) as server:
        config = {"api_key": KEY, "data_url": f"{server.url}/api/public/data",
                  "max_parallel_streams": 1, "request_timeout": 5, "request_deadline": DEADLINE,
                  "semantics_probe": False,
                  **extra}
        argv = write_inputs(tmp_path, config=config, catalog=catalog_for(["order"]))
        started = time.monotonic()
        outcome = run_cli(argv).check()
        return outcome, server, time.monotonic() - started


TRICKLE_PHASES = ["headers", "body"]


@pytest.mark.parametrize("phase", TRICKLE_PHASES)
def test_a_trickling_server_is_cut_at_the_deadline(phase, tmp_path, tally: Tally) -> None:
    """1 byte/s forever: each attempt ends by the deadline; after the retries, one line."""

    def route(request: Request) -> Reply:
        page = data_page(RECORDS, request)
        body = page.body if isinstance(page.body, bytes) else b""
        if phase == "headers":  # the status line and headers, one byte a second
            return Reply(200, body, page.headers, trickle_seconds=1.0)
        return Reply(200, _slow_body(body), page.headers, length=len(body) + 10**6)

    outcome, server, seconds = run_against(route, tmp_path)
    assert outcome.code == 1
    assert "order" in outcome.errors[0] and "request_deadline" in outcome.errors[0]
    attempts = len(server.requests)
    assert attempts == 2  # retried (running past the deadline is transient), then one line
    assert seconds < attempts * (DEADLINE + 3) + 10  # each attempt cut near its deadline
    tally.add(outcome.kind)


def _slow_body(start: bytes) -> t.Iterator[bytes]:
    yield start[:5]
    while True:
        time.sleep(1.0)
        yield b" "


@fuzz(10)
@given(size=st.integers(2_000, 200_000), announce=st.booleans(), gzipped=st.booleans())
def test_a_body_past_the_cap_is_one_line(size, announce, gzipped, tmp_path, tally: Tally):
    cap = 1_000  # the smallest the setting allows

    def route(request: Request) -> Reply:
        payload = json.dumps({"entity": "order", "count": 0, "next_cursor": None,
                              "data": [], "pad": "x" * size}).encode()
        headers = {"Content-Type": "application/json", "X-Request-Id": "req_big"}
        if gzipped:
            payload = gzip.compress(payload)
            headers["Content-Encoding"] = "gzip"
        if announce:
            return Reply(200, payload, headers)
        return Reply(200, iter([payload]), headers, length=None)

    outcome, server, _ = run_against(route, tmp_path, max_response_bytes=cap)
    assert outcome.code == 1, outcome.log[-1000:]
    line = outcome.errors[0]
    assert "order" in line and "max_response_bytes" in line and "req_big" in line
    assert len(server.requests) == 1  # not retried: the same answer would come back
    tally.add(outcome.kind)


def test_a_huge_body_is_not_read_whole(tmp_path, tally: Tally) -> None:
    """A 1 GB body is refused after the cap, long before the end."""
    chunk = b"x" * 65536

    def route(request: Request) -> Reply:
        return Reply(200, iter([b'{"data": ["' + chunk, *(chunk for _ in range(16384))]),
                     {"Content-Type": "application/json"}, length=None)

    outcome, server, _ = run_against(route, tmp_path, max_response_bytes=1_000_000)
    assert outcome.code == 1 and "max_response_bytes" in outcome.errors[0]
    assert max(c.sent for c in server.connections) < 200_000_000
    tally.add(outcome.kind)


def test_a_normal_sync_is_unaffected(tmp_path) -> None:
    outcome, _, _ = run_against(lambda r: data_page(RECORDS, r), tmp_path)
    assert outcome.code == 0
    assert sum('"RECORD"' in line for line in outcome.stdout.splitlines()) == len(RECORDS)


def test_the_sync_start_probe_is_held_to_the_deadline_too(tmp_path, tally: Tally) -> None:
    """The semantics probe sends its own requests: a trickling server must not hold it either.

    (It did, before its session went through http_guard: this suite hung on it.)
    """

    def route(request: Request) -> Reply:
        page = data_page(RECORDS, request)
        return Reply(200, page.body, page.headers, trickle_seconds=1.0)

    outcome, _, seconds = run_against(route, tmp_path, semantics_probe=True)
    assert outcome.code == 1 and "request_deadline" in outcome.errors[0]
    assert seconds < 10 * (DEADLINE + 3)  # probe requests and sync attempts, each cut
    tally.add(outcome.kind)
