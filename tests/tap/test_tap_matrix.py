"""The tap against every paging semantics the emulator can take: cursor exclusive/inclusive x
updated_since inclusive/exclusive x ms/µs stamps x page_size 100/1000, compared with the
ground truth; an incremental run after tied churn; kill-and-resume under exclusive `updated_since`.

One emulator for the module, switched between modes by the control plane's reset.
"""

from __future__ import annotations

import itertools
import logging
import re
import typing as t

import pytest

from apixx_emulator.testing import EmulatorProcess
from apixx_emulator.timestamps import parse_us
from tap_apixx.bookmarks import format_stamp
from tests.helpers import ROOT
from tests.helpers.resilience import TapProcess
from tests.helpers.tap import config_for, list_requests, run_tap, tie_sizes, update_json_file

if t.TYPE_CHECKING:
    from collections.abc import Iterator

ENTITY = "order"
RECORDS = 2600  # pages of 1000 cross two boundaries; one generated bulk-import group of 101+
FIGURES = ROOT / "output" / "paging-matrix.json"
SUMMARY = re.compile(r"Finished 'order': (\d+) records, (\d+) requests.*; (\d+) page boundaries, "
                     r"(\d+) extra requests .*?(\d+) id checks\), (\d+) records re-read")
MODES = list(itertools.product(("exclusive", "inclusive"), ("inclusive", "exclusive"), ("ms", "us")))


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(records_per_entity=50, records_for=f"{ENTITY}={RECORDS}", read_limit=10**6) as emu:
        yield emu
    if FIGURES.exists():
        print(f"\npaging matrix figures: {FIGURES}")


def switch(emu: EmulatorProcess, cursor: str, since: str, precision: str, page_sizes: t.Iterable[int]) -> None:
    """Reset to the mode, then add ties cut by each page size's first page boundary."""
    emu.control("POST", "/_emulator/reset", json={"cursor_mode": cursor, "since_mode": since,
                                                  "timestamp_precision": precision})
    for size in page_sizes:
        at = emu.ground_truth(ENTITY)[size - 1]["updated_at"]  # the last record of page 1
        emu.churn(ENTITY, inserts=4, tie=True, at=at)
    emu.clear_stats()


def compare(records: list[dict], truth: list[dict]) -> dict[str, int]:
    """Lost, stale and duplicated records of a run against the ground truth."""
    expected = {r["canonical_id"]: parse_us(r["updated_at"]) for r in truth}
    got: dict[str, int] = {}
    for record in records:
        cid, us = record["canonical_id"], parse_us(record["updated_at"])
        got[cid] = max(us, got.get(cid, us))
    pairs = [(r["canonical_id"], parse_us(r["updated_at"])) for r in records]
    return {"lost": len(expected.keys() - got.keys()),
            "stale": sum(1 for cid, us in got.items() if cid in expected and us < expected[cid]),
            "dups": len(pairs) - len(set(pairs))}


CLEAN = {"lost": 0, "stale": 0, "dups": 0}


def record_figures(key: str, figures: dict[str, t.Any]) -> None:
    update_json_file(FIGURES, lambda data: data.update({key: figures}))


@pytest.mark.parametrize(("cursor", "since", "precision"), MODES, ids=["-".join(m) for m in MODES])
def test_full_and_incremental_syncs_match_the_ground_truth(emu, cursor, since, precision, caplog):
    switch(emu, cursor, since, precision, (100, 1000))
    truth = emu.ground_truth(ENTITY)
    assert tie_sizes(truth)[0] > 100
    for size in (100, 1000):  # the group holding page 1's last record runs past it
        assert truth[size]["updated_at"] == truth[size - 1]["updated_at"]
    for page_size in (100, 1000):
        caplog.clear()
        config = config_for(emu, page_size=page_size)
        with caplog.at_level(logging.INFO):
            full = run_tap(config, streams=[ENTITY])
        counts = compare(full.records(ENTITY), truth)
        costs = [int(n) for n in SUMMARY.search(caplog.text).groups()]  # type: ignore[union-attr]
        record_figures(f"{cursor}-cursor/{since}-since/{precision}/page_size={page_size}", {
            **counts, "records": costs[0], "requests": costs[1], "boundaries": costs[2],
            "extra_requests": costs[3], "id_checks": costs[4], "reread": costs[5]})
        assert counts == CLEAN
        assert len(full.ids(ENTITY)) == len(truth)
        assert costs[4] == 0  # nothing changed during the sync: no id needed checking
        assert all("cursor" not in r["params"] for r in list_requests(emu, ENTITY))
    incremental_after_tied_churn(emu, config_for(emu, page_size=100), full.last_state)


def incremental_after_tied_churn(emu: EmulatorProcess, config: dict, state: dict) -> None:
    """Exactly the changes, then nothing; a late insert at the bookmark's own instant too."""
    tied = emu.churn(ENTITY, updates=6, inserts=6, tie=True)
    second = run_tap(config, state, [ENTITY])
    assert sorted(second.ids(ENTITY)) == sorted(tied["updated"] + tied["inserted"])
    assert run_tap(config, second.last_state, [ENTITY]).ids(ENTITY) == []
    bookmark = second.last_state["bookmarks"][ENTITY]["replication_key_value"]
    late = emu.churn(ENTITY, inserts=3, tie=True, at=bookmark)  # arrives at the bookmark instant
    third = run_tap(config, second.last_state, [ENTITY])
    assert sorted(third.ids(ENTITY)) == sorted(late["inserted"])
    window_start = parse_us(bookmark) - 5 * 60 * 10**6
    a_minute_before = format_stamp((parse_us(bookmark) - 60 * 10**6) * 1000, 6)
    emu.churn(ENTITY, updates=2, at=a_minute_before)  # late changes, inside the window
    looked_back = run_tap({**config, "lookback_minutes": 5}, third.last_state, [ENTITY])
    seen = set(third.last_state["bookmarks"][ENTITY]["seen_at_bookmark"]["ids"])
    window = {r["canonical_id"] for r in emu.ground_truth(ENTITY) if parse_us(r["updated_at"]) >= window_start
              and not (r["updated_at"] == bookmark and r["canonical_id"] in seen)}
    assert len(window) >= 2
    assert sorted(looked_back.ids(ENTITY)) == sorted(window)  # the lookback window, nothing else


KILL_MODES = [("exclusive", "exclusive", "ms"), ("inclusive", "exclusive", "us")]


@pytest.mark.parametrize(("cursor", "since", "precision"), KILL_MODES, ids=["-".join(m) for m in KILL_MODES])
def test_killed_under_exclusive_since_resumes_without_loss(emu, cursor, since, precision, tmp_path):
    switch(emu, cursor, since, precision, (100,))
    emu.faults(latency_ms=10)  # slow enough that every kill lands mid-sync
    truth = emu.ground_truth(ENTITY)
    config = config_for(emu, page_size=100)
    records: list[dict] = []
    distinct: set[str] = set()
    state: dict | None = None
    kills = [700, 1900]  # distinct records read before each SIGKILL
    for run in range(len(kills) + 1):
        with TapProcess(tmp_path / f"run{run}", config, [ENTITY], state) as tap:
            for message in tap.messages():
                if message["type"] == "STATE":
                    state = message["value"]
                elif message["type"] == "RECORD":
                    records.append(message["record"])
                    distinct.add(message["record"]["canonical_id"])
                    if run < len(kills) and len(distinct) >= kills[run]:
                        assert tap.kill()
                        break
        if run == len(kills):
            assert tap.proc.returncode == 0, tap.stderr_text[-2000:]
    emu.faults()
    counts = compare(records, truth)
    assert counts["lost"] == 0 and counts["stale"] == 0
    assert counts["dups"] <= len(kills) * 1000  # at worst a page re-read per kill
