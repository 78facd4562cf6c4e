"""End to end: a run finishes in the emulator -> signed webhook -> receiver stores it -> debounced sync -> DuckDB."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest
import requests

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, free_port
from tests.helpers import wait_for
from tests.helpers.e2e import MELTANO, ROOT, MeltanoProject, meltano_available

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]
SECRET = "whsec_e2e_test_secret"
RECEIVER = ROOT / ".venv" / "bin" / "apixx-webhooks"


def warehouse_ids(path, entity: str) -> set[str] | None:
    """Ids in the warehouse table, or None while the target holds the file."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        return {row[0] for row in con.execute(f'SELECT canonical_id FROM apixx."{entity}"').fetchall()}
    except duckdb.Error:
        return None
    finally:
        con.close()


def answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


@pytest.fixture()
def stack(tmp_path):
    with EmulatorProcess(records_per_entity=200, read_limit=100000) as emu:
        project = MeltanoProject(tmp_path, emu)
        port = free_port()
        env = {**project.env, "APIXX_WEBHOOK_SECRET": SECRET}
        # a file, not a pipe: nobody drains a pipe while the sync runs, and a full one (64 KiB
        # of the receiver's and meltano's logs on a slow machine) would block both
        log = (tmp_path / "receiver.log").open("w")
        receiver = subprocess.Popen(
            [str(RECEIVER), "serve", "--port", str(port), "--db", str(tmp_path / "events.sqlite"),
             "--on", "run.succeeded", "--on", "run.partial", "--debounce-seconds", "1",
             "--run", f"{MELTANO} run tap-apixx target-duckdb"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            assert wait_for(lambda: receiver.poll() is not None or answers(f"http://127.0.0.1:{port}/"), 30, 1.0)
            assert receiver.poll() is None, (tmp_path / "receiver.log").read_text()
            emu.control("POST", "/_emulator/webhooks", json={
                "url": f"http://127.0.0.1:{port}/webhooks", "secret": SECRET, "events": ["*"]})
            yield emu, project, tmp_path
        finally:
            receiver.terminate()
            receiver.wait(30)
            log.close()


def test_a_finished_run_triggers_a_sync_that_loads_the_new_records(stack):
    emu, project, workdir = stack
    project.run("run", "tap-apixx", "target-duckdb")  # the warehouse as it was before the run
    flows = emu.get("/v1/flows", params={"limit": 100}).json()["data"]
    flow = next(f for f in flows if f["status"] == "active" and f["source"] == "shopify" and "Orders" in f["name"])
    before = {r["canonical_id"] for r in emu.ground_truth("order")}
    emu.control("POST", "/_emulator/ops/next-run", json={"flow_id": flow["id"], "status": "succeeded",
                                                         "records_processed": 40})
    triggered = emu.http.post(f"{emu.api_url}/flows/{flow['id']}/trigger",
                              headers={"Authorization": f"Bearer {DEFAULT_KEY}"}, timeout=30)
    assert triggered.status_code == 202, triggered.text
    emu.control("POST", "/_emulator/time/advance", json={"seconds": 600})

    truth = {r["canonical_id"] for r in emu.ground_truth("order")}
    assert truth - before, "the finished run landed new orders in the emulator"
    loaded = wait_for(lambda: warehouse_ids(workdir / "warehouse.duckdb", "order") == truth or None, 180, 2)
    assert loaded, "the event-driven sync did not load the new orders: " + (
        workdir / "receiver.log").read_text()[-3000:]

    events = subprocess.run([str(RECEIVER), "events", "--db", str(workdir / "events.sqlite"), "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    stored = json.loads(events)
    stored = stored if isinstance(stored, list) else stored.get("events", [])
    types = [e.get("type") or e.get("event_type") for e in stored]
    assert "run.succeeded" in types and "run.started" in types
    deliveries = emu.control("GET", "/_emulator/webhooks/deliveries")
    deliveries = deliveries if isinstance(deliveries, list) else deliveries.get("data", deliveries.get("deliveries"))
    assert all(d["state"] == "delivered" for d in deliveries), deliveries


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
