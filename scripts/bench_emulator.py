"""Emulator at scale: start-up time, resident memory and page latency with one million records."""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apixx_emulator.entities import ENTITY_NAMES
from apixx_emulator.testing import EmulatorProcess

GOALS = {"ready_s": 30.0, "rss_gib": 3.0, "page_median_ms": 30.0}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(total_records: int, pages: int) -> dict[str, float]:
    per_entity = total_records // len(ENTITY_NAMES)
    started = time.perf_counter()
    with EmulatorProcess(records_per_entity=per_entity, read_limit=10**9, ready_timeout=600) as emu:
        ready = time.perf_counter() - started
        truth_sizes = {e: per_entity for e in ENTITY_NAMES}
        rng = random.Random(1)
        timings = []
        for _ in range(pages):
            entity = rng.choice(ENTITY_NAMES)
            body = emu.get(f"/api/public/data/{entity}", params={"limit": 1}).json()
            since = body["data"][0]["updated_at"] if rng.random() < 0.2 else None
            t0 = time.perf_counter()
            response = emu.get(f"/api/public/data/{entity}", params={"limit": 1000, **({"updated_since": since} if since else {})})
            response.json()
            timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200 and response.json()["count"] == min(1000, truth_sizes[entity])
        return {"records": per_entity * len(ENTITY_NAMES), "ready_s": ready, "rss_gib": rss_bytes(emu.proc.pid) / 2**30,
                "page_median_ms": statistics.median(timings), "page_p95_ms": statistics.quantiles(timings, n=20)[18]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000, help="records in one tenant (default 1,000,000)")
    parser.add_argument("--pages", type=int, default=200, help="1000-record pages to time (default 200)")
    args = parser.parse_args()
    result = measure(args.records, args.pages)
    print(f"\nEmulator with {result['records']:,} records in one tenant (goal in brackets)")
    print(f"  ready after         {result['ready_s']:8.1f} s     [< {GOALS['ready_s']:.0f} s]")
    print(f"  resident memory     {result['rss_gib']:8.2f} GiB   [< {GOALS['rss_gib']:.0f} GiB]")
    print(f"  1000-record page    {result['page_median_ms']:8.1f} ms    median [< {GOALS['page_median_ms']:.0f} ms], "
          f"p95 {result['page_p95_ms']:.1f} ms (client-side, includes parsing)")


if __name__ == "__main__":
    main()
