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
    assert len(rows) == 9  # header, tap, baseline, meltano, 2 x postgres, dlt, 2 x rate budget
    results = json.loads(out.read_text())
    figures = results["figures"]
    assert figures["table"] in proc.stdout
    records = results["size"]["records"]
    assert figures["tap"]["records"] == figures["baseline"]["records"] == records
    if "skipped" not in figures["meltano"]:
        assert figures["meltano"]["records"] == records  # every record reached DuckDB
    if "skipped" not in figures["postgres"]:  # and PostgreSQL, with either target setting
        assert figures["postgres"]["default"]["records"] == figures["postgres"]["ours"]["records"] == records
    assert {run["parallel"] for run in figures["rate"].values()} == {1, 4}
    assert all(run["http_429"] == 0 for run in figures["rate"].values())
