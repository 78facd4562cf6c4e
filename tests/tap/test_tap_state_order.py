"""STATE against RECORD order on the tap's stdout: a STATE never claims a record not yet written.

A target confirms (and Meltano saves) STATE messages it received; a bookmark that is ahead of
the records already written would let a kill lose them. Two rules, checked on whole runs:

- no STATE line precedes a RECORD that its bookmark covers (updated_at before the bookmark, or
  at it and listed in `seen_at_bookmark`), unless that record was written before it or was
  covered by the run's input state (a lookback re-reads those on purpose);
- the first STATE comes before any RECORD and moves no bookmark. Targets built like the Singer
  reference targets (target-duckdb 0.8.0) adopt the first STATE they receive as confirmed and
  re-emit it when another stream flushes, so a first STATE written after a page would confirm
  that page while its records still wait in the target's batch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import typing as t
from pathlib import Path

import duckdb
import pytest

from tap_apixx.bookmarks import SEEN_KEY, Stamp, parse_stamp
from tests.helpers.e2e import ROOT, meltano_available
from tests.helpers.tap import config_for, run_tap

STREAMS = ("customer", "order", "payment")


def covers(state: dict, stream: str, cid: str, stamp: Stamp) -> bool:
    """True when `state` says the record (`cid` at `stamp`) of `stream` was already delivered."""
    entry = (state.get("bookmarks") or {}).get(stream) or {}
    mark = parse_stamp(entry.get("replication_key_value"))
    if mark is None or stamp.ns > mark.ns:
        return False
    if stamp.ns < mark.ns:
        return True
    seen = entry.get(SEEN_KEY) or {}
    at = parse_stamp(seen.get("updated_at"))
    return at is not None and at.ns == mark.ns and cid in set(seen.get("ids") or ())


def premature_states(messages: list[dict], input_state: dict | None = None) -> list[str]:
    """Every RECORD written after a STATE that already covered it (and not written before)."""
    written: set[tuple[str, str, int]] = set()
    states: list[dict] = []
    problems: list[str] = []
    for index, message in enumerate(messages):
        if message["type"] == "STATE":
            if not states or message["value"] != states[-1]:
                states.append(message["value"])
            continue
        if message["type"] != "RECORD":
            continue
        stream, record = message["stream"], message["record"]
        cid, stamp = record["canonical_id"], parse_stamp(record["updated_at"])
        assert stamp is not None, record
        key = (stream, cid, stamp.ns)
        if key in written or (input_state and covers(input_state, stream, cid, stamp)):
            written.add(key)
            continue
        early = next((s for s in states if covers(s, stream, cid, stamp)), None)
        if early is not None:
            mark = early["bookmarks"][stream]["replication_key_value"]
            problems.append(
                f"line {index + 1}: {stream} {cid} at {record['updated_at']} written after a "
                f"STATE with bookmark {mark}"
            )
        written.add(key)
    return problems


def first_state_problems(messages: list[dict], input_state: dict | None) -> list[str]:
    kinds = [m["type"] for m in messages]
    if "STATE" not in kinds:
        return ["no STATE at all"]
    first = kinds.index("STATE")
    problems = []
    if "RECORD" in kinds and kinds.index("RECORD") < first:
        problems.append(f"RECORD on line {kinds.index('RECORD') + 1} before the first STATE")
    value = messages[first]["value"]
    bookmarks = value.get("bookmarks") or {}
    if set(bookmarks) < set(STREAMS):
        problems.append(f"the first STATE lacks streams: {sorted(set(STREAMS) - set(bookmarks))}")
    before = (input_state or {}).get("bookmarks") or {}
    for stream in STREAMS:
        was = (before.get(stream) or {}).get("replication_key_value")
        now = (bookmarks.get(stream) or {}).get("replication_key_value")
        if now != was:
            problems.append(f"the first STATE moves {stream}: {was} -> {now}")
    return problems


@pytest.mark.parametrize("workers", [1, 4])
def test_a_run_without_state_writes_an_unmoved_first_state_before_any_record(
    emulator_factory, workers: int
) -> None:
    emu = emulator_factory(records_per_entity=600)
    config = config_for(emu, page_size=50, max_parallel_streams=workers, semantics_probe=False)
    messages = run_tap(config, streams=STREAMS).messages
    assert first_state_problems(messages, None) == []
    assert premature_states(messages) == []


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("lookback", [0, 600])
def test_a_resumed_run_writes_no_state_ahead_of_its_records(
    emulator_factory, workers: int, lookback: int
) -> None:
    emu = emulator_factory(records_per_entity=600)
    config = config_for(emu, page_size=50, max_parallel_streams=workers, semantics_probe=False,
                        lookback_minutes=lookback)
    first = run_tap(config, streams=STREAMS[:2])  # payment has no bookmark yet
    state = first.last_state
    for stream in STREAMS:
        emu.churn(stream, updates=40, inserts=40)
    messages = run_tap(config, state=state, streams=STREAMS).messages
    assert first_state_problems(messages, state) == []
    assert premature_states(messages, state) == []


def test_the_checker_sees_a_state_ahead_of_its_page() -> None:
    """The rule above can fail: a STATE written before its page's records is reported."""

    def record(cid: str, ts: str) -> dict[str, t.Any]:
        return {"type": "RECORD", "stream": "order", "record": {"canonical_id": cid, "updated_at": ts}}

    state = {"type": "STATE", "value": {"bookmarks": {"order": {
        "replication_key_value": "2026-01-01T00:00:02.000Z",
        SEEN_KEY: {"updated_at": "2026-01-01T00:00:02.000Z", "ids": ["b"]}}}}}
    ok = [record("a", "2026-01-01T00:00:01.000Z"), record("b", "2026-01-01T00:00:02.000Z"), state,
          record("c", "2026-01-01T00:00:02.000Z"), record("d", "2026-01-01T00:00:03.000Z")]
    assert premature_states(ok) == []
    late = [record("a", "2026-01-01T00:00:01.000Z"), state, record("b", "2026-01-01T00:00:02.000Z")]
    assert premature_states(late) == [(
        "line 3: order b at 2026-01-01T00:00:02.000Z written after a STATE with bookmark "
        "2026-01-01T00:00:02.000Z"
    )]
    assert first_state_problems([record("a", "2026-01-01T00:00:01.000Z"), state], None)


# The same through the real target-duckdb: a STATE it confirms never covers a row it has not loaded

TARGET = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "target-duckdb"


def flush_points(messages: list[dict], batch_rows: int) -> list[int]:
    """The lines after which target-duckdb flushes a stream's full batch (and confirms STATE):
    when a stream's distinct keys since its last flush reach `batch_rows`."""
    pending: dict[str, set[str]] = {}
    points = []
    for index, message in enumerate(messages):
        if message["type"] == "RECORD":
            keys = pending.setdefault(message["stream"], set())
            keys.add(message["record"]["canonical_id"])
            if len(keys) >= batch_rows:
                keys.clear()
                points.append(index)
    return points


def confirmed_then_killed(messages: list[dict], workdir: Path, batch_rows: int) -> tuple[dict, dict]:
    """Feed target-duckdb the lines up to its first flush, read the STATE it confirms, SIGKILL
    it there (it waits for more input, so nothing else is loaded) and read what it loaded."""
    workdir.mkdir()
    config = {"filepath": str(workdir / "w.duckdb"), "default_target_schema": "apixx",
              "batch_size_rows": batch_rows}
    (workdir / "config.json").write_text(json.dumps(config))
    cut = flush_points(messages, batch_rows)[0]
    with subprocess.Popen([str(TARGET), "--config", str(workdir / "config.json")], text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, start_new_session=True) as target:
        assert target.stdin and target.stdout
        try:
            target.stdin.write("".join(json.dumps(m) + "\n" for m in messages[: cut + 1]))
            target.stdin.flush()
            confirmed = json.loads(target.stdout.readline())
        finally:
            os.killpg(target.pid, signal.SIGKILL)
    con = duckdb.connect(str(workdir / "w.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'apixx'").fetchall()]
        loaded = {s: {r[0] for r in con.execute(f'SELECT canonical_id FROM apixx."{s}"').fetchall()}
                  for s in tables}
    finally:
        con.close()
    return confirmed, loaded


@pytest.mark.e2e
@pytest.mark.skipif(not TARGET.exists(), reason=str(meltano_available() or f"{TARGET} is missing"))
@pytest.mark.parametrize("workers", [1, 4])
def test_target_duckdb_confirms_no_page_it_has_not_loaded(emulator_factory, tmp_path, workers) -> None:
    """A first sync (no state) into target-duckdb, killed right after its first confirmed STATE:
    every record that STATE covers is in the warehouse. Sequentially, customer (100 records)
    is read before order (400); order's first flush at 300 rows confirms a STATE while
    customer's rows still wait in their batch."""
    emu = emulator_factory(records_per_entity=400, records_for=["customer=100"])
    config = config_for(emu, page_size=50, max_parallel_streams=workers, semantics_probe=False)
    messages = run_tap(config, streams=["customer", "order"]).messages
    confirmed, loaded = confirmed_then_killed(messages, tmp_path / "target", batch_rows=300)
    lost = {}
    for message in messages:
        if message["type"] == "RECORD":
            stream, record = message["stream"], message["record"]
            stamp = parse_stamp(record["updated_at"])
            assert stamp is not None
            if covers(confirmed, stream, record["canonical_id"], stamp) and \
                    record["canonical_id"] not in loaded.get(stream, set()):
                lost[stream] = lost.get(stream, 0) + 1
    marks = {s: b.get("replication_key_value") for s, b in confirmed["bookmarks"].items()}
    assert lost == {}, f"target-duckdb confirmed {marks}, yet these records are not loaded"
