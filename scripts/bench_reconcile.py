"""Reconcile at scale: sweep one 100,000-record entity of the emulator under the real rate budget.

Measures the source side alone (`SweepRun`, in this process) and then the whole command
(`tap-apixx-reconcile --duckdb ...`, as a user runs it) on a DuckDB file holding the same rows:
requests, seconds, ids per second, share of the key's 600/min read budget, peak memory.
Writes output/bench-reconcile.json; docs/reconcile.md quotes a run of it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess
from tap_apixx.reconcile.sweep import SweepRun
from tap_apixx.tap import TapApixx

ENTITY = "customer"
READ_LIMIT = 600  # the documented budget: the emulator enforces it as the real service does
# the command's own peak memory (VmHWM) at exit: getrusage(RUSAGE_CHILDREN) would also count
# the pages a forked child shares with this process, which holds the whole ground truth
RUN_CLI = ("import atexit, sys\n"
           "def hwm():\n"
           "    line = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
           "    print('peak_kib', line.split()[1], file=sys.stderr)\n"
           "atexit.register(hwm)\n"
           "sys.argv[0] = 'tap-apixx-reconcile'\n"
           "from tap_apixx.reconcile.cli import main\n"
           "main()\n")


def build_warehouse(emu: EmulatorProcess, path: Path) -> int:
    """A DuckDB file as target-duckdb loads the entity (ids, updated_at), from the ground truth."""
    import duckdb

    truth = emu.ground_truth(ENTITY)
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA apixx")
    con.execute(f'CREATE TABLE apixx."{ENTITY}" (canonical_id VARCHAR, updated_at TIMESTAMP)')
    con.execute(f'INSERT INTO apixx."{ENTITY}" SELECT unnest(?), CAST(unnest(?) AS TIMESTAMP)',
                [[r["canonical_id"] for r in truth], [r["updated_at"].rstrip("Z") for r in truth]])
    con.close()
    return len(truth)


def sweep_in_process(emu: EmulatorProcess) -> dict[str, float]:
    tap = TapApixx(config={"api_key": DEFAULT_KEY, "data_url": emu.data_url, "api_url": emu.api_url})
    run = SweepRun(tap, [ENTITY], {ENTITY: None})
    sweep = run.run()[ENTITY]
    return {"ids": len(sweep.ids), "requests": sweep.requests, "seconds": round(run.seconds, 2),
            "ids_per_second": round(len(sweep.ids) / run.seconds), "throttled": sweep.throttled}


def reconcile_command(emu: EmulatorProcess, warehouse: Path) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_APIXX", "MELTANO"))}
    env.update({"TAP_APIXX_API_KEY": DEFAULT_KEY, "TAP_APIXX_DATA_URL": emu.data_url,
                "TAP_APIXX_API_URL": emu.api_url})
    command = [sys.executable, "-c", RUN_CLI, "--duckdb", str(warehouse), "--entities", ENTITY, "--json"]
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bench: reconcile exited {proc.returncode}: {proc.stderr[-2000:]}")
    body = json.loads(proc.stdout)
    peak_kib = int(re.findall(r"^peak_kib (\d+)$", proc.stderr, re.MULTILINE)[-1])
    return {"seconds": round(seconds, 2), "requests": body["requests"]["total"],
            "budget_minutes": body["requests"]["budget_minutes"],
            "budget_share": body["requests"]["budget_share"], "drift": body["drift"],
            "peak_rss_mib": round(peak_kib / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000, help=f"records of {ENTITY} (default 100,000)")
    args = parser.parse_args()
    out = ROOT / "output"
    out.mkdir(exist_ok=True)
    print(f"Starting the emulator with {args.records:,} {ENTITY} records, {READ_LIMIT} reads/min ...", flush=True)
    with EmulatorProcess(records_per_entity=10, records_for=[f"{ENTITY}={args.records}"],
                         read_limit=READ_LIMIT, ready_timeout=900) as emu:
        sweep = sweep_in_process(emu)
        rows = build_warehouse(emu, out / "bench-reconcile.duckdb")
        command = reconcile_command(emu, out / "bench-reconcile.duckdb")
    result = {"entity": ENTITY, "records": args.records, "warehouse_rows": rows, "sweep": sweep,
              "command": command, "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"Python {platform.python_version()}"}
    (out / "bench-reconcile.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    per_million = 1_000_000 / 1000  # ids per request: the API's largest page
    print(f"\nSweep: {sweep['ids']:,} ids in {sweep['requests']} requests, {sweep['seconds']:.1f} s "
          f"({sweep['ids_per_second']:,} ids/s). Whole command: {command['seconds']:.1f} s, peak "
          f"{command['peak_rss_mib']} MiB, {100 * command['budget_share']:.1f}% of the key's budget, "
          f"drift {command['drift']}. A million records: {per_million:.0f} requests = "
          f"{per_million / READ_LIMIT:.2f} min of the key's {READ_LIMIT}/min.")


if __name__ == "__main__":
    main()
