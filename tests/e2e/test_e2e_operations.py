"""Operating it through Meltano: tenants, new fields, rewind and a windowed backfill, end to end.

Every check compares the warehouse (DuckDB and PostgreSQL) with the emulator's ground truth.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from apixx_emulator.testing import EmulatorProcess, free_port
from tests.helpers.e2e import (
    CANONICAL,
    ROOT,
    MeltanoProject,
    PostgresCluster,
    by_key,
    duckdb_rows,
    latest_by_id,
    meltano_available,
    normalise,
    postgres_binaries,
    postgres_rows,
)

BINARIES = postgres_binaries()
REQUIRED = os.environ.get("APIXX_REQUIRE_POSTGRES") == "1"
WHY_SKIP = meltano_available() or (None if BINARIES else "no PostgreSQL server binaries (initdb, pg_ctl)")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(WHY_SKIP is not None and not REQUIRED, reason=str(WHY_SKIP))]
TENANT_KEYS = {"acme": "apx_live_acme_4f9c2e1a7b3d", "globex": "apx_live_globex_3a7e9c1d5b2f"}
ACME_DATA_KEYS = ("apx_live_acme_4f9c2e1a7b3d", "apixx_acme_data_7b3e1f9a")  # two keys of one tenant


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=40, read_limit=100000, preload=["acme/live", "globex/live"]) as server:
        yield server


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    assert BINARIES, WHY_SKIP
    cluster = PostgresCluster(BINARIES, tmp_path_factory.mktemp("pg"), free_port()).start()
    yield cluster
    cluster.stop()


def project_for(emu, postgres, tmp_path, **env: str) -> MeltanoProject:
    project = MeltanoProject(tmp_path, emu)
    project.env.update({"TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(postgres.port),
                        "TARGET_POSTGRES_USER": "postgres", "TARGET_POSTGRES_PASSWORD": "unused-with-trust-auth",
                        "TARGET_POSTGRES_DATABASE": "postgres", **env})
    return project


def pg_table(postgres, schema: str, entity: str, key: str = "canonical_id") -> dict[str, dict]:
    return by_key(postgres_rows(postgres.dsn, f'SELECT * FROM "{schema}"."{entity}"'), key)


def duck_table(path, schema: str, entity: str) -> dict[str, dict]:
    return by_key(duckdb_rows(path, f'SELECT * FROM "{schema}"."{entity}"'))


def assert_equals_truth(emu, table, tenant: str = "acme", entities=CANONICAL) -> None:
    for entity in entities:
        truth = latest_by_id(emu.ground_truth(entity, tenant=tenant))
        loaded = table(entity)
        assert set(loaded) == set(truth), f"{tenant} {entity}: {len(loaded)} rows, {len(truth)} in the API"
        stale = [c for c, r in truth.items() if normalise(loaded[c]["updated_at"]) != normalise(r["updated_at"])]
        assert not stale, f"{tenant} {entity}: {len(stale)} rows with an old updated_at"


def emitted(output: str, stream: str) -> int:
    """Records the tap says it emitted for `stream` in a `meltano run` log."""
    counts = re.findall(rf"Finished '{stream}': (\d+) records", output)
    assert counts, f"no summary line for {stream}"
    return sum(int(c) for c in counts)


# -- many tenants, one warehouse ---------------------------------------------------------------

def test_tenants_load_into_one_postgres_in_parallel(emu, postgres, tmp_path):
    project = project_for(emu, postgres, tmp_path)
    for tenant, key in TENANT_KEYS.items():  # each tenant extractor gets its own key
        project.env[f"TAP_APIXX__{tenant.upper()}_API_KEY"] = key
    project.run("state", "list")  # creates the system database: parallel first runs would race to
    jobs = [subprocess.Popen([str(ROOT / ".venv/bin/meltano"), "run", f"tenant-{t}-postgres"], cwd=ROOT,
                             env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for t in TENANT_KEYS]
    outputs = [job.communicate(timeout=600)[0] for job in jobs]
    assert all(job.returncode == 0 for job in jobs), "\n".join(o[-3000:] for o in outputs)
    for tenant in TENANT_KEYS:
        assert_equals_truth(emu, lambda e, t=tenant: pg_table(postgres, f"apixx_{t}", e), tenant)
    states = project.run("state", "list").stdout
    assert "emulator:tap-apixx--acme-to-target-postgres" in states
    assert "emulator:tap-apixx--globex-to-target-postgres" in states


def test_tenants_share_one_duckdb_file_one_writer_at_a_time(emu, tmp_path):
    """The tenants' job and another job on the same file, both under one lock: all loads land."""
    project = MeltanoProject(tmp_path, emu)
    project.run("state", "list")  # creates the system database: parallel first runs would race to
    lock = str(tmp_path / "warehouse.duckdb.lock")
    meltano = str(ROOT / ".venv/bin/meltano")
    jobs = [subprocess.Popen(["flock", lock, meltano, "run", job], cwd=ROOT, env=project.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for job in ("tenants-duckdb", "warehouse-load")]
    outputs = [job.communicate(timeout=600)[0] for job in jobs]
    assert all(job.returncode == 0 for job in jobs), "\n".join(o[-3000:] for o in outputs)
    path = tmp_path / "warehouse.duckdb"
    for tenant in TENANT_KEYS:
        assert_equals_truth(emu, lambda e, t=tenant: duck_table(path, f"apixx_{t}", e), tenant)
    assert_equals_truth(emu, lambda e: duck_table(path, "apixx", e), "acme")  # the other job's schema


# -- new fields become columns -----------------------------------------------------------------

@pytest.mark.parametrize(("loader", "entity"), [("target-duckdb", "refund"), ("target-postgres", "shipment")])
def test_new_fields_load_adds_columns_with_old_rows_null(emu, postgres, tmp_path, loader, entity):
    schema = f"newfields_{loader.split('-')[1]}"
    project = project_for(emu, postgres, tmp_path, TAP_APIXX_NEW_FIELDS="load", TAP_APIXX__LOAD_SCHEMA=schema,
                          TAP_APIXX__SELECT=json.dumps([f"{entity}.*"]))
    project.run("run", "tap-apixx", loader)
    churn = emu.churn(entity, updates=3, inserts=2, set={"dispute_reason": "fraud", "dispute_score": 7})
    project.run("run", "tap-apixx", loader)
    if loader == "target-duckdb":
        rows = duck_table(tmp_path / "warehouse.duckdb", schema, entity)
    else:
        rows = pg_table(postgres, schema, entity)
    changed = set(churn["updated"] + churn["inserted"])
    assert set(rows) == set(latest_by_id(emu.ground_truth(entity)))
    for cid, row in rows.items():
        expected = ("fraud", 7) if cid in changed else (None, None)
        assert (row["dispute_reason"], row["dispute_score"]) == expected, cid


# -- re-sync one stream ------------------------------------------------------------------------

def test_rewind_resyncs_one_stream_through_meltano_once(emu, tmp_path):
    project = MeltanoProject(tmp_path, emu)
    project.env["TAP_APIXX__SELECT"] = '["order.*", "invoice.*"]'
    project.run("run", "tap-apixx", "target-duckdb")
    state_id = "emulator:tap-apixx-to-target-duckdb"
    before = project.state(state_id)["singer_state"]["bookmarks"]
    project.env["TAP_APIXX_REWIND"] = json.dumps([{"stream": "order", "to": "start", "id": "OPS-42"}])
    second = project.run("run", "tap-apixx", "target-duckdb").stdout
    assert emitted(second, "order") == len(emu.ground_truth("order")) and emitted(second, "invoice") == 0
    after = project.state(state_id)["singer_state"]["bookmarks"]
    assert after["order"]["rewinds_applied"] == ["OPS-42"]
    assert after["invoice"] == before["invoice"]
    third = project.run("run", "tap-apixx", "target-duckdb").stdout  # the setting is still there
    assert emitted(third, "order") == 0
    assert_equals_truth(emu, lambda e: duck_table(tmp_path / "warehouse.duckdb", "apixx", e), entities=["order"])


# -- backfill in parallel windows, then the steady job ---------------------------------------

def backfill(project: MeltanoProject, loader: str, name: str, start: str, end: str, *extra: str) -> str:
    env = {**project.env, "APIXX_BACKFILL_KEYS": " ".join(ACME_DATA_KEYS)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "backfill.py"), "--start", start,
                           "--end", end, "--windows", "2", "--loader", loader, "--name", name,
                           "--workdir", str(project.workdir / "backfill"), "--handover", *extra],
                          cwd=ROOT, env=env, text=True, capture_output=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("loader", ["target-postgres", "target-duckdb"])
def test_backfill_windows_union_equals_truth_and_the_steady_job_takes_over(emu, postgres, tmp_path, loader):
    schema = f"backfill_{loader.split('-')[1]}"
    project = project_for(emu, postgres, tmp_path, TAP_APIXX__LOAD_SCHEMA=schema)
    end = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    # from the first record on, so that both windows hold records: target-duckdb passes on a
    # STATE only with rows loaded after it, so a window with nothing to load keeps complete: false
    start = min(r["updated_at"] for e in CANONICAL for r in emu.ground_truth(e))[:19] + "Z"
    out = backfill(project, loader, f"t-{loader}", start, end)
    assert out.count(": ok in") == 2 and "handover:" in out
    for window in ("1of2", "2of2"):  # each window ran under its own state id, and says so
        state = project.state(f"emulator:tap-apixx-to-{loader}:backfill-t-{loader}-{window}")
        assert state["singer_state"]["bookmarks"]["order"]["window"]["complete"] is True
    if loader == "target-duckdb":
        table = lambda e: duck_table(tmp_path / "warehouse.duckdb", schema, e)
    else:
        table = lambda e: pg_table(postgres, schema, e)
    assert_equals_truth(emu, table)  # the union of the windows, merged
    churn = emu.churn("payment", updates=4, inserts=3)
    steady = project.run("run", "tap-apixx", loader).stdout
    assert emitted(steady, "payment") == 7, "the steady job re-read more than the changes (or missed some)"
    assert all(emitted(steady, e) == 0 for e in CANONICAL if e != "payment")
    assert_equals_truth(emu, table, entities=["payment"])
    assert churn["updated_at"][0] >= end  # the changes came after the backfill's end


@pytest.fixture(autouse=True, scope="module")
def _cleanup_backfill_dirs():
    yield
    shutil.rmtree(ROOT / ".meltano" / "backfill", ignore_errors=True)
