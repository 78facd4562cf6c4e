"""Throughput benchmark of tap-apixx against the emulator: one table, all figures from one run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apixx_emulator.entities import ENTITY_NAMES
from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess

BIN = Path(sys.executable).parent
TAP = BIN / "tap-apixx"
MELTANO = BIN / "meltano"
TARGET_DUCKDB = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "target-duckdb"
ENTITY = "order"
SERVER_LIMIT = 600  # documented reads per key per minute


@dataclass
class Size:
    """How big each part of the benchmark is."""

    records: int = 200_000  # one entity, for the throughput parts
    page_size: int = 1000
    memory_records: tuple[int, ...] = (100_000, 1_000_000)  # the tap's peak memory at each size
    rate_records: int = 900  # per entity, for the rate-budget part
    rate_page_size: int = 10  # small pages: many requests per stream
    rate_limit: int = SERVER_LIMIT
    rate_window_s: float = 60.0  # the server's window
    rate_windows: int = 2  # measured over this many whole windows of a full sync
    latency_ms: float = 200.0
    parallel: int = 4


QUICK = Size(records=5_000, memory_records=(1_000, 5_000), rate_records=150, rate_limit=30,
             rate_window_s=3.0)


@dataclass
class Results:
    size: dict
    started: str
    figures: dict[str, t.Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------------

def write_json(path: Path, value: t.Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def catalog_for(streams: t.Iterable[str]) -> dict:
    catalog = json.loads((ROOT / "catalog" / "catalog.json").read_text())
    wanted = set(streams)
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if not md["breadcrumb"]:
                md["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def tap_config(emu: EmulatorProcess, **settings: t.Any) -> dict:
    return {"api_key": DEFAULT_KEY, "data_url": emu.data_url, "api_url": emu.api_url,
            "lookback_minutes": 0, **settings}


def run_measured(argv: list[str], stdout: t.Any, env: dict | None = None,
                 stdin: t.Any = None) -> tuple[float, int, str]:
    """Run a process; (wall seconds, peak resident memory in bytes, stderr). Raises if it fails.

    The peak is the child's own VmHWM, sampled until it exits: its rusage would also count
    this (large) process, which it was forked from.
    """
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=err, stdin=stdin,
                                env={**os.environ, **(env or {})}, cwd=ROOT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, high_water_mark(proc.pid))
            time.sleep(0.01)
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {stderr[-3000:]}")
    return seconds, peak, stderr


def high_water_mark(pid: int) -> int:
    """Peak resident memory of a running process, in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else 0.0


# -- 1. the tap alone, 2. the baseline ------------------------------------------------------------

def bench_tap(emu: EmulatorProcess, size: Size, work: Path) -> dict:
    config = write_json(work / "tap.json", tap_config(emu, page_size=size.page_size))
    catalog = write_json(work / "catalog.json", catalog_for([ENTITY]))
    startup, _, _ = run_measured([str(TAP), "--about", "--format=json"], subprocess.DEVNULL)
    with open(os.devnull, "wb") as devnull:
        seconds, peak, log = run_measured(
            [str(TAP), "--config", str(config), "--catalog", str(catalog)], devnull)
    records = count_from(log, rf"Finished '{ENTITY}': (\d+) records")
    return {"records": records, "seconds": seconds, "records_per_s": rate(records, seconds),
            "peak_memory_mib": peak / 2**20, "startup_s": startup}


def count_from(log: str, pattern: str) -> int:
    """The count a process logged (its output went to /dev/null)."""
    found = re.findall(pattern, log)
    if not found:
        raise RuntimeError(f"no line matching {pattern!r} in: {log[-2000:]}")
    return int(found[-1])


def bench_baseline(emu: EmulatorProcess, size: Size) -> dict:
    argv = [sys.executable, __file__, "--baseline-client", emu.data_url, ENTITY, str(size.page_size)]
    with open(os.devnull, "wb") as devnull:
        seconds, peak, log = run_measured(argv, devnull)
    records = count_from(log, r"baseline: (\d+) records")
    return {"records": records, "seconds": seconds, "records_per_s": rate(records, seconds),
            "peak_memory_mib": peak / 2**20}


def baseline_client(data_url: str, entity: str, page_size: int) -> None:
    """A minimal client: requests + json, tie-safe paging, one Singer RECORD line per record."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEFAULT_KEY}"
    since, seen, count = None, set(), 0
    write = sys.stdout.write
    while True:
        params = {"limit": page_size, **({"updated_since": since} if since else {})}
        body = session.get(f"{data_url}/{entity}", params=params, timeout=60).json()
        records = body["data"]
        extracted = datetime.now(timezone.utc).isoformat()
        for record in records:
            if (record["updated_at"], record["canonical_id"]) in seen:
                continue
            write(json.dumps({"type": "RECORD", "stream": entity, "record": record,
                              "time_extracted": extracted}) + "\n")
            count += 1
        if not records or body["next_cursor"] is None:
            break
        last = records[-1]["updated_at"]
        seen = {(r["updated_at"], r["canonical_id"]) for r in records if r["updated_at"] == last}
        since = last
    sys.stdout.flush()
    print(f"baseline: {count} records", file=sys.stderr)


# -- 3. meltano run tap-apixx target-duckdb -----------------------------------------------------

def meltano_env(emu: EmulatorProcess, work: Path, parallel: int) -> dict:
    return {
        "MELTANO_DATABASE_URI": f"sqlite:///{work / 'meltano.db'}",
        "MELTANO_ENVIRONMENT": "emulator",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TAP_APIXX_API_KEY": DEFAULT_KEY,
        "TAP_APIXX_DATA_URL": emu.data_url,
        "TAP_APIXX_API_URL": emu.api_url,
        "TAP_APIXX_LOOKBACK_MINUTES": "0",
        "TAP_APIXX_MAX_PARALLEL_STREAMS": str(parallel),
        "TAP_APIXX__SELECT": json.dumps([f"{ENTITY}.*"]),
        "TARGET_DUCKDB_FILEPATH": str(work / "meltano.duckdb"),
    }


def duckdb_count(path: Path, table: str) -> int:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f'SELECT count(*) FROM {table}').fetchone()[0]


TAP_OUTPUT = "tap-output.singer"


def write_tap_output(emu: EmulatorProcess, size: Size, work: Path) -> tuple[Path, float]:
    """The tap's output for ENTITY in a file, for a target to read alone; (file, tap seconds)."""
    singer = work / TAP_OUTPUT
    config = write_json(work / "tap.json", tap_config(emu, page_size=size.page_size))
    catalog = write_json(work / "catalog.json", catalog_for([ENTITY]))
    with open(singer, "wb") as out:
        seconds, _, _ = run_measured([str(TAP), "--config", str(config), "--catalog", str(catalog)], out)
    return singer, seconds


def bench_meltano(emu: EmulatorProcess, size: Size, work: Path) -> dict:
    if not (MELTANO.exists() and TARGET_DUCKDB.exists()):
        return {"skipped": "meltano plugins not installed (make plugins)"}
    env = meltano_env(emu, work, size.parallel)
    seconds, _, _ = run_measured([str(MELTANO), "run", "tap-apixx", "target-duckdb"],
                                 subprocess.DEVNULL, env)
    rows = duckdb_count(work / "meltano.duckdb", f'apixx."{ENTITY}"')
    # where the time goes: each side alone, the target fed from a file of the tap's output
    singer, tap_s = write_tap_output(emu, size, work)
    target_config = write_json(work / "target.json", {"filepath": str(work / "alone.duckdb"),
                                                       "default_target_schema": "apixx"})
    with open(singer, "rb") as stdin:
        target_s, _, _ = run_measured([str(TARGET_DUCKDB), "--config", str(target_config)],
                                   subprocess.DEVNULL, stdin=stdin)
    return {"records": rows, "seconds": seconds, "records_per_s": rate(rows, seconds),
            "tap_alone_s": tap_s, "target_alone_s": target_s,
            "overhead_s": max(0.0, seconds - max(tap_s, target_s))}


# -- 3b. meltano run tap-apixx target-postgres: the target's defaults vs our meltano.yml ---------

TARGET_POSTGRES = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
# the target's own defaults, set explicitly over our meltano.yml (validate_records: false, use_copy: true)
POSTGRES_MODES = {"default": {"TARGET_POSTGRES_VALIDATE_RECORDS": "true", "TARGET_POSTGRES_USE_COPY": "false"},
                  "ours": {}}


class Postgres:
    """A throwaway trust-auth cluster on a free loopback port, fsync off (as in the e2e tests)."""

    def __init__(self, work: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
        found = shutil.which("initdb")
        self.bindir = bins[0] if bins else (Path(found).parent if found else None)
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.dir = Path(tempfile.mkdtemp(prefix="apixx-bench-pg-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_postgres, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data, sock = self.dir / "data", self.dir / "sock"
        for folder in (data, sock):
            folder.mkdir()
            if self.as_postgres:
                shutil.chown(folder, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                  str(sock / "log"), "start")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def count(self, table: str) -> int:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn) as con:
            return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def bench_postgres(emu: EmulatorProcess, size: Size, work: Path) -> dict:
    if not (MELTANO.exists() and TARGET_POSTGRES.exists()):
        return {"skipped": "meltano plugins not installed (make plugins)"}
    if not (list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or shutil.which("initdb")):
        return {"skipped": "no PostgreSQL server binaries (initdb, pg_ctl)"}
    results: dict[str, t.Any] = {}
    pg = Postgres(work)
    try:
        pg.start()
        for mode, settings in POSTGRES_MODES.items():
            schema = f"apixx_{mode}"
            env = {**meltano_env(emu, work, size.parallel),
                   "MELTANO_DATABASE_URI": f"sqlite:///{work / f'meltano-pg-{mode}.db'}",  # own state
                   "TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(pg.port),
                   "TARGET_POSTGRES_USER": "postgres", "TARGET_POSTGRES_PASSWORD": "unused-with-trust-auth",
                   "TARGET_POSTGRES_DATABASE": "postgres", "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
                   **settings}
            seconds, _, _ = run_measured([str(MELTANO), "run", "tap-apixx", "target-postgres"],
                                         subprocess.DEVNULL, env)
            rows = pg.count(f'{schema}."{ENTITY}"')
            results[mode] = {"records": rows, "seconds": seconds, "records_per_s": rate(rows, seconds)}
        results["target_alone"] = postgres_target_alone(emu, size, work, pg)
    finally:
        pg.stop()
    results["speedup"] = results["ours"]["records_per_s"] / results["default"]["records_per_s"]
    return results


def postgres_target_alone(emu: EmulatorProcess, size: Size, work: Path, pg: Postgres) -> dict:
    """target-postgres with our settings, fed the tap's output from a file: the loader's own rate.

    No pipeline through it can be faster, whatever the tap does.
    """
    singer = work / TAP_OUTPUT
    if not singer.exists():  # written by the DuckDB part, unless that one was skipped
        write_tap_output(emu, size, work)
    schema = "apixx_alone"
    config = write_json(work / "target-postgres.json", {
        "host": "127.0.0.1", "port": pg.port, "user": "postgres", "password": "unused-with-trust-auth",
        "database": "postgres", "default_target_schema": schema,
        "validate_records": False, "use_copy": True})  # as in meltano.yml
    with open(singer, "rb") as stdin:
        seconds, _, _ = run_measured([str(TARGET_POSTGRES), "--config", str(config)],
                                     subprocess.DEVNULL, stdin=stdin)
    rows = pg.count(f'{schema}."{ENTITY}"')
    return {"records": rows, "seconds": seconds, "records_per_s": rate(rows, seconds)}


# -- 4. the peer: dlt rest_api ------------------------------------------------------------------

def bench_dlt(emu: EmulatorProcess, size: Size, work: Path) -> dict:
    try:
        import dlt  # noqa: F401
    except ImportError:
        return {"skipped": "dlt not installed (pip install -e '.[bench]')"}
    db = work / "dlt.duckdb"
    argv = [sys.executable, __file__, "--dlt-client", emu.data_url, ENTITY, str(size.page_size),
            str(db), str(work / "dlt-pipelines")]
    seconds, _, _ = run_measured(argv, subprocess.DEVNULL, {"RUNTIME__DLTHUB_TELEMETRY": "false"})
    rows = duckdb_count(db, f'apixx."{ENTITY}"')
    return {"records": rows, "seconds": seconds, "records_per_s": rate(rows, seconds)}


def dlt_client(data_url: str, entity: str, page_size: int, db: str, pipelines_dir: str) -> None:
    """dlt's rest_api source, cursor paging as the docs describe, into DuckDB."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {
            "base_url": data_url + "/",
            "auth": {"type": "bearer", "token": DEFAULT_KEY},
            "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
        },
        "resources": [{"name": entity, "primary_key": "canonical_id", "write_disposition": "append",
                       "endpoint": {"path": entity, "params": {"limit": page_size},
                                    "data_selector": "data"}}],
    })
    pipeline = dlt.pipeline(pipeline_name="bench_dlt", destination=dlt.destinations.duckdb(db),
                            dataset_name="apixx", pipelines_dir=pipelines_dir)
    pipeline.run(source)


# -- 4b. memory: the tap's peak at two sizes ------------------------------------------------------

def bench_memory(size: Size, work: Path) -> dict:
    """Peak memory of the tap alone syncing each size of `order` (a page at a time: flat)."""
    results = {}
    for records in size.memory_records:
        flags = {"records_per_entity": 10, "records_for": [f"{ENTITY}={records}"],
                 "read_limit": 10**9, "ready_timeout": 1200}
        with EmulatorProcess(**flags) as emu:
            one = bench_tap(emu, replace(size, records=records), work)
        if one["records"] != records:
            raise RuntimeError(f"the tap emitted {one['records']} of {records} records")
        results[str(records)] = one
    return results


# -- 5. rate-budget use ---------------------------------------------------------------------------

def bench_rate(size: Size, work: Path) -> dict:
    flags = {"records_per_entity": size.rate_records, "read_limit": size.rate_limit,
             "rate_window_seconds": size.rate_window_s, "max_tie_size": 5}
    results = {}
    with EmulatorProcess(**flags) as emu:
        emu.faults(latency_ms=size.latency_ms)
        for mode, parallel in (("sequential", 1), ("concurrent", size.parallel)):
            emu.control("POST", "/_emulator/limits", json={"read": size.rate_limit})  # empty window
            emu.clear_stats()
            results[mode] = rate_run(emu, size, work, parallel)
    return results


def rate_run(emu: EmulatorProcess, size: Size, work: Path, parallel: int) -> dict:
    """A full sync of the 15 streams, measured over its first whole rate windows."""
    config = write_json(work / "rate.json", tap_config(emu, page_size=size.rate_page_size,
                                                        max_parallel_streams=parallel))
    catalog = write_json(work / "rate-catalog.json", catalog_for(ENTITY_NAMES))
    span = size.rate_window_s * size.rate_windows
    proc = subprocess.Popen([str(TAP), "--config", str(config), "--catalog", str(catalog)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + span + 10  # start-up, then the measured windows
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    finished = proc.poll() == 0
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log = [r for r in emu.stats()["requests"] if r["route"].startswith("data:")]
    times = sorted(r["at"] for r in log)
    if not times:
        raise RuntimeError("the rate-budget sync sent no request")
    window_end = times[0] + span
    used = sum(1 for at in times if at < window_end)
    complete = times[-1] >= window_end
    allowed = size.rate_limit * size.rate_windows
    per_minute = used / span * 60
    return {"parallel": parallel, "requests": used, "seconds": span, "finished": finished,
            "full_windows": complete, "requests_per_minute": per_minute,
            "share_of_limit": used / allowed,
            "http_429": sum(1 for r in log if r["status"] == 429)}


# -- the table ------------------------------------------------------------------------------------

def spread(values: list[float], fmt: str, unit: str = "") -> str:
    """The median of the runs, and their range when there are several."""
    middle = statistics.median(values)
    text = f"{middle:{fmt}}{unit}"
    if len(values) > 1:
        text += f" ({min(values):{fmt}}-{max(values):{fmt}} over {len(values)} runs)"
    return text


def pick(runs: list[dict], *path: str) -> list[float]:
    values = []
    for run in runs:
        value: t.Any = run
        for key in path:
            value = value[key]
        values.append(value)
    return values


def table(res: Results, size: Size) -> str:
    f = res.figures
    runs = f["runs"]
    for one in runs:  # each run's ratio compares measurements of that run
        one["tap_over_baseline"] = one["tap"]["records_per_s"] / one["baseline"]["records_per_s"]
    ratios = pick(runs, "tap_over_baseline")
    f["tap_over_baseline"] = statistics.median(ratios)
    rows = [
        ((f"Tap alone: `{ENTITY}`, {size.records:,} records, page {size.page_size}, stdout to "
         "/dev/null"), spread(pick(runs, "tap", "records_per_s"), ",.0f", " records/s"),
         (f"{spread(pick(runs, 'tap', 'seconds'), '.1f', ' s')} wall (incl. "
          f"{spread(pick(runs, 'tap', 'startup_s'), '.1f', ' s')} start-up); peak memory "
          f"{spread(pick(runs, 'tap', 'peak_memory_mib'), '.0f', ' MiB')}")),
        ("Baseline: requests + json, same pages, same RECORD lines",
         spread(pick(runs, "baseline", "records_per_s"), ",.0f", " records/s"),
         (f"tap / baseline = **{spread(ratios, '.2f')}** (goal >= 1.2); peak memory "
          f"{spread(pick(runs, 'baseline', 'peak_memory_mib'), '.0f', ' MiB')}")),
    ]
    rows.append(meltano_row([r["meltano"] for r in runs]))
    rows += postgres_rows([r["postgres"] for r in runs])
    rows.append(dlt_row(runs, size))
    if f.get("memory"):
        sizes = list(f["memory"].values())
        rows.append((
            "Tap alone, peak memory: `" + ENTITY + "` at " + " and ".join(f"{m['records']:,}" for m in sizes)
            + " records",
            " and ".join(f"{m['peak_memory_mib']:.0f} MiB" for m in sizes),
            "process peak (VmHWM); " + "; ".join(f"{m['records']:,} records at {m['records_per_s']:,.0f} records/s"
                                                 for m in sizes)))
    for run in f["rate"].values():
        label = ("sequential (max_parallel_streams=1)" if run["parallel"] == 1
                 else f"concurrent (max_parallel_streams={run['parallel']})")
        rows.append((
            (f"Rate budget, {size.latency_ms:.0f} ms latency, {size.rate_limit} reads per "
            f"{size.rate_window_s:.0f} s, 15 streams: {label}"),
            f"**{100 * run['share_of_limit']:.0f}%** of the limit",
            f"{run['requests_per_minute']:.0f} requests/min over the first {run['seconds']:.0f} s; "
            f"{run['http_429']} x 429" + ("" if run["full_windows"] else " (sync ended sooner)"),
        ))
    lines = ["| Measure | Result | Notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def meltano_row(ms: list[dict]) -> tuple[str, str, str]:
    label = "`meltano run tap-apixx target-duckdb`, same data"
    if any("skipped" in m for m in ms):
        return label, "skipped", ms[0].get("skipped", "")
    rows = sorted({m["records"] for m in ms})
    return (label, spread(pick(ms, "records_per_s"), ",.0f", " records/s end to end"),
            (f"{spread(pick(ms, 'seconds'), '.1f', ' s')}, {', '.join(f'{r:,}' for r in rows)} rows; "
             f"tap alone {spread(pick(ms, 'tap_alone_s'), '.1f', ' s')}, target-duckdb alone "
             f"{spread(pick(ms, 'target_alone_s'), '.1f', ' s')}, meltano start-up and piping "
             f"{spread(pick(ms, 'overhead_s'), '.1f', ' s')}"))


def postgres_rows(ps: list[dict]) -> list[tuple[str, str, str]]:
    label = "`meltano run tap-apixx target-postgres`, same data"
    if any("skipped" in p for p in ps):
        return [(label, "skipped", ps[0].get("skipped", ""))]

    def rows(mode: str) -> str:
        return ", ".join(f"{r:,}" for r in sorted({p[mode]["records"] for p in ps}))

    return [
        (f"{label}: the target's defaults (`validate_records: true`, `use_copy: false`)",
         spread(pick(ps, "default", "records_per_s"), ",.0f", " records/s end to end"),
         f"{spread(pick(ps, 'default', 'seconds'), '.1f', ' s')}, {rows('default')} rows"),
        (f"{label}: our `meltano.yml` (`validate_records: false`, `use_copy: true`)",
         spread(pick(ps, "ours", "records_per_s"), ",.0f", " records/s end to end"),
         (f"{spread(pick(ps, 'ours', 'seconds'), '.1f', ' s')}, {rows('ours')} rows; ours / defaults = "
          f"**{spread(pick(ps, 'speedup'), '.2f')}** (goal >= 2; and >= 10,000 records/s)")),
        ("target-postgres alone, our settings, reading the tap's output from a file",
         spread(pick(ps, "target_alone", "records_per_s"), ",.0f", " records/s"),
         (f"{spread(pick(ps, 'target_alone', 'seconds'), '.1f', ' s')}, "
          f"{', '.join(f'{r:,}' for r in sorted({p['target_alone']['records'] for p in ps}))} rows; "
          "the loader's own ceiling on this machine: no `meltano run` into it can be faster")),
    ]


def dlt_row(runs: list[dict], size: Size) -> tuple[str, str, str]:
    label = "Peer: dlt `rest_api` (cursor paginator) into DuckDB, same entity"
    ds = [r["dlt"] for r in runs]
    if any("skipped" in d for d in ds):
        return label, "skipped", ds[0].get("skipped", "")
    versus = ""
    if not any("skipped" in r["meltano"] for r in runs):
        versus = "meltano run / dlt = " + spread(
            [r["meltano"]["records_per_s"] / r["dlt"]["records_per_s"] for r in runs], ".2f") + "; "
    alone = spread([r["tap"]["records_per_s"] / r["dlt"]["records_per_s"] for r in runs], ".2f")
    lost = [size.records - d["records"] for d in ds]
    seeds = ", ".join(str(r["seed"]) for r in runs)
    return (label, spread(pick(ds, "records_per_s"), ",.0f", " records/s"),
            f"{versus}tap alone / dlt = {alone}; dlt lost "
            + ", ".join(f"**{n:,}**" for n in lost)
            + f" of {size.records:,} rows at tied page boundaries (emulator seeds {seeds})")


def run(size: Size, out: Path, runs: int) -> Results:
    res = Results(size=asdict(size), started=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    res.figures["runs"] = []
    with tempfile.TemporaryDirectory(prefix="apixx-bench-") as tmp:
        for index in range(runs):
            work = Path(tmp) / f"run-{index + 1}"
            work.mkdir()
            seed = 42 + index  # other data each run: where ties straddle pages moves (dlt's losses)
            flags = {"records_per_entity": 10, "records_for": [f"{ENTITY}={size.records}"],
                     "read_limit": 10**9, "ready_timeout": 600, "seed": seed}
            one: dict[str, t.Any] = {"seed": seed}
            with EmulatorProcess(**flags) as emu:
                truth = len(emu.ground_truth(ENTITY))
                assert truth == size.records, f"emulator has {truth} {ENTITY} records"
                one["tap"] = bench_tap(emu, size, work)
                one["baseline"] = bench_baseline(emu, size)
                one["meltano"] = bench_meltano(emu, size, work)
                one["postgres"] = bench_postgres(emu, size, work)
                one["dlt"] = bench_dlt(emu, size, work)
            res.figures["runs"].append(one)
            print(f"run {index + 1} of {runs} done", file=sys.stderr, flush=True)
        res.figures["memory"] = bench_memory(size, Path(tmp))
        res.figures["rate"] = bench_rate(size, Path(tmp))
    res.figures["table"] = table(res, size)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(res), indent=2) + "\n")
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: proves the benchmark works")
    parser.add_argument("--json", type=Path, default=ROOT / "output" / "bench-results.json",
                        help="where to write the figures (default: output/bench-results.json)")
    parser.add_argument("--baseline-client", nargs=3, metavar=("URL", "ENTITY", "PAGE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=None,
                        help="throughput runs, each on other data (default: 3; 1 with --quick)")
    parser.add_argument("--dlt-client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_client:
        url, entity, page = args.baseline_client
        return baseline_client(url, entity, int(page))
    if args.dlt_client:
        url, entity, page, db, pipes = args.dlt_client
        return dlt_client(url, entity, int(page), db, pipes)
    size = QUICK if args.quick else Size()
    started = time.perf_counter()
    runs = args.runs or (1 if args.quick else 3)
    res = run(size, args.json, runs)
    print(f"\ntap-apixx benchmark ({'quick' if args.quick else 'full'}; emulator on loopback; "
          f"{time.perf_counter() - started:.0f} s; figures in {args.json})\n")
    print(res.figures["table"])


if __name__ == "__main__":
    main()
