"""End to end: the ops streams through `meltano run tap-apixx target-duckdb`, checked against ground truth."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess
from tests.helpers.e2e import (
    OPS_STREAMS,
    MeltanoProject,
    by_key,
    compare_record,
    duckdb_rows,
    meltano_available,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]
SCHEMA = "apixx"
FAILED_RUNS_PER_FLOW_PER_DAY = f"""
    SELECT f.name AS flow, r.flow_id, CAST(r.started_at AS DATE) AS day, count(*) AS failed_runs
    FROM {SCHEMA}.runs AS r JOIN {SCHEMA}.flows AS f ON f.id = r.flow_id
    WHERE r.status = 'failed'
    GROUP BY ALL
    ORDER BY day, flow"""


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=20, read_limit=100000, write_limit=100000,
                         trigger_limit=100000) as server:
        yield server


@pytest.fixture(scope="module")
def project(emu, tmp_path_factory):
    project = MeltanoProject(tmp_path_factory.mktemp("ops"), emu)
    project.env["TAP_APIXX__SELECT"] = json.dumps([f"{name}.*" for name in OPS_STREAMS])
    project.run("run", "tap-apixx", "target-duckdb")
    return project


def truth(emu: EmulatorProcess, kind: str) -> dict[str, dict]:
    data = emu.control("GET", f"/_emulator/ops/{kind}", params={"tenant": "acme", "env": "live"})["data"]
    return {r["id"]: r for r in data}


def rows(project: MeltanoProject, sql: str) -> list[dict]:
    return duckdb_rows(project.workdir / "warehouse.duckdb", sql)


def table(project: MeltanoProject, kind: str) -> dict[str, dict]:
    return by_key(rows(project, f"SELECT * FROM {SCHEMA}.{kind}"), key="id")


def assert_tables_equal_truth(project: MeltanoProject, emu: EmulatorProcess) -> None:
    for kind in OPS_STREAMS:
        expected, loaded = truth(emu, kind), table(project, kind)
        assert set(loaded) == set(expected), f"{kind}: {len(loaded)} rows loaded, {len(expected)} in the API"
        problems = [f"{kind} {oid} {p}" for oid, record in expected.items()
                    for p in compare_record(_stable(record), loaded[oid])]
        assert not problems, "\n".join(problems[:20])


def _stable(record: dict) -> dict:
    """A flow's schedule_detail.next_run_at moves with the clock; the rest must match exactly."""
    return {k: v for k, v in record.items() if k != "schedule_detail"}


def failed_runs_per_flow_per_day(emu: EmulatorProcess) -> dict[tuple[str, str], int]:
    return dict(Counter((r["flow_id"], r["started_at"][:10]) for r in truth(emu, "runs").values()
                        if r["status"] == "failed"))


def test_only_the_selected_ops_tables_are_loaded(project):
    tables = {r["table_name"] for r in rows(project, "SELECT table_name FROM information_schema.tables")}
    assert set(OPS_STREAMS) <= tables
    assert "order" not in tables


def test_ops_tables_equal_the_ground_truth(project, emu):
    assert_tables_equal_truth(project, emu)
    for oid, flow in truth(emu, "flows").items():  # schedule_detail, but for next_run_at
        loaded = json.loads(table(project, "flows")[oid]["schedule_detail"])
        expected = flow["schedule_detail"]
        assert {k: loaded[k] for k in ("interval_seconds", "timezone")} == {
            k: expected[k] for k in ("interval_seconds", "timezone")}


def test_failed_runs_per_flow_per_day(project, emu):
    result = rows(project, FAILED_RUNS_PER_FLOW_PER_DAY)
    expected = failed_runs_per_flow_per_day(emu)
    assert expected, "the seeded history has failed runs"
    assert {(r["flow_id"], str(r["day"])): r["failed_runs"] for r in result} == expected
    names = {f["id"]: f["name"] for f in truth(emu, "flows").values()}
    assert all(r["flow"] == names[r["flow_id"]] for r in result)


def test_a_second_run_upserts_a_run_that_failed_since(project, emu):
    flow = next(f for f in truth(emu, "flows").values() if f["status"] == "active")
    emu.control("POST", "/_emulator/ops/next-run",
                json={"tenant": "acme", "env": "live", "flow_id": flow["id"], "status": "failed"})
    answer = emu.http.post(f"{emu.api_url}/flows/{flow['id']}/trigger", timeout=30,
                           headers={"Authorization": f"Bearer {DEFAULT_KEY}"})
    run_id = answer.json()["run_id"]
    emu.control("POST", "/_emulator/time/advance", json={"seconds": 600})
    project.run("run", "tap-apixx", "target-duckdb")
    assert_tables_equal_truth(project, emu)
    assert table(project, "runs")[run_id]["status"] == "failed"
    result = rows(project, FAILED_RUNS_PER_FLOW_PER_DAY)
    assert {(r["flow_id"], str(r["day"])): r["failed_runs"] for r in result} == failed_runs_per_flow_per_day(emu)
