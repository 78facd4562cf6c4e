"""Concurrent streams: well-formed Singer output, consistent STATE, resume after kill -9, no 429."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import tempfile
import threading
import typing as t
from pathlib import Path

import pytest

from tap_apixx.pacing import RatePacer
from tap_apixx.settings import config_problems
from tap_apixx.streams import CANONICAL_ENTITIES
from tap_apixx.tap import TapApixx
from tests.helpers.tap import TAP, catalog_for, config_for, latest, run_cli, run_tap, truth

ALL_STREAMS = [*CANONICAL_ENTITIES, "flows", "runs", "connectors"]
DATA_ONLY_KEY = "apixx_acme_data_7b3e1f9a"  # data:read, lacks flows:read


def check_well_formed(lines: list[str]) -> list[dict]:
    """Every line is one JSON message; each stream's SCHEMA comes before its first RECORD; no
    STATE puts a bookmark ahead of the records written before it (or of the state given)."""
    messages = [json.loads(line) for line in lines]
    given = bookmarks(messages[0]) if messages and messages[0]["type"] == "STATE" else {}
    schemas: set[str] = set()
    newest = dict(given)  # stream -> latest updated_at written (or given) so far
    for message in messages:
        kind = message["type"]
        if kind == "SCHEMA":
            schemas.add(message["stream"])
        elif kind == "RECORD":
            stream = message["stream"]
            assert stream in schemas, f"RECORD of {stream} before its SCHEMA"
            if stream in CANONICAL_ENTITIES:
                newest[stream] = max(newest.get(stream, ""), message["record"]["updated_at"])
        elif kind == "STATE":
            for stream, value in bookmarks(message).items():
                assert value <= newest.get(stream, ""), f"STATE has {stream} at {value}, ahead"
    return messages


def bookmarks(state_message: dict) -> dict[str, str]:
    """The canonical streams' bookmarks in a STATE message."""
    found = state_message["value"].get("bookmarks", {}).items()
    return {s: b["replication_key_value"] for s, b in found
            if s in CANONICAL_ENTITIES and b.get("replication_key_value")}


def records_by_stream(messages: t.Iterable[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for message in messages:
        if message["type"] == "RECORD":
            out.setdefault(message["stream"], []).append(message["record"])
    return out


def test_parallel_sync_of_every_stream_is_well_formed_and_complete(emulator_factory, tmp_path: Path) -> None:
    emu = emulator_factory(records_per_entity=120, max_tie_size=5)
    emu.faults(latency_ms=3, jitter_ms=3)  # let the threads interleave
    proc = run_cli(tmp_path, config_for(emu, page_size=7, max_parallel_streams=6), streams=ALL_STREAMS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.endswith("\n")
    messages = check_well_formed(proc.stdout.splitlines())
    records = records_by_stream(messages)
    for entity in CANONICAL_ENTITIES:
        assert latest(records[entity]) == truth(emu, entity), entity
    for kind in ("flows", "runs", "connectors"):
        expected = {o["id"] for o in emu.control("GET", f"/_emulator/ops/{kind}")["data"]}
        assert {r["id"] for r in records[kind]} == expected, kind
    streams_seen = [m["stream"] for m in messages if m["type"] == "RECORD"]
    switches = sum(1 for a, b in itertools.pairwise(streams_seen) if a != b)
    assert switches > len(ALL_STREAMS), "the streams did not run at the same time"


def kill_at(proc: subprocess.Popen, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proc.kill)
    timer.start()
    return timer


def run_until_killed(config: dict, catalog: dict, state: dict | None, after: float) -> tuple[list[str], bool]:
    """Run the CLI and kill -9 it after `after` seconds; (complete lines written, finished)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = {"config": config, "catalog": catalog, **({"state": state} if state else {})}
        argv = [TAP]
        for name, value in files.items():
            (Path(tmp) / f"{name}.json").write_text(json.dumps(value))
            argv += [f"--{name}", str(Path(tmp) / f"{name}.json")]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        timer = kill_at(proc, after)
        output = proc.stdout.read().decode()
        proc.wait()
        timer.cancel()
    lines = output.split("\n")
    # a kill may cut the last line short: a target would see the same; whole lines are complete
    return [line for line in lines[:-1]], proc.returncode == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_at_random_moments_then_resume_loses_nothing(emulator_factory, seed: int) -> None:
    emu = emulator_factory(records_per_entity=200, max_tie_size=5)
    emu.churn("payment", updates=5, inserts=12, tie=True)  # one tie group across pages
    emu.faults(latency_ms=8, jitter_ms=8)
    config = config_for(emu, page_size=9, max_parallel_streams=4)
    catalog = catalog_for(CANONICAL_ENTITIES)
    rng = random.Random(seed)
    seen: list[dict] = []
    state: dict | None = None
    kills = 0
    for _ in range(6):
        lines, finished = run_until_killed(config, catalog, state, rng.uniform(0.8, 2.5))
        messages = check_well_formed(lines)
        seen += [m for m in messages if m["type"] == "RECORD"]
        states = [m["value"] for m in messages if m["type"] == "STATE"]
        state = states[-1] if states else state
        if finished:
            break
        kills += 1
    emu.faults()
    final = run_tap(config, state, CANONICAL_ENTITIES)
    check_well_formed([json.dumps(m) for m in final.messages])
    assert kills >= 1, "no run was killed: make the runs longer"
    records = records_by_stream(seen)
    for entity in CANONICAL_ENTITIES:
        assert latest(records.get(entity, []) + final.records(entity)) == truth(emu, entity), entity


def test_concurrent_sync_meets_no_429_under_a_tight_limit(emulator_factory) -> None:
    # a 10 s window: X-RateLimit-Reset is whole seconds, which is a third of a 3 s window and
    # made the test depend on how busy the machine was, not on the pacer
    emu = emulator_factory(records_per_entity=100, max_tie_size=5, read_limit=40, rate_window_seconds=10)
    emu.faults(latency_ms=60, jitter_ms=40)  # answers overtake each other
    streams = list(CANONICAL_ENTITIES)[:6]
    result = run_tap(config_for(emu, page_size=6, max_parallel_streams=6), streams=streams)
    statuses = [r["status"] for r in emu.stats()["requests"] if r["route"].startswith("data:")]
    assert len(statuses) > 2 * 40  # several windows' worth
    assert set(statuses) == {200}
    for entity in streams:
        assert latest(result.records(entity)) == truth(emu, entity)


def test_a_failing_stream_stops_new_starts_but_running_ones_finish(emulator_factory, tmp_path: Path) -> None:
    emu = emulator_factory(records_per_entity=150)
    emu.faults(latency_ms=5)
    config = {**config_for(emu, page_size=10, max_parallel_streams=2), "api_key": DATA_ONLY_KEY}
    proc = run_cli(tmp_path, config, streams=["order", "flows", "runs", "connectors"])
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    messages = check_well_formed(proc.stdout.splitlines())
    assert latest(records_by_stream(messages)["order"]) == truth(emu, "order")  # ran alongside
    started = {m["stream"] for m in messages if m["type"] == "SCHEMA"} - {"order"}
    assert len(started) == 1  # the canonical stream first, then one ops stream; no more
    assert error.startswith(f"tap-apixx: error: {started.pop()}: HTTP 403 forbidden")


def test_max_parallel_streams_is_validated_and_one_pacer_serves_both() -> None:
    schema = TapApixx.config_jsonschema
    assert config_problems({"max_parallel_streams": 0}, schema) == [
        "max_parallel_streams: 0 is not an integer in 1..18"]
    assert config_problems({"max_parallel_streams": 19}, schema)
    assert not config_problems({"max_parallel_streams": 18}, schema)
    base = {"api_key": "apx_live_x"}
    assert type(TapApixx(config={**base, "max_parallel_streams": 1}).pacer) is RatePacer
    assert type(TapApixx(config=base).pacer) is RatePacer  # default 4: the same thread-safe pacer


def test_pacer_waits_for_the_first_answer_and_counts_requests_in_flight() -> None:
    pacer = RatePacer()
    sent: list[int] = []
    answers = {n: threading.Event() for n in (1, 2, 3)}

    def request(number: int, remaining: int) -> None:
        pacer.acquire()
        sent.append(number)
        answers[number].wait(5)
        pacer.observe({"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": str(remaining),
                       "X-RateLimit-Reset": "9999999999"})

    threads = [threading.Thread(target=request, args=(n, 10 - n)) for n in (1, 2, 3)]
    threads[0].start()
    threads[1].start()
    threads[1].join(0.3)
    assert sent == [1], "a second request went out before the budget was known"
    answers[1].set()
    threads[0].join(5)
    threads[2].start()
    threads[2].join(0.3)
    assert sorted(sent) == [1, 2, 3]  # the budget is known and ample: both go out
    answers[2].set()
    threads[1].join(5)
    # the server counted 2 requests (8 left), but request 3 is still in flight: 7
    assert pacer._remaining == 7
    answers[3].set()
    threads[2].join(5)
    assert pacer._remaining == 7
