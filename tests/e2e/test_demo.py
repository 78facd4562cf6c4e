"""`make demo`'s script, run as a user would (small data, its own state and warehouse)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest

from apixx_emulator.testing import free_port
from tests.helpers.e2e import ROOT, meltano_available

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]


USER_STATE_ID = "emulator:tap-apixx-to-target-duckdb"  # what a user's own `meltano run` uses
DEMO_STATE_ID = f"{USER_STATE_ID}:demo"


def demo_env(tmp_path) -> dict[str, str]:
    return {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
            "TARGET_DUCKDB_FILEPATH": str(tmp_path / "warehouse.duckdb")}


def meltano_state(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "meltano"), "state", *args], cwd=ROOT,
                          env=demo_env(tmp_path), capture_output=True, text=True, timeout=120, check=False)


def run_demo(tmp_path, port: int) -> subprocess.CompletedProcess:
    env = demo_env(tmp_path)
    return subprocess.run([sys.executable, "scripts/demo.py", "--port", str(port), "--records-per-entity", "150"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_demo_syncs_churns_and_syncs_only_the_changes(tmp_path):
    users_state = '{"singer_state": {"bookmarks": {"order": {"replication_key_value": "2020-01-01T00:00:00.000Z"}}}}'
    assert meltano_state(tmp_path, "set", "--force", USER_STATE_ID, users_state).returncode == 0
    proc = run_demo(tmp_path, free_port())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MISMATCH" not in proc.stdout and "ground truth: yes" in proc.stdout
    second = proc.stdout[proc.stdout.index("== Incremental sync"):proc.stdout.index("== APIXX deletes")]
    rows = re.findall(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", second, re.MULTILINE)
    assert len(rows) == 15
    for entity, in_api, in_duckdb, changed, synced in rows:
        assert in_api == in_duckdb, entity
        assert synced == changed, f"{entity}: the second run synced {synced} records, {changed} changed"
    assert "Revenue by day" in second
    # a business's data: dozens of paid orders on each of the latest days, up to today (the churn)
    revenue = re.findall(r"^(\d{4}-\d\d-\d\d)\s+(\d+)\s+[\d,.]+$", second, re.MULTILINE)
    assert len(revenue) == 7, second
    today = datetime.now(timezone.utc).date()
    days = [date.fromisoformat(day) for day, _ in revenue]
    assert days == sorted(days, reverse=True) and today - timedelta(days=1) <= days[0] <= today
    assert days[-1] >= today - timedelta(days=8), "the history ends before today"
    assert all(int(orders) >= 24 for day, orders in revenue if day != today.isoformat()), revenue
    # then APIXX deletes and merges records; the demo ends with a clean reconcile of its warehouse
    marking, last = proc.stdout.split("== meltano invoke tap-apixx:reconcile")[1:]
    assert re.search(r"^customer\s+\d+\s+\d+\s+12\s+0\s+0\s", marking, re.MULTILINE), marking  # 8 + 4 gone
    assert re.search(r"^order\s+\d+\s+\d+\s+5\s", marking, re.MULTILINE), marking
    assert "customer: marked 12" in marking and "order: marked 5" in marking
    assert re.search(r"^total(\s+\d+){2}\s+0\s+0\s+0\s+17\s+0$", last, re.MULTILINE), last  # clean; 17 marked
    assert "No drift: the warehouse equals APIXX." in last
    live = re.findall(r"^(customer|order)\s+(\d+)\s+(\d+)\s+(\d+)$", last, re.MULTILINE)
    assert [(e, api == rows) for e, api, rows, _ in live] == [("customer", True), ("order", True)]
    # the demo keeps to its own state id: a user's own job state is left exactly as it was
    assert "2020-01-01T00:00:00.000Z" in meltano_state(tmp_path, "get", USER_STATE_ID).stdout
    assert "replication_key_value" in meltano_state(tmp_path, "get", DEMO_STATE_ID).stdout


def test_demo_says_clearly_when_its_port_is_taken(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        proc = run_demo(tmp_path, busy.getsockname()[1])
    assert proc.returncode == 1
    assert "already in use" in proc.stderr and "Traceback" not in proc.stderr
