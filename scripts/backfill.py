"""Backfill past one key's rate limit: N start_date/end_date windows as N parallel `meltano run` jobs.

Each window is its own `meltano run` with its own API key (the rate limit is per key), its own
state id (`<env>:<extractor>-to-<loader>:backfill-<name>-<i>of<N>`) and its own run
directory (parallel runs of one extractor in one project would otherwise overwrite each
other's catalog file). Windows split [start, end) into N equal time spans; together they
cover it exactly, each end exclusive.

- target-postgres takes the windows' loads at once. A schema-only run (an empty window in
  1970) creates the tables first, so the parallel loaders never race to create them.
- target-duckdb: a DuckDB file takes one writing process at a time, so each window loads its
  own file (`<workdir>/w<i>.duckdb`), then one merge upserts them into the warehouse file
  (scripts/duckdb_merge.py, newest `updated_at` wins), waiting if another process holds it.

Keys come from an environment variable (default APIXX_BACKFILL_KEYS, separated by commas or
spaces), never from the command line. With fewer keys than windows, windows share keys (and
their budgets). Re-running the same command after a failure resumes every window from its own
state; finished windows have nothing left to do.

`--handover` then sets the steady job's state (`<env>:<extractor>-to-<loader>`) so that it
starts at `end` for the backfilled streams: no gap (the windows stop before `end`, the steady
job reads from it) and no re-read of the history. It refuses when that job already has state.

    APIXX_BACKFILL_KEYS="$KEY1 $KEY2 $KEY3 $KEY4" python scripts/backfill.py \\
        --start 2025-07-01T00:00:00Z --end 2026-07-01T00:00:00Z --windows 4 \\
        --loader target-postgres --handover
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CANONICAL = ("customer", "contact", "account", "lead", "opportunity", "product", "product_variant",
             "order", "order_line_item", "invoice", "payment", "subscription", "refund",
             "shipment", "inventory")
REPLICATION_KEYS = {**dict.fromkeys(CANONICAL, "updated_at"), "runs": "started_at"}
SCHEMA_ONLY_WINDOW = ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.001Z")  # holds no record


@dataclass
class Window:
    index: int
    count: int
    start: str
    end: str
    key: str

    @property
    def label(self) -> str:
        return f"{self.index}of{self.count}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--start", required=True, help="RFC 3339: the backfill's first instant")
    p.add_argument("--end", required=True, help="RFC 3339: where it stops (exclusive); the steady job takes over here")
    p.add_argument("--windows", type=int, help="number of windows (default: one per key)")
    p.add_argument("--extractor", default="tap-apixx", help="the extractor (e.g. a tenant's tap-apixx--acme)")
    p.add_argument("--loader", default="target-postgres", choices=["target-postgres", "target-duckdb"])
    p.add_argument("--name", help="names this backfill in state ids and folders (default: from start and end)")
    p.add_argument("--streams", default=",".join(CANONICAL),
                   help="comma-separated streams (default: the 15 canonical ones; 'runs' may be added)")
    p.add_argument("--keys-env", default="APIXX_BACKFILL_KEYS", help="environment variable holding the keys")
    p.add_argument("--environment", help="Meltano environment (default: $MELTANO_ENVIRONMENT or meltano.yml's)")
    p.add_argument("--into", help="target-duckdb: the warehouse file to merge into (default: target-duckdb's filepath)")
    p.add_argument("--workdir", help="where window logs and files go (default: output/backfill/<name>)")
    p.add_argument("--handover", action="store_true", help="set the steady job's state to start at --end")
    p.add_argument("--meltano", default=str(Path(sys.executable).with_name("meltano")), help="meltano executable")
    args = p.parse_args(argv)
    args.start, args.end = utc(args.start), utc(args.end)
    if args.start >= args.end:
        p.error("--start must be before --end")
    args.streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    unknown = [s for s in args.streams if s not in REPLICATION_KEYS]
    if unknown:
        p.error(f"--streams: {unknown} cannot be windowed (canonical streams and runs only)")
    args.name = args.name or f"{args.start:%Y%m%dT%H%M%S}-{args.end:%Y%m%dT%H%M%S}"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        p.error("--name: letters, digits, '.', '_' and '-' only")
    return args


def utc(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def split(start: datetime, end: datetime, count: int, keys: list[str]) -> list[Window]:
    """`count` equal spans of [start, end), each end exclusive and the next one's start."""
    step = (end - start) / count
    edges = [start + step * i for i in range(count)] + [end]
    return [Window(i + 1, count, iso(edges[i]), iso(edges[i + 1]), keys[i % len(keys)])
            for i in range(count)]


def env_prefix(plugin: str) -> str:
    """Meltano's environment-variable prefix of a plugin's settings: tap-apixx--acme -> TAP_APIXX__ACME."""
    return re.sub(r"[^A-Za-z0-9]", "_", plugin).upper()


class Project:
    """The Meltano project in the current directory, driven through its CLI."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.root = Path.cwd()
        self.sys_dir = Path(os.environ.get("MELTANO_SYS_DIR_ROOT", self.root / ".meltano")).resolve()
        self.env = dict(os.environ)
        self.env.setdefault("MELTANO_DATABASE_URI", f"sqlite:///{self.sys_dir / 'meltano.db'}")
        self.environment = args.environment or os.environ.get("MELTANO_ENVIRONMENT") or default_environment(self.root)
        self.env["MELTANO_ENVIRONMENT"] = self.environment

    def meltano(self, *argv: str, env: dict | None = None, log: Path | None = None) -> subprocess.CompletedProcess:
        out = log.open("w") if log else subprocess.PIPE
        try:
            return subprocess.run([self.args.meltano, *argv], env=env or self.env, cwd=self.root, text=True,
                                  stdout=out, stderr=subprocess.STDOUT, check=False)
        finally:
            if log:
                out.close()

    def state_id(self, suffix: str | None = None) -> str:
        base = f"{self.environment}:{self.args.extractor}-to-{self.args.loader}"
        return f"{base}:{suffix}" if suffix else base

    def private_sys_dir(self, name: str) -> Path:
        """A .meltano of its own (run directory, catalog) sharing the installed plugins' venvs."""
        folder = self.sys_dir / "backfill" / name
        for kind in ("extractors", "loaders"):
            for plugin in (self.sys_dir / kind).iterdir():
                link = folder / kind / plugin.name / "venv"
                if (plugin / "venv").is_dir() and not link.exists():
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(plugin / "venv", target_is_directory=True)
        return folder

    def window_env(self, window: Window | None, start: str, end: str, key: str, workdir: Path) -> dict:
        tap, name = env_prefix(self.args.extractor), window.label if window else "schema"
        env = {**self.env, f"{tap}_START_DATE": start, f"{tap}_END_DATE": end, f"{tap}_API_KEY": key,
               f"{tap}__SELECT": json.dumps([f"{s}.*" for s in self.args.streams]),
               "MELTANO_SYS_DIR_ROOT": str(self.private_sys_dir(f"{self.args.name}-{name}"))}
        if (workdir / "catalog.json").exists():  # discovered once for all windows
            env[f"{tap}__CATALOG"] = str(workdir / "catalog.json")
        if self.args.loader == "target-duckdb":
            env["TARGET_DUCKDB_FILEPATH"] = str(workdir / f"w{name}.duckdb")
        return env


def default_environment(root: Path) -> str:
    match = re.search(r"^default_environment:\s*(\S+)", (root / "meltano.yml").read_text(), re.MULTILINE)
    return match.group(1) if match else "dev"


def run_windows(project: Project, windows: list[Window], workdir: Path) -> list[tuple[Window, int, float]]:
    """Start every window's `meltano run` at once; wait for all of them."""
    started = []
    for window in windows:
        env = project.window_env(window, window.start, window.end, window.key, workdir)
        log = (workdir / f"w{window.label}.log").open("w")
        argv = [project.args.meltano, "run", "--state-id-suffix", f"backfill-{project.args.name}-{window.label}",
                project.args.extractor, project.args.loader]
        proc = subprocess.Popen(argv, env=env, cwd=project.root, stdout=log, stderr=subprocess.STDOUT, text=True)
        started.append((window, proc, log, time.monotonic()))
        print(f"window {window.label}: [{window.start}, {window.end}) started (log {workdir / f'w{window.label}.log'})")
    results = []
    for window, proc, log, began in started:
        code = proc.wait()
        log.close()
        results.append((window, code, time.monotonic() - began))
    return results


def discover_once(project: Project, workdir: Path) -> None:
    """The catalog, discovered once: the windows use it instead of each running discovery."""
    (workdir / "catalog.json").unlink(missing_ok=True)
    env = project.window_env(None, *SCHEMA_ONLY_WINDOW, project.args.keys[0], workdir)
    proc = subprocess.run([project.args.meltano, "invoke", "--dump=catalog", project.args.extractor], env=env,
                          cwd=project.root, text=True, capture_output=True, check=False)
    if proc.returncode != 0 or "{" not in proc.stdout:
        sys.exit(f"backfill: error: catalog discovery failed: {proc.stderr.strip()[-500:]}")
    (workdir / "catalog.json").write_text(proc.stdout[proc.stdout.index("{"):])


def prepare_tables(project: Project, workdir: Path) -> None:
    """target-postgres: create every table once, before the parallel loads (they would race to)."""
    key = project.args.keys[0]
    env = project.window_env(None, *SCHEMA_ONLY_WINDOW, key, workdir)
    proc = subprocess.run([project.args.meltano, "run", "--no-state-update", "--state-id-suffix",
                           f"backfill-{project.args.name}-schema", project.args.extractor, project.args.loader],
                          env=env, cwd=project.root, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    (workdir / "schema.log").write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"backfill: error: creating the tables failed (log {workdir / 'schema.log'})")


def merge_duckdb(project: Project, windows: list[Window], workdir: Path) -> None:
    into = project.args.into or duckdb_filepath(project)
    python = project.sys_dir / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
    files = [str(workdir / f"w{w.label}.duckdb") for w in windows if (workdir / f"w{w.label}.duckdb").exists()]
    Path(into).parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(python if python.exists() else sys.executable), str(ROOT / "scripts" / "duckdb_merge.py"),
                           into, *files], text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"backfill: error: merging into {into} failed: {proc.stderr.strip().splitlines()[-1:]}")
    print(proc.stdout.strip())


def duckdb_filepath(project: Project) -> str:
    if path := os.environ.get("TARGET_DUCKDB_FILEPATH"):
        return path
    proc = project.meltano("config", "print", "target-duckdb")
    text = proc.stdout
    return json.loads(text[text.index("{"):text.rindex("}") + 1])["filepath"]


def handover(project: Project) -> None:
    """Give the steady job a state that starts the backfilled streams at --end."""
    state_id = project.state_id()
    current = project.meltano("state", "get", state_id).stdout
    current = current[current.find("{"):current.rfind("}") + 1] if "{" in current else "{}"
    if json.loads(current or "{}").get("singer_state", {}).get("bookmarks"):
        print(f"handover: {state_id} already has state; it goes on from its own bookmarks (nothing set)")
        return
    end = iso(project.args.end)
    bookmarks = {s: {"replication_key": REPLICATION_KEYS[s], "replication_key_value": end} for s in project.args.streams}
    proc = project.meltano("state", "set", "--force", state_id, json.dumps({"singer_state": {"bookmarks": bookmarks}}))
    if proc.returncode != 0:
        sys.exit(f"backfill: error: meltano state set {state_id} failed: {proc.stdout.strip()[-500:]}")
    print(f"handover: {state_id} now starts {len(bookmarks)} streams at {end}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    args.keys = os.environ.get(args.keys_env, "").replace(",", " ").split()
    if not args.keys:
        sys.exit(f"backfill: error: no API keys in ${args.keys_env} (separate them with spaces or commas)")
    count = args.windows or len(args.keys)
    if count < 1:
        sys.exit("backfill: error: --windows must be at least 1")
    if count > len(args.keys):
        print(f"backfill: warning: {count} windows share {len(args.keys)} key(s): throughput is per key")
    project = Project(args)
    workdir = Path(args.workdir or project.root / "output" / "backfill" / args.name).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    windows = split(args.start, args.end, count, args.keys)
    began = time.monotonic()
    project.meltano("state", "list")  # creates or migrates the system database, once, before the windows
    discover_once(project, workdir)
    if args.loader == "target-postgres":
        prepare_tables(project, workdir)
    results = run_windows(project, windows, workdir)
    print(f"backfill: all windows loaded in {time.monotonic() - began:.1f} s")
    failed = [w for w, code, _ in results if code != 0]
    for window, code, seconds in results:
        print(f"window {window.label}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.1f} s, "
              f"state id {project.state_id(f'backfill-{args.name}-{window.label}')}")
    if failed:
        print(f"backfill: error: {len(failed)} window(s) failed; see their logs in {workdir}, then run the same "
              "command again: each window resumes from its own state", file=sys.stderr)
        return 1
    if args.loader == "target-duckdb":
        merge_duckdb(project, windows, workdir)
    print(f"backfill: {count} windows done (and merged) in {time.monotonic() - began:.1f} s")
    if args.handover:
        handover(project)
    for folder in (project.sys_dir / "backfill").glob(f"{args.name}-*"):
        shutil.rmtree(folder, ignore_errors=True)  # symlinks are removed, never followed
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
