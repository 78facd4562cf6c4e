"""Helpers for end-to-end tests that go through `meltano run`, isolated from the user's own state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from apixx_emulator.entities import ENTITY_NAMES
from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, free_port
from tests.helpers import ROOT

MELTANO = ROOT / ".venv" / "bin" / "meltano"
CANONICAL = list(ENTITY_NAMES)
OPS_STREAMS = ("flows", "runs", "connectors")


def meltano_available() -> str | None:
    """None when `meltano run` can work here, else why not."""
    if not MELTANO.exists():
        return f"{MELTANO} is missing: run `make test` (it installs Meltano and the plugins)"
    if not (ROOT / ".meltano").is_dir():
        return "the Meltano plugins are not installed: run `make plugins`"
    return None


class MeltanoProject:
    """Runs meltano in the repository with its own system database, warehouse files and tap URLs."""

    def __init__(self, workdir: Path, emulator: EmulatorProcess, api_key: str = DEFAULT_KEY):
        self.workdir = workdir
        self.emulator = emulator
        self.env = dict(os.environ)
        self.env.update({
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_ENVIRONMENT": "emulator",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_APIXX_API_KEY": api_key,
            "TAP_APIXX_DATA_URL": emulator.data_url,
            "TAP_APIXX_API_URL": emulator.api_url,
            "TAP_APIXX_LOOKBACK_MINUTES": "0",
            "TARGET_DUCKDB_FILEPATH": str(workdir / "warehouse.duckdb"),
            "TARGET_JSONL_DESTINATION_PATH": str(workdir / "jsonl"),
        })
        (workdir / "jsonl").mkdir(exist_ok=True)

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        started = time.perf_counter()
        proc = subprocess.run([str(MELTANO), *args], cwd=ROOT, env=self.env, text=True, check=False,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        proc.seconds = time.perf_counter() - started  # type: ignore[attr-defined]
        if check and proc.returncode != 0:
            raise AssertionError(f"meltano {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
        return proc

    def state(self, state_id: str) -> dict[str, Any]:
        out = self.run("state", "get", state_id).stdout
        start = out.index("{")
        return json.loads(out[start:out.rindex("}") + 1])


def latest_by_id(records: list[dict]) -> dict[str, dict]:
    return {r["canonical_id"]: r for r in records}


def normalise(value: Any) -> Any:
    """Bring a warehouse value and an API value to one comparable form."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, str):
        parsed = parse_json_or_time(value)
        return parsed if parsed is not None else value
    return value


def parse_json_or_time(text: str) -> Any:
    if text[:1] in "{[":
        try:
            return normalise(json.loads(text))
        except ValueError:
            return None
    if len(text) >= 19 and text[4] == "-" and text[10] == "T":
        try:
            return normalise(datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def compare_record(api: dict, row: dict) -> list[str]:
    """Field-by-field differences between an API record and a warehouse row (metadata columns aside)."""
    problems = []
    for field, expected in api.items():
        if field not in row:
            problems.append(f"{field}: missing column")
        elif normalise(row[field]) != normalise(expected):
            problems.append(f"{field}: warehouse {row[field]!r} != API {expected!r}")
    return problems


def postgres_binaries() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


class PostgresCluster:
    """A throwaway trust-auth PostgreSQL cluster on a free loopback port (root runs it as `postgres`)."""

    def __init__(self, bindir: Path, workdir: Path, port: int):
        self.bindir, self.port = bindir, port
        if os.geteuid() == 0:
            # root runs the server as `postgres`, which must reach the data folder through every
            # parent; pytest's own temp root is 0700 and is re-tightened by every pytest session
            # on the machine, so the cluster lives in a folder of its own under /tmp
            workdir = Path(tempfile.mkdtemp(prefix="apixx-pg-", dir="/tmp"))
            os.chmod(workdir, 0o755)
        self.workdir = workdir
        self.datadir = workdir / "pgdata"
        self.sockdir = workdir / "pgsock"
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.as_postgres, *args], check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout[-2000:]}")

    def start(self) -> PostgresCluster:
        for folder in (self.datadir, self.sockdir):
            folder.mkdir(parents=True)
            if self.as_postgres:
                shutil.chown(folder, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        for attempt in range(3):
            options = f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c fsync=off"
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", options, "-w", "-t", "60",
                          "-l", str(self.sockdir / "server.log"), "start")
                return self
            except RuntimeError:
                log = self.sockdir / "server.log"
                if attempt == 2 or "already in use" not in (log.read_text() if log.exists() else ""):
                    raise
                # a test worker running side by side took the port between free_port() and now
                self.port = free_port()
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop")
        except RuntimeError:
            pass
        if self.workdir.name.startswith("apixx-pg-"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"


# -- warehouses, and the checks every load must pass ----------------------------------------

def duckdb_rows(path: Path, sql: str) -> list[dict]:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)  # a file of DuckDB 1.2.2 opens in newer ones
    try:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


def postgres_rows(dsn: str, sql: str) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as con:
        return con.execute(sql).fetchall()


def by_key(rows: list[dict], key: str = "canonical_id") -> dict[str, dict]:
    """Rows by primary key (as text); duplicates would mean the loader did not merge."""
    keyed = {str(r[key]): r for r in rows}
    assert len(keyed) == len(rows), f"duplicate {key}s: the loader did not merge on the primary key"
    return keyed


def assert_tables_equal_ground_truth(emu: EmulatorProcess, table) -> None:
    """`table(entity)` -> rows by canonical_id; every entity's ids and updated_at equal the API's."""
    for entity in CANONICAL:
        truth = latest_by_id(emu.ground_truth(entity))
        loaded = table(entity)
        assert set(loaded) == set(truth), f"{entity}: {len(loaded)} rows loaded, {len(truth)} in the API"
        stale = [c for c, r in truth.items() if normalise(loaded[c]["updated_at"]) != normalise(r["updated_at"])]
        assert not stale, f"{entity}: {len(stale)} rows with an old updated_at"


def assert_random_records_match(emu: EmulatorProcess, table, seed: int, count: int = 100) -> None:
    """`count` random records compare field by field with the API's own answer for them."""
    import random

    loaded = {entity: table(entity) for entity in CANONICAL}
    picks = [(entity, cid) for entity in CANONICAL for cid in loaded[entity]]
    problems = []
    for entity, cid in random.Random(seed).sample(picks, count):
        api = emu.get(f"/api/public/data/{entity}/{cid}").json()
        problems += [f"{entity} {cid} {p}" for p in compare_record(api, loaded[entity][cid])]
    assert not problems, "\n".join(problems[:20])


def assert_second_run_merges_churn(project: MeltanoProject, emu: EmulatorProcess, table, loader: str,
                                   entity: str) -> None:
    """After churn, a second `meltano run` updates the changed rows, adds the new and advances state."""
    state_id = f"emulator:tap-apixx-to-{loader}"
    before = project.state(state_id)["singer_state"]["bookmarks"][entity]["replication_key_value"]
    churn = emu.churn(entity, updates=12, inserts=7)
    project.run("run", "tap-apixx", loader)
    truth = latest_by_id(emu.ground_truth(entity))
    loaded = table(entity)
    assert set(loaded) == set(truth)
    for cid in churn["updated"] + churn["inserted"]:
        assert normalise(loaded[cid]["updated_at"]) == normalise(truth[cid]["updated_at"])
    after = project.state(state_id)["singer_state"]["bookmarks"][entity]["replication_key_value"]
    assert normalise(after) == normalise(churn["updated_at"][-1]) and after > before
