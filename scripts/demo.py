"""`make demo`: start the emulator, sync it into DuckDB with `meltano run`, churn, sync again, report;
then delete and merge records in APIXX and end with a clean reconcile of the warehouse.

Each demo starts from an empty warehouse and state, because the emulator regenerates its data
from the seed when it starts: the second sync inside the demo shows the incremental behaviour."""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apixx_emulator.entities import ENTITY_NAMES
from apixx_emulator.models.datasets import HISTORY_DAYS
from apixx_emulator.testing import EmulatorProcess

# the demo keeps its own warehouse file and state id, so it never touches a user's own runs
# (output/warehouse.duckdb, state id emulator:tap-apixx-to-target-duckdb); TARGET_DUCKDB_FILEPATH
# moves the file (the demo's test does)
DUCKDB_FILE = Path(os.environ.get("TARGET_DUCKDB_FILEPATH", ROOT / "output" / "demo.duckdb"))
STATE_ID_SUFFIX = "demo"
STATE_ID = f"emulator:tap-apixx-to-target-duckdb:{STATE_ID_SUFFIX}"
SCHEMA = "apixx"
CANONICAL = list(ENTITY_NAMES)
OPS_STREAMS = ("flows", "runs", "connectors")
OPS_NOTE = {"flows": "full table", "connectors": "full table", "runs": "window"}  # what an ops sync re-reads
CHURN = {"order": (40, 15), "customer": (25, 5), "invoice": (30, 10), "payment": (10, 10)}
GONE = {"customer": (8, 4), "order": (5, 0)}  # entity -> (deletes, merges): no tombstones in APIXX
REVENUE_BY_DAY = f"""
    SELECT CAST(placed_at AS DATE) AS day, count(*) AS orders, sum(total_cents) / 100.0 AS revenue
    FROM {SCHEMA}."order" WHERE status IN ('paid', 'fulfilled')
    GROUP BY 1 ORDER BY 1 DESC LIMIT 7"""


def fail(message: str) -> None:
    print(f"\ndemo: error: {message}", file=sys.stderr)
    sys.exit(1)


def check_port(port: int) -> None:
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            fail(f"port {port} is already in use (another emulator?). Stop it, or run: make demo DEMO_PORT=<free port>")


def meltano_env(emu: EmulatorProcess) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TAP_APIXX_DATA_URL": emu.data_url, "TAP_APIXX_API_URL": emu.api_url,
                "MELTANO_ENVIRONMENT": "emulator", "TARGET_DUCKDB_FILEPATH": str(DUCKDB_FILE),
                "TAP_APIXX_MAX_PARALLEL_STREAMS": env.get("TAP_APIXX_MAX_PARALLEL_STREAMS", "4")})
    return env


SUMMARY = re.compile(r"Finished '(\w+)': (\d+) records")


def meltano_run(emu: EmulatorProcess, label: str) -> tuple[float, dict[str, int]]:
    """Run the sync; its duration and the records the tap emitted per stream (from its summary lines)."""
    print(f"\n== {label}: meltano run tap-apixx target-duckdb", flush=True)
    started = time.perf_counter()
    meltano = ROOT / ".venv" / "bin" / "meltano"
    proc = subprocess.run([str(meltano), "run", "--state-id-suffix", STATE_ID_SUFFIX, "tap-apixx", "target-duckdb"], cwd=ROOT, env=meltano_env(emu),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
        fail(f"meltano run exited with {proc.returncode} (log above)")
    emitted = {m.group(1): int(m.group(2)) for m in SUMMARY.finditer(proc.stdout)}
    seconds = time.perf_counter() - started
    print(f"   done in {seconds:.1f}s: the tap emitted {sum(emitted.values())} records in {len(emitted)} streams")
    return seconds, emitted


def reconcile(emu: EmulatorProcess, *args: str) -> int:
    """`meltano invoke tap-apixx:reconcile`: prints its report, returns its exit code."""
    print(f"\n== meltano invoke tap-apixx:reconcile {' '.join(args)}".rstrip(), flush=True)
    meltano = ROOT / ".venv" / "bin" / "meltano"
    proc = subprocess.run([str(meltano), "invoke", "tap-apixx:reconcile", *args], cwd=ROOT, env=meltano_env(emu),
                          capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        print(proc.stderr[-4000:], file=sys.stderr)
        fail(f"reconcile exited with {proc.returncode} (log above)")
    print(proc.stdout.rstrip())
    return proc.returncode


def deletes_and_merges(emu: EmulatorProcess) -> None:
    """APIXX loses records: the warehouse keeps them until reconcile finds them."""
    print("\n== APIXX deletes and merges records (the list simply stops returning them)")
    for entity, (deletes, merges) in GONE.items():
        done = emu.churn(entity, deletes=deletes, merges=merges)
        print(f"   {entity}: {len(done['deleted'])} deleted, {len(done['merged'])} merged into another record")
    meltano_run(emu, "Incremental sync (brings the merge survivors' changes; the gone rows stay)")
    if reconcile(emu, "--mark-deleted") != 0:
        fail("the warehouse does not equal APIXX after reconcile --mark-deleted (report above)")
    if reconcile(emu) != 0:
        fail("the last reconcile is not clean (report above)")
    live_rows(emu)


def live_rows(emu: EmulatorProcess) -> None:
    import duckdb

    con = duckdb.connect(str(DUCKDB_FILE), read_only=True)
    try:
        print(f"\nLive rows (WHERE _sdc_deleted_at IS NULL), the query form for analysts:\n"
              f"{'entity':<18}{'in the API':>12}{'live in DuckDB':>16}{'marked deleted':>16}")
        for entity in GONE:
            live, marked = con.execute(f'SELECT count(*) FILTER (_sdc_deleted_at IS NULL), count(_sdc_deleted_at) '
                                       f'FROM {SCHEMA}."{entity}"').fetchone()
            print(f"{entity:<18}{len(emu.ground_truth(entity)):>12}{live:>16}{marked:>16}")
    finally:
        con.close()


def reset_warehouse(emu: EmulatorProcess) -> None:
    DUCKDB_FILE.unlink(missing_ok=True)
    meltano = ROOT / ".venv" / "bin" / "meltano"
    subprocess.run([str(meltano), "state", "clear", "--force", STATE_ID], cwd=ROOT,
                   env=meltano_env(emu), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def table_counts(emu: EmulatorProcess, emitted: dict[str, int] | None) -> tuple[list[tuple], list[tuple]]:
    import duckdb

    con = duckdb.connect(str(DUCKDB_FILE), read_only=True)
    rows = []
    try:
        for entity in (*CANONICAL, *OPS_STREAMS):
            truth = len(emu.ground_truth(entity)) if entity in CANONICAL else \
                emu.control("GET", f"/_emulator/ops/{entity}")["count"]
            loaded = con.execute(f'SELECT count(*) FROM {SCHEMA}."{entity}"').fetchone()[0]
            changed = sum(CHURN.get(entity, (0, 0))) if entity in CANONICAL else OPS_NOTE[entity]
            rows.append((entity, truth, loaded, (emitted or {}).get(entity, 0), changed))
        revenue = con.execute(REVENUE_BY_DAY).fetchall()
    finally:
        con.close()
    return rows, revenue


def report(rows: list[tuple], revenue: list[tuple], second: bool) -> bool:
    header = f"{'stream':<18}{'in the API':>12}{'in DuckDB':>12}" + (f"{'changed':>12}{'synced by this run':>20}" if second else "")
    print("\n" + header + "\n" + "-" * len(header))
    ok = True
    for entity, truth, loaded, synced, changed in rows:
        ok &= truth == loaded
        mark = "" if truth == loaded else "   <-- MISMATCH"
        print(f"{entity:<18}{truth:>12}{loaded:>12}" + (f"{changed:>12}{synced:>20}" if second else "") + mark)
    print(f"\nRevenue by day (paid and fulfilled orders), latest 7 days with orders:\n{'day':<12}{'orders':>8}{'revenue':>14}")
    for day, orders, amount in revenue:
        print(f"{day!s:<12}{orders:>8}{amount:>14,.2f}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8765")))
    parser.add_argument("--records-per-entity", type=int, default=2000)
    parser.add_argument("--orders-per-day", type=int, default=80,
                        help=f"orders over the {HISTORY_DAYS} days of generated history (default: 80 a day)")
    args = parser.parse_args()
    check_port(args.port)
    DUCKDB_FILE.parent.mkdir(exist_ok=True)
    orders = args.orders_per_day * HISTORY_DAYS  # a shop's worth: dozens of paid orders a day
    print(f"Starting the APIXX emulator on port {args.port} ({args.records_per_entity} records per entity, "
          f"{orders} orders over {HISTORY_DAYS} days) ...")
    try:
        emu = EmulatorProcess(port=args.port, records_per_entity=args.records_per_entity,
                              records_for=f"order={orders}").start()
    except RuntimeError as err:
        fail(f"the emulator did not come up: {err}")
    try:
        reset_warehouse(emu)
        meltano_run(emu, "First sync (full: the warehouse is empty)")
        ok = report(*table_counts(emu, None), second=False)
        changed = sum(u + i for u, i in CHURN.values())
        print(f"\n== Churning {changed} records in the emulator (updates and inserts in {', '.join(CHURN)})")
        for entity, (updates, inserts) in CHURN.items():
            emu.churn(entity, updates=updates, inserts=inserts)
        seconds, emitted = meltano_run(emu, "Incremental sync")
        ok &= report(*table_counts(emu, emitted), second=True)
        print(f"\nIncremental sync took {seconds:.1f}s. Rows per entity in DuckDB equal the API's"
              f" ground truth: {'yes' if ok else 'NO'}. File: {DUCKDB_FILE}")
        if ok:
            deletes_and_merges(emu)
    finally:
        emu.stop()
    if not ok:
        fail("the warehouse does not match the API (see MISMATCH above)")


if __name__ == "__main__":
    main()
