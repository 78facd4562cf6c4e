"""What the benchmark relies on: the emulator's per-entity record counts, and a quick run of it."""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t

import pytest

from apixx_emulator.cli import parser
from apixx_emulator.entities import ENTITY_NAMES
from apixx_emulator.testing import EmulatorProcess

if t.TYPE_CHECKING:
    from pathlib import Path

BENCH = [sys.executable, "scripts/bench.py"]


def test_records_for_overrides_the_count_of_one_entity_only() -> None:
    with EmulatorProcess(records_per_entity=40, records_for=["order=1234", "refund=7"]) as emu:
        counts = {entity: len(emu.ground_truth(entity)) for entity in ENTITY_NAMES}
        page = emu.get("/api/public/data/order", params={"limit": 1000}).json()
    assert counts.pop("order") == 1234
    assert counts.pop("refund") == 7
    assert set(counts.values()) == {40}
    assert page["count"] == 1000 and page["next_cursor"] is not None


@pytest.mark.parametrize("value", ["orders=5", "order=0", "order", "order=x"])
def test_records_for_rejects_what_it_cannot_use(value: str) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["--records-for", value])


def test_quick_benchmark_prints_the_table_and_writes_the_figures(tmp_path: Path) -> None:
    """Proves `make bench` still works; its timings are printed, never asserted."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([*BENCH, "--quick", "--json", str(out)], capture_output=True, text=True,
                          timeout=900, check=False)  # a hang guard, not a timing
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == "| Measure | Result | Notes |"
    assert len(rows) == 11  # header, tap, baseline, meltano, 3 x postgres, dlt, memory, 2 x rate budget
    results = json.loads(out.read_text())
    figures = results["figures"]
    assert figures["table"] in proc.stdout
    records = results["size"]["records"]
    assert len(figures["runs"]) == 1  # --quick: one run (a full `make bench` makes three)
    for run in figures["runs"]:
        assert run["tap"]["records"] == run["baseline"]["records"] == records
        if "skipped" not in run["meltano"]:
            assert run["meltano"]["records"] == records  # every record reached DuckDB
        if "skipped" not in run["postgres"]:  # and PostgreSQL, with either target setting
            pg = run["postgres"]  # and target-postgres alone, fed the tap's output
            assert pg["default"]["records"] == pg["ours"]["records"] == pg["target_alone"]["records"] == records
    assert [m["records"] for m in figures["memory"].values()] == list(results["size"]["memory_records"])
    assert {run["parallel"] for run in figures["rate"].values()} == {1, 4}
    for run in figures["rate"].values():  # the part ran and counted; its 429s are a figure here:
        # a 3 s window on a machine running the whole suite can delay a request past the pacer's
        # margin (the pacing tests assert no 429; `make bench` measures it on a quiet machine)
        assert run["requests"] > 0 and run["full_windows"] and run["http_429"] >= 0


def test_several_runs_give_each_figure_as_its_median_and_range() -> None:
    """The table of a 3-run benchmark, from figures made up here (no process is started)."""
    sys.path.insert(0, "scripts")
    import bench

    def one(seed: int, tap: float, base: float, pg: float, dlt_rows: int) -> dict:
        return {"seed": seed,
                "tap": {"records": 1000, "records_per_s": tap, "seconds": 1000 / tap, "startup_s": 0.5,
                        "peak_memory_mib": 50.0},
                "baseline": {"records": 1000, "records_per_s": base, "peak_memory_mib": 30.0},
                "meltano": {"skipped": "not installed"},
                "postgres": {"default": {"records": 1000, "records_per_s": pg / 4, "seconds": 4000 / pg},
                             "ours": {"records": 1000, "records_per_s": pg, "seconds": 1000 / pg},
                             "speedup": 4.0,
                             "target_alone": {"records": 1000, "records_per_s": 2 * pg, "seconds": 500 / pg}},
                "dlt": {"records": dlt_rows, "records_per_s": 100.0}}

    size = bench.Size(records=1000)
    res = bench.Results(size={}, started="", figures={"runs": [
        one(42, 300.0, 200.0, 80.0, 990), one(43, 100.0, 100.0, 120.0, 1000), one(44, 200.0, 100.0, 100.0, 975),
    ], "rate": {}, "memory": {}})
    text = bench.table(res, size)
    assert "200 records/s (100-300 over 3 runs)" in text  # the tap: median, then the range
    assert "tap / baseline = **1.50 (1.00-2.00 over 3 runs)**" in text  # each run's own ratio
    assert "100 records/s end to end (80-120 over 3 runs)" in text  # PostgreSQL, ours
    assert "| target-postgres alone, our settings, reading the tap's output from a file | 200 records/s (160-240" in text
    assert "dlt lost **10**, **0**, **25** of 1,000 rows" in text and "seeds 42, 43, 44" in text
    assert res.figures["tap_over_baseline"] == 1.5
