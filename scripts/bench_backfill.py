"""Benchmark the backfill recipe: N keys in N windows against one key, on the emulator.

The emulator's per-key read limit is lowered (control plane `POST /_emulator/limits`) and its
rate window shortened, so that the per-key ceiling, not this machine, bounds each job within
a few minutes. Both runs go through scripts/backfill.py (`meltano run` per window, DuckDB files
merged afterwards), so the figures include Meltano's start-up cost of every job. Prints the
time of each and the ratio, twice: wall clock (each job's Meltano and tap start-up included, a
fixed cost per job whatever its size) and the sync phase alone (from the first stream's start
to the last stream's end, across the windows), which is what the key's budget bounds. N keys
should give close to N times one key's throughput.

    .venv/bin/python scripts/bench_backfill.py --keys 4
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apixx_emulator.testing import EmulatorProcess


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=4, help="keys (and windows) of the parallel run")
    p.add_argument("--records-per-entity", type=int, default=2000)
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--read-limit", type=int, default=20, help="GET requests per key per rate window")
    p.add_argument("--window-seconds", type=float, default=10.0, help="the emulator's rate window")
    p.add_argument("--keep", help="keep the runs' logs and files in this folder")
    p.add_argument("--only", choices=["one", "many"], help="run one side only (diagnosis)")
    return p.parse_args(argv)


def run_backfill(
    emu: EmulatorProcess, keys: list[str], work: Path, label: str, page_size: int, span: tuple[str, str]
) -> tuple[float, float]:
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{work / label}.db", "MELTANO_ENVIRONMENT": "emulator",
           "TAP_APIXX_DATA_URL": emu.data_url, "TAP_APIXX_API_URL": emu.api_url,
           "TAP_APIXX_PAGE_SIZE": str(page_size), "TAP_APIXX_LOOKBACK_MINUTES": "0",
           "TARGET_DUCKDB_FILEPATH": str(work / f"{label}.duckdb"), "APIXX_BACKFILL_KEYS": " ".join(keys)}
    argv = [sys.executable, str(ROOT / "scripts" / "backfill.py"), "--start", span[0], "--end", span[1],
            "--windows", str(len(keys)), "--loader", "target-duckdb", "--name", f"bench-{label}",
            "--workdir", str(work / label)]
    proc = subprocess.run(argv, cwd=ROOT, env=env, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench_backfill: the {label} backfill failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    wall = float(re.search(r"all windows loaded in ([\d.]+) s", proc.stdout).group(1))
    return wall, sync_phase(work / label)


def sync_phase(folder: Path) -> float:
    """Seconds from the first stream's start to the last stream's end, over every window's log."""
    starts, ends = [], []
    for log in folder.glob("w*.log"):
        lines = log.read_text().splitlines()
        starts += [stamp(x) for x in lines if "Beginning sync of" in x][:1]
        ends += [stamp(x) for x in lines if "tap-apixx" in x and "Finished '" in x][-1:]
    return (max(ends) - min(starts)).total_seconds()


def stamp(line: str) -> datetime:
    return datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    keys = [f"apx_live_acme_bench{i:02d}" for i in range(args.keys)]
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        keys_file = work / "keys.json"
        keys_file.write_text(json.dumps([{"key": k, "tenant": "acme", "scopes": ["data:read"]} for k in keys]))
        flags = {"records_per_entity": args.records_per_entity, "keys_file": str(keys_file),
                 "rate_window_seconds": args.window_seconds}
        with EmulatorProcess(**flags) as emu:
            emu.control("POST", "/_emulator/limits", json={"read": args.read_limit})
            truth = [r["updated_at"] for e in _entities() for r in emu.ground_truth(e)]
            records, span = len(truth), history_span(truth)
            one = many = (float("nan"), float("nan"))
            if args.only != "many":
                one = run_backfill(emu, keys[:1], work, "one-key", args.page_size, span)
            emu.control("POST", "/_emulator/limits", json={"read": args.read_limit})  # fresh windows
            if args.only != "one":
                many = run_backfill(emu, keys, work, f"{args.keys}-keys", args.page_size, span)
    ceiling = args.read_limit / args.window_seconds * args.page_size
    print(f"per-key limit: {args.read_limit} reads per {args.window_seconds:g} s, page {args.page_size} "
          f"(ceiling ~{ceiling:.0f} records/s per key); {records} records in 15 streams")
    print("                      wall clock (records/s)   sync phase (records/s)")
    for label, (wall, phase) in (("1 key, 1 window", one), (f"{args.keys} keys, {args.keys} windows", many)):
        print(f"{label:<20} {wall:8.1f} s ({records / wall:6.0f})   {phase:8.1f} s ({records / phase:6.0f})")
    print(f"ratio with {args.keys} keys (ideal {args.keys}x): wall clock {one[0] / many[0]:.2f}x, "
          f"sync phase {one[1] / many[1]:.2f}x")
    return 0


def history_span(stamps: list[str]) -> tuple[str, str]:
    """[first record's whole second, one second after the last record): every record, once."""
    first = datetime.fromisoformat(min(stamps).replace("Z", "+00:00")).replace(microsecond=0)
    last = datetime.fromisoformat(max(stamps).replace("Z", "+00:00")).replace(microsecond=0)
    return first.isoformat().replace("+00:00", "Z"), (last + timedelta(seconds=1)).isoformat().replace(
        "+00:00", "Z"
    )


def _entities() -> list[str]:
    from apixx_emulator.entities import ENTITY_NAMES

    return list(ENTITY_NAMES)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
