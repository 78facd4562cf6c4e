"""The tap against servers that page differently from our emulator (tests/helpers/fake_apixx.py):
`updated_since` inclusive or exclusive, ms or µs stamps, `Z` or `+00:00`, any cursor."""

from __future__ import annotations

import itertools
import logging
import typing as t

import pytest

from tests.helpers.fake_apixx import FakeApixx, parse_us, tie_timeline
from tests.helpers.tap import latest, run_cli, run_tap

if t.TYPE_CHECKING:
    from pathlib import Path

SERVERS = [
    pytest.param(since, precision, suffix, cursor, id=f"{since}-{precision}-{suffix}-{cursor}")
    for (since, precision, suffix), cursor in zip(
        itertools.product(("exclusive", "inclusive"), ("ms", "us"), ("Z", "+00:00")),
        itertools.cycle(("exclusive", "inclusive", "opaque")),
    )
]


def compare(records: list[dict], truth: dict[str, str]) -> dict[str, int]:
    """Lost, stale and duplicated records of one run against the server's truth."""
    got = latest(records)
    pairs = [(r["canonical_id"], r["updated_at"]) for r in records]
    return {"lost": len(truth.keys() - got.keys()),
            "stale": sum(1 for cid, ts in got.items() if cid in truth and parse_us(ts) < parse_us(truth[cid])),
            "dups": len(pairs) - len(set(pairs))}


CLEAN = {"lost": 0, "stale": 0, "dups": 0}


@pytest.mark.parametrize(("since", "precision", "suffix", "cursor"), SERVERS)
@pytest.mark.parametrize("page_size", [10, 100])
def test_every_reading_of_updated_since_loses_nothing(since, precision, suffix, cursor, page_size, caplog):
    with FakeApixx(since_mode=since, precision=precision, suffix=suffix, cursor_mode=cursor,
                   shuffle_ties=page_size == 10) as fake:
        fake.add("order", tie_timeline(1200, seed=page_size, big=150, unit_us=fake.unit_us))
        with caplog.at_level(logging.INFO):
            result = run_tap(fake.config(page_size=page_size), streams=["order"])
        assert compare(result.records("order"), fake.truth("order")) == CLEAN
        assert len(result.ids("order")) == 1200
        sent = [r["params"] for r in fake.list_requests("order")]
        assert all("cursor" not in p for p in sent)  # the cursor is never trusted
        digits = 3 if precision == "ms" else 6  # updated_since at the server's own precision
        assert all(len(p["updated_since"].split(".")[1]) == digits + 1 for p in sent[1:])
        assert any(p["limit"] == "1000" for p in sent)  # the 150-record group was read whole
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Finished 'order'")]
    assert len(summary) == 1 and " page boundaries, " in summary[0]


@pytest.mark.parametrize("since", ["exclusive", "inclusive"])
def test_incremental_run_after_tied_churn_emits_exactly_the_changes(since):
    with FakeApixx(since_mode=since, precision="us", suffix="+00:00") as fake:
        ids = fake.add("order", tie_timeline(300, seed=3, unit_us=1))
        config = fake.config(page_size=25)
        first = run_tap(config, streams=["order"])
        assert compare(first.records("order"), fake.truth("order")) == CLEAN
        assert run_tap(config, first.last_state, ["order"]).ids("order") == []

        moved = ids[::20]  # 15 records updated at one instant with 12 new ones: the bookmark's tie
        at = fake.update("order", moved)
        new = fake.add("order", [at] * 12)
        second = run_tap(config, first.last_state, ["order"])
        assert sorted(second.ids("order")) == sorted(moved + new)
        assert run_tap(config, second.last_state, ["order"]).ids("order") == []
        everything = first.records("order") + second.records("order")
        assert compare(everything, fake.truth("order"))["lost"] == 0
        assert latest(everything) == fake.truth("order")


@pytest.mark.parametrize("since", ["exclusive", "inclusive"])
def test_resume_from_any_state_message_loses_nothing(since):
    with FakeApixx(since_mode=since, precision="ms") as fake:
        fake.add("order", tie_timeline(200, seed=4, big=30, unit_us=1000))
        config = fake.config(page_size=20)
        full = run_tap(config, streams=["order"])
        states = [i for i, m in enumerate(full.messages) if m["type"] == "STATE"]
        assert len(states) >= 6  # one per page; a widened page reads on to its 1000 records
        for position in states:
            before = [m["record"] for m in full.messages[:position] if m["type"] == "RECORD"]
            resumed = run_tap(config, full.messages[position]["value"], ["order"])
            assert compare(before + resumed.records("order"), fake.truth("order")) == CLEAN, position


def test_records_updated_or_deleted_at_the_boundary_mid_sync_are_explained_by_lookups(caplog):
    with FakeApixx(since_mode="exclusive") as fake:
        stamps = [1_800_000_000_000_000 + i * 1000 for i in range(50)]
        fake.add("order", stamps[:18] + [stamps[18]] * 4 + stamps[19:])  # a tie across page 1's end
        group = [cid for cid, us in fake.tables["order"].items() if us == stamps[18]]

        def churn(list_requests: int) -> None:
            if list_requests == 1:  # after page 1 (ends inside the tie): one moves, one goes
                fake.update("order", group[:1])
                fake.delete("order", group[1:2])

        fake.after_list = churn
        with caplog.at_level(logging.INFO):
            result = run_tap(fake.config(page_size=20), streams=["order"])
        assert latest(result.records("order")) == fake.truth("order") | {group[1]: fake.stamp(stamps[18])}
        gets = [r for r in fake.requests if r["path"].count("/") == 2]
        assert sorted(r["path"].split("/")[2] for r in gets) == sorted(group[:2])
    assert "2 id checks" in "".join(r.getMessage() for r in caplog.records)


def test_a_server_that_skips_records_at_a_boundary_stops_the_sync_with_one_line(tmp_path: Path):
    with FakeApixx(since_mode="inclusive") as fake:
        stamps = [1_800_000_000_000_000 + i * 1000 for i in range(60)]
        fake.add("order", stamps[:19] + [stamps[19]] * 3 + stamps[20:])
        tie = sorted(cid for cid, us in fake.tables["order"].items() if us == stamps[19])

        def skip(list_requests: int) -> None:
            if list_requests == 1:  # from page 2 on, the list skips a record it showed on page 1
                fake.hide.add(tie[0])

        fake.after_list = skip
        proc = run_cli(tmp_path, fake.config(page_size=20), streams=["order"])
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tap-apixx: error:")]
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr[-2000:]
    page2 = fake.list_requests("order")[1]["request_id"]
    assert lines[0].startswith("tap-apixx: error: order: records could have been skipped: 1 of the ")
    assert fake.stamp(stamps[19]) in lines[0] and f"request_id={page2}" in lines[0]


def test_a_server_that_ignores_updated_since_stops_the_sync(tmp_path: Path):
    with FakeApixx(ignore_since=True) as fake:
        fake.add("order", tie_timeline(50, seed=5))
        proc = run_cli(tmp_path, fake.config(page_size=20), streams=["order"])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("tap-apixx: error: order: asked updated_since=")
