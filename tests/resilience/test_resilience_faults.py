"""Fault soak: a full sync with every fault kind on at once equals the ground truth."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest

from apixx_emulator.testing import EmulatorProcess
from tap_apixx.streams import CANONICAL_ENTITIES
from tests.helpers.resilience import (
    no_secrets_anywhere,  # noqa: F401  (autouse: every test here is scanned for the key)
    profiles,
    record_figures,
    run_cli_scanned,
    summaries,
    tap_argv,
)
from tests.helpers.tap import config_for, parse_messages, truth

ALL_FAULTS = {"error_500_rate": 0.04, "html_502_rate": 0.04, "rate_429_rate": 0.04,
              "reset_rate": 0.03, "truncated_rate": 0.03, "latency_ms": 15, "jitter_ms": 10,
              "retry_after": 1, "seed": 2026}


@dataclass(frozen=True)
class FaultProfile:
    name: str
    records_per_entity: int
    page_size: int


CI = FaultProfile("ci", 299, 30)  # under 300: no bulk-import tie group, so pages stay small
SOAK = FaultProfile("soak", 2000, 40)


def sync(tmp_path, emu: EmulatorProcess, profile: FaultProfile, label: str) -> dict:
    """One full CLI sync of all 15 streams; its records, summaries, server log and duration."""
    emu.clear_stats()
    argv = tap_argv(tmp_path / label, config_for(emu, page_size=profile.page_size),
                    streams=list(CANONICAL_ENTITIES))
    started = time.perf_counter()
    proc = run_cli_scanned(argv, timeout=1800)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [m for m in parse_messages(proc.stdout) if m["type"] == "RECORD"]
    stats = emu.stats()
    return {"records": records, "summaries": summaries(proc.stderr), "seconds": seconds,
            "statuses": Counter(r["status"] for r in stats["requests"]),
            "injected": stats["faults"]["injected"]}


def latest_by_stream(records: list[dict]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {}
    for message in records:
        record, known = message["record"], result.setdefault(message["stream"], {})
        known[record["canonical_id"]] = max(known.get(record["canonical_id"], ""),
                                            record["updated_at"])
    return result


@pytest.mark.parametrize("profile", profiles(ci=CI, soak=SOAK))
def test_full_sync_under_every_fault_at_once_equals_ground_truth(emulator_factory, profile,
                                                                  tmp_path):
    emu = emulator_factory(records_per_entity=profile.records_per_entity)
    clean = sync(tmp_path, emu, profile, "clean")
    emu.faults(**ALL_FAULTS)
    faulty = sync(tmp_path, emu, profile, "faulty")
    emu.faults()

    assert all(n > 0 for n in faulty["injected"].values()), faulty["injected"]
    got = latest_by_stream(faulty["records"])
    for entity in CANONICAL_ENTITIES:
        assert got.get(entity) == truth(emu, entity), f"{entity}: not the ground truth"
    sums = faulty["summaries"]
    assert set(sums) == set(CANONICAL_ENTITIES)
    retries = sum(s["retries"] for s in sums.values())
    throttled = sum(s["throttled"] for s in sums.values())
    failed = sum(faulty["injected"].values())
    assert retries + throttled == failed  # every injected fault cost exactly one retry
    assert throttled == faulty["injected"]["rate_429"]
    record_figures(profile.name, "fault_soak", {
        "faults": {k: v for k, v in ALL_FAULTS.items() if k != "seed"},
        "injected": faulty["injected"], "records": len(faulty["records"]), "records_lost": 0,
        "requests_clean": sum(clean["statuses"].values()),
        "requests_faulty": sum(faulty["statuses"].values()),
        "retries": retries, "waited_429": throttled,
        "seconds_clean": round(clean["seconds"], 1), "seconds_faulty": round(faulty["seconds"], 1),
        "time_cost_x": round(faulty["seconds"] / clean["seconds"], 1),
    })
