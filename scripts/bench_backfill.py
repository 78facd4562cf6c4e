"""Benchmark the backfill recipe: N keys in N windows against one key, on the emulator.

The emulator's per-key read limit is lowered (control plane `POST /_emulator/limits`) and its
rate window shortened, so that the per-key ceiling, not this machine, bounds each job within
a few minutes. Both runs go through scripts/backfill.py (`meltano run` per window, DuckDB files
merged afterwards), so the figures include Meltano's start-up cost of every job. Prints the
time of each and the ratio; N keys should give close to N times one key's throughput.

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apixx_emulator.testing import EmulatorProcess

START, END = "2025-07-01T00:00:00Z", "2026-07-02T00:00:00Z"  # the emulator's generated year


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=4, help="keys (and windows) of the parallel run")
    p.add_argument("--records-per-entity", type=int, default=1000)
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--read-limit", type=int, default=20, help="GET requests per key per rate window")
    p.add_argument("--window-seconds", type=float, default=10.0, help="the emulator's rate window")
    return p.parse_args(argv)


def run_backfill(emu: EmulatorProcess, keys: list[str], work: Path, label: str, page_size: int) -> float:
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{work / label}.db", "MELTANO_ENVIRONMENT": "emulator",
           "TAP_APIXX_DATA_URL": emu.data_url, "TAP_APIXX_API_URL": emu.api_url,
           "TAP_APIXX_PAGE_SIZE": str(page_size), "TAP_APIXX_LOOKBACK_MINUTES": "0",
           "TARGET_DUCKDB_FILEPATH": str(work / f"{label}.duckdb"), "APIXX_BACKFILL_KEYS": " ".join(keys)}
    argv = [sys.executable, str(ROOT / "scripts" / "backfill.py"), "--start", START, "--end", END,
            "--windows", str(len(keys)), "--loader", "target-duckdb", "--name", f"bench-{label}",
            "--workdir", str(work / label)]
    proc = subprocess.run(argv, cwd=ROOT, env=env, text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"bench_backfill: the {label} backfill failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return float(re.search(r"all windows loaded in ([\d.]+) s", proc.stdout).group(1))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    keys = [f"apx_live_acme_bench{i:02d}" for i in range(args.keys)]
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        work = Path(tmp)
        keys_file = work / "keys.json"
        keys_file.write_text(json.dumps([{"key": k, "tenant": "acme", "scopes": ["data:read"]} for k in keys]))
        flags = {"records_per_entity": args.records_per_entity, "keys_file": str(keys_file),
                 "rate_window_seconds": args.window_seconds}
        with EmulatorProcess(**flags) as emu:
            emu.control("POST", "/_emulator/limits", json={"read": args.read_limit})
            records = sum(len(emu.ground_truth(e)) for e in _entities())
            one = run_backfill(emu, keys[:1], work, "one-key", args.page_size)
            emu.control("POST", "/_emulator/limits", json={"read": args.read_limit})  # fresh windows
            many = run_backfill(emu, keys, work, f"{args.keys}-keys", args.page_size)
    ceiling = args.read_limit / args.window_seconds * args.page_size
    print(f"per-key limit: {args.read_limit} reads per {args.window_seconds:g} s, page {args.page_size} "
          f"(ceiling ~{ceiling:.0f} records/s per key); {records} records in 15 streams")
    print(f"1 key, 1 window:    {one:6.1f} s  {records / one:7.0f} records/s")
    print(f"{args.keys} keys, {args.keys} windows: {many:6.1f} s  {records / many:7.0f} records/s")
    print(f"ratio: {one / many:.2f}x with {args.keys} keys (ideal {args.keys}x; each `meltano run` also "
          "pays Meltano's start-up, the same for one window as for N)")
    return 0


def _entities() -> list[str]:
    from apixx_emulator.entities import ENTITY_NAMES

    return list(ENTITY_NAMES)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
