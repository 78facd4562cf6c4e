"""Contract tests for the emulator's ops API (/v1 flows, runs, connectors, api-keys) over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, assert_error_envelope

ACME_TEST = "apx_test_acme_8d2b6f0c4e1a"
GLOBEX = "apx_live_globex_3a7e9c1d5b2f"
OPS_ONLY = "apx_live_acme_opsonly_2e8d5c"  # flows:read, not flows:write
DATA_ONLY = "apixx_acme_data_7b3e1f9a"  # data:read, not flows:read
FLOW_FIELDS = {"id", "name", "status", "source", "destination", "schedule", "last_run_at", "created_at", "updated_at"}
RUN_FIELDS = {"id", "flow_id", "status", "trigger", "retry_of", "started_at", "finished_at", "duration_ms",
              "records_processed", "records_failed"}
CONNECTOR_FIELDS = {"id", "name", "system", "status", "last_verified_at", "last_error"}
INTERVALS = {"every_15m": 900, "hourly": 3600, "every_4h": 14400, "every_6h": 21600, "every_12h": 43200, "daily": 86400}


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    """This module's own emulator: the tests here pause, trigger and degrade things."""
    with EmulatorProcess(records_per_entity=20, read_limit=100000, write_limit=100000, trigger_limit=100000) as e:
        yield e


def call(emu: EmulatorProcess, method: str, path: str, key: str | None = DEFAULT_KEY, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return emu.http.request(method, emu.base_url + path, headers=headers, timeout=30, **kwargs)


def ok(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def error(response: requests.Response, status: int, code: str) -> str:
    return assert_error_envelope(response, status, code)["message"]


def truth(emu: EmulatorProcess, kind: str, tenant: str = "acme", env: str = "live") -> list[dict]:
    return emu.control("GET", f"/_emulator/ops/{kind}", params={"tenant": tenant, "env": env})["data"]


def advance(emu: EmulatorProcess, seconds: float) -> dict:
    return emu.control("POST", "/_emulator/time/advance", json={"seconds": seconds})


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def walk(emu: EmulatorProcess, path: str, limit: int, **params: Any) -> tuple[list[dict], list[dict]]:
    """Every item of a list route, page by page; returns (items, metas)."""
    items, metas, after = [], [], None
    while True:
        query = {**params, "limit": limit, **({"starting_after": after} if after else {})}
        body = ok(call(emu, "GET", path, params=query))
        assert len(body["data"]) <= limit
        items += body["data"]
        metas.append(body["meta"])
        if not body["meta"]["has_more"]:
            return items, metas
        after = body["data"][-1]["id"]


def active_flow(emu: EmulatorProcess) -> dict:
    return next(f for f in truth(emu, "flows") if f["status"] == "active" and f["connectors"]["source"]["status"]
                == "connected" and f["connectors"]["destination"]["status"] == "connected")


# -- reads --------------------------------------------------------------------------------------
def test_flows_list_matches_ground_truth(emu: EmulatorProcess) -> None:
    body = ok(call(emu, "GET", "/v1/flows"))
    expected = truth(emu, "flows")
    assert body["meta"] == {"total": len(expected), "has_more": False}
    assert [f["id"] for f in body["data"]] == sorted(f["id"] for f in expected)
    assert all(set(f) == FLOW_FIELDS and f["id"].startswith("flw_") for f in body["data"])
    assert [f for f in body["data"]] == [{k: f[k] for k in FLOW_FIELDS} for f in expected]
    assert 4 <= len(expected) <= 8 and {"active", "paused"} <= {f["status"] for f in expected}


def test_flow_detail_adds_connectors_and_schedule(emu: EmulatorProcess) -> None:
    now = ts(emu.control("GET", "/_emulator/time")["now"])
    for flow in ok(call(emu, "GET", "/v1/flows"))["data"]:
        detail = ok(call(emu, "GET", f"/v1/flows/{flow['id']}"))
        assert set(detail) == FLOW_FIELDS | {"connectors", "schedule_detail"}
        assert detail["connectors"]["source"]["system"] == flow["source"]
        assert detail["connectors"]["destination"]["system"] == flow["destination"]
        assert set(detail["connectors"]["source"]) == CONNECTOR_FIELDS
        schedule = detail["schedule_detail"]
        assert schedule["interval_seconds"] == INTERVALS[flow["schedule"]] and schedule["timezone"] == "UTC"
        if flow["status"] == "paused":
            assert schedule["next_run_at"] is None
        else:
            assert 0 < (ts(schedule["next_run_at"]) - now).total_seconds() <= schedule["interval_seconds"] + 1


def test_connectors_list_detail_and_degraded_one(emu: EmulatorProcess) -> None:
    body = ok(call(emu, "GET", "/v1/connectors"))
    assert body["meta"] == {"total": len(body["data"]), "has_more": False} and len(body["data"]) >= 5
    assert [c["id"] for c in body["data"]] == sorted(c["id"] for c in body["data"])
    assert body["data"] == truth(emu, "connectors")
    degraded = [c for c in body["data"] if c["status"] == "degraded"]
    assert degraded and all(set(c["last_error"]) == {"code", "message"} for c in degraded)
    assert all(c["last_error"] is None for c in body["data"] if c["status"] == "connected")
    for connector in body["data"]:
        assert set(connector) == CONNECTOR_FIELDS and connector["id"].startswith("con_")
        assert ok(call(emu, "GET", f"/v1/connectors/{connector['id']}")) == connector


def test_seeded_run_history_is_realistic(emu: EmulatorProcess) -> None:
    runs = truth(emu, "runs")
    now = ts(emu.control("GET", "/_emulator/time")["now"])
    assert 150 <= len(runs) <= 1000
    assert all(ts(r["started_at"]) < now for r in runs)
    assert (now - ts(runs[0]["started_at"])).days >= 14
    statuses = [r["status"] for r in runs]
    assert statuses.count("succeeded") > len(runs) / 2 and "partial" in statuses and "failed" in statuses
    for run in runs:
        assert set(run) == RUN_FIELDS | {"errors"} and run["id"].startswith("run_")
        if run["status"] == "succeeded":
            assert run["records_failed"] == 0 and run["errors"] == []
        if run["status"] == "partial":
            assert run["records_failed"] == len(run["errors"]) > 0
            assert all(e["record_ref"] for e in run["errors"])
        if run["status"] == "failed":
            assert run["errors"] and run["errors"][0]["code"]
        if run["status"] in ("succeeded", "partial", "failed"):
            elapsed = (ts(run["finished_at"]) - ts(run["started_at"])).total_seconds() * 1000
            assert abs(elapsed - run["duration_ms"]) < 1000
    retries = [r for r in runs if r["trigger"] == "retry"]
    assert all(r["retry_of"] in {x["id"] for x in runs} for r in retries)


def test_runs_paging_walks_every_run_in_order(emu: EmulatorProcess) -> None:
    expected = truth(emu, "runs")
    items, metas = walk(emu, "/v1/runs", limit=97)
    assert [r["id"] for r in items] == [r["id"] for r in expected]
    assert [(r["started_at"], r["id"]) for r in items] == sorted((r["started_at"], r["id"]) for r in items)
    assert all(m["total"] == len(expected) for m in metas)
    assert [m["has_more"] for m in metas] == [True] * (len(metas) - 1) + [False]
    assert all(set(r) == RUN_FIELDS for r in items)


def test_page_boundaries_flows_and_connectors(emu: EmulatorProcess) -> None:
    flows, metas = walk(emu, "/v1/flows", limit=2)
    assert [f["id"] for f in flows] == sorted(f["id"] for f in truth(emu, "flows"))
    assert len(metas) == -(-len(flows) // 2)  # ceil: no empty trailing page when it divides evenly
    exact = ok(call(emu, "GET", "/v1/connectors", params={"limit": len(truth(emu, "connectors"))}))
    assert exact["meta"]["has_more"] is False
    last = ok(call(emu, "GET", "/v1/connectors", params={"starting_after": exact["data"][-1]["id"]}))
    assert last["data"] == [] and last["meta"] == {"total": len(exact["data"]), "has_more": False}
    one_short = ok(call(emu, "GET", "/v1/connectors", params={"limit": len(exact["data"]) - 1}))
    assert one_short["meta"]["has_more"] is True


def test_default_and_invalid_limits(emu: EmulatorProcess) -> None:
    assert len(ok(call(emu, "GET", "/v1/runs"))["data"]) == 25
    assert len(ok(call(emu, "GET", "/v1/runs", params={"limit": 100}))["data"]) == 100
    for bad in (0, 101, -1, "ten"):
        for path in ("/v1/runs", "/v1/flows", "/v1/connectors"):
            assert "limit" in error(call(emu, "GET", path, params={"limit": bad}), 422, "validation_error")


def test_unknown_starting_after_names_the_parameter(emu: EmulatorProcess) -> None:
    for path in ("/v1/runs", "/v1/flows", "/v1/connectors"):
        message = error(call(emu, "GET", path, params={"starting_after": "xyz_nope"}), 422, "validation_error")
        assert "starting_after" in message and "xyz_nope" in message


def test_runs_filters_match_ground_truth(emu: EmulatorProcess) -> None:
    runs = truth(emu, "runs")
    flow_id = runs[len(runs) // 2]["flow_id"]
    got, metas = walk(emu, "/v1/runs", limit=100, flow_id=flow_id)
    assert [r["id"] for r in got] == [r["id"] for r in runs if r["flow_id"] == flow_id]
    assert metas[0]["total"] == len(got) > 0
    for status in ("succeeded", "partial", "failed"):
        got, _ = walk(emu, "/v1/runs", limit=100, status=status)
        assert [r["id"] for r in got] == [r["id"] for r in runs if r["status"] == status]
    pivot, later = runs[len(runs) // 3]["started_at"], runs[2 * len(runs) // 3]["started_at"]
    got, _ = walk(emu, "/v1/runs", limit=100, **{"from": pivot, "to": later})
    assert [r["id"] for r in got] == [r["id"] for r in runs if pivot <= r["started_at"] < later]
    assert got[0]["started_at"] == pivot  # from is inclusive ...
    assert all(r["started_at"] != later for r in got)  # ... and to exclusive
    combined, _ = walk(emu, "/v1/runs", limit=100, flow_id=flow_id, status="succeeded", **{"from": pivot})
    assert [r["id"] for r in combined] == [r["id"] for r in runs if r["flow_id"] == flow_id
                                           and r["status"] == "succeeded" and r["started_at"] >= pivot]
    empty = ok(call(emu, "GET", "/v1/runs", params={"flow_id": "flw_unknown"}))
    assert empty == {"data": [], "meta": {"total": 0, "has_more": False}}


def test_runs_filters_validate(emu: EmulatorProcess) -> None:
    assert "status" in error(call(emu, "GET", "/v1/runs", params={"status": "done"}), 422, "validation_error")
    assert "'from'" in error(call(emu, "GET", "/v1/runs", params={"from": "yesterday"}), 422, "validation_error")
    assert "'to'" in error(call(emu, "GET", "/v1/runs", params={"to": "2026-13-01"}), 422, "validation_error")


def test_run_detail_has_errors_and_matches_truth(emu: EmulatorProcess) -> None:
    runs = truth(emu, "runs")
    for run in [next(r for r in runs if r["status"] == s) for s in ("succeeded", "partial", "failed")]:
        assert ok(call(emu, "GET", f"/v1/runs/{run['id']}")) == run


def test_unknown_ids_are_404(emu: EmulatorProcess) -> None:
    for path in ("/v1/flows/flw_nope", "/v1/runs/run_nope", "/v1/connectors/con_nope"):
        assert "nope" in error(call(emu, "GET", path), 404, "not_found")
    for path in ("/v1/flows/flw_nope/pause", "/v1/flows/flw_nope/resume", "/v1/flows/flw_nope/trigger",
                 "/v1/runs/run_nope/retry", "/v1/connectors/con_nope/verify", "/v1/api-keys/key_nope/rotate"):
        error(call(emu, "POST", path), 404, "not_found")


def test_other_tenants_and_environments_get_404_never_403(emu: EmulatorProcess) -> None:
    flow, run, connector = truth(emu, "flows")[0], truth(emu, "runs")[0], truth(emu, "connectors")[0]
    for key in (GLOBEX, ACME_TEST):
        listed = {f["id"] for f in ok(call(emu, "GET", "/v1/flows", key=key))["data"]}
        assert listed and flow["id"] not in listed
        for path in (f"/v1/flows/{flow['id']}", f"/v1/runs/{run['id']}", f"/v1/connectors/{connector['id']}"):
            error(call(emu, "GET", path, key=key), 404, "not_found")
        for path in (f"/v1/flows/{flow['id']}/pause", f"/v1/flows/{flow['id']}/trigger",
                     f"/v1/runs/{run['id']}/retry", f"/v1/connectors/{connector['id']}/verify",
                     "/v1/api-keys/key_001/rotate"):
            error(call(emu, "POST", path, key=key), 404, "not_found")
        error(call(emu, "GET", "/v1/runs", key=key, params={"starting_after": run["id"]}), 422, "validation_error")
    assert ok(call(emu, "GET", "/v1/flows"))["data"][0]["id"] == min(f["id"] for f in truth(emu, "flows"))


def test_scopes(emu: EmulatorProcess) -> None:
    flow, run, connector = truth(emu, "flows")[0], truth(emu, "runs")[0], truth(emu, "connectors")[0]
    reads = ["/v1/flows", f"/v1/flows/{flow['id']}", "/v1/runs", f"/v1/runs/{run['id']}", "/v1/connectors",
             f"/v1/connectors/{connector['id']}"]
    for path in reads:
        assert "flows:read" in error(call(emu, "GET", path, key=DATA_ONLY), 403, "forbidden")
        ok(call(emu, "GET", path, key=OPS_ONLY))
    writes = [f"/v1/flows/{flow['id']}/pause", f"/v1/flows/{flow['id']}/resume", f"/v1/flows/{flow['id']}/trigger",
              f"/v1/runs/{run['id']}/retry", f"/v1/connectors/{connector['id']}/verify", "/v1/api-keys/key_005/rotate"]
    for path in writes:
        assert "flows:write" in error(call(emu, "POST", path, key=OPS_ONLY), 403, "forbidden")
    error(call(emu, "GET", "/v1/flows", key=None), 401, "unauthorized")
    assert ok(call(emu, "GET", f"/v1/flows/{flow['id']}", key=OPS_ONLY))["status"] == flow["status"]  # unchanged


# -- actions ------------------------------------------------------------------------------------
def test_pause_resume_and_their_conflicts(emu: EmulatorProcess) -> None:
    flow = active_flow(emu)
    paused = ok(call(emu, "POST", f"/v1/flows/{flow['id']}/pause"))
    assert paused["status"] == "paused" and paused["id"] == flow["id"] and set(paused) >= FLOW_FIELDS
    assert paused["updated_at"] > flow["updated_at"]
    assert ok(call(emu, "GET", f"/v1/flows/{flow['id']}"))["schedule_detail"]["next_run_at"] is None
    assert "already paused" in error(call(emu, "POST", f"/v1/flows/{flow['id']}/pause"), 409, "conflict")
    assert "paused" in error(call(emu, "POST", f"/v1/flows/{flow['id']}/trigger"), 409, "conflict")
    resumed = ok(call(emu, "POST", f"/v1/flows/{flow['id']}/resume"))
    assert resumed["status"] == "active"
    assert "already active" in error(call(emu, "POST", f"/v1/flows/{flow['id']}/resume"), 409, "conflict")
    assert next(f for f in truth(emu, "flows") if f["id"] == flow["id"])["status"] == "active"


def test_trigger_runs_through_the_state_machine_on_emulator_time(emu: EmulatorProcess) -> None:
    flow = active_flow(emu)
    emu.control("POST", "/_emulator/ops/next-run", json={"flow_id": flow["id"], "status": "partial",
                                                          "duration_seconds": 90})
    run_id = ok(call(emu, "POST", f"/v1/flows/{flow['id']}/trigger"), 202)["run_id"]
    assert run_id.startswith("run_")
    queued = ok(call(emu, "GET", f"/v1/runs/{run_id}"))
    assert queued["status"] == "queued" and queued["trigger"] == "manual" and queued["retry_of"] is None
    assert queued["finished_at"] is None and queued["duration_ms"] is None and queued["errors"] == []
    assert ok(call(emu, "GET", f"/v1/flows/{flow['id']}"))["last_run_at"] == queued["started_at"]
    advance(emu, 30)
    running = ok(call(emu, "GET", f"/v1/runs/{run_id}"))
    assert running["status"] == "running" and running["finished_at"] is None
    in_progress = ok(call(emu, "GET", "/v1/runs", params={"status": "running"}))["data"]
    assert run_id in [r["id"] for r in in_progress] and {r["status"] for r in in_progress} == {"running"}
    advance(emu, 120)
    done = ok(call(emu, "GET", f"/v1/runs/{run_id}"))
    assert done["status"] == "partial" and done["duration_ms"] == 90_000
    assert (ts(done["finished_at"]) - ts(done["started_at"])).total_seconds() == pytest.approx(90, abs=1)
    assert done["records_failed"] == len(done["errors"]) > 0 and done["records_processed"] >= running["records_processed"]
    assert next(r for r in truth(emu, "runs") if r["id"] == run_id) == done
    listed = ok(call(emu, "GET", "/v1/runs", params={"flow_id": flow["id"], "from": done["started_at"]}))
    assert run_id in [r["id"] for r in listed["data"]]


def test_retry_only_failed_or_partial(emu: EmulatorProcess) -> None:
    runs = truth(emu, "runs")
    succeeded = next(r for r in runs if r["status"] == "succeeded")
    assert "succeeded" in error(call(emu, "POST", f"/v1/runs/{succeeded['id']}/retry"), 409, "conflict")
    flow = active_flow(emu)
    emu.control("POST", "/_emulator/ops/next-run", json={"flow_id": flow["id"], "status": "failed",
                                                          "duration_seconds": 20})
    failing = ok(call(emu, "POST", f"/v1/flows/{flow['id']}/trigger"), 202)["run_id"]
    assert "queued" in error(call(emu, "POST", f"/v1/runs/{failing}/retry"), 409, "conflict")
    advance(emu, 60)
    failed = ok(call(emu, "GET", f"/v1/runs/{failing}"))
    assert failed["status"] == "failed" and failed["errors"][0]["record_ref"] is None
    retry_id = ok(call(emu, "POST", f"/v1/runs/{failing}/retry"), 202)["run_id"]
    retry = ok(call(emu, "GET", f"/v1/runs/{retry_id}"))
    assert retry["trigger"] == "retry" and retry["retry_of"] == failing and retry["flow_id"] == flow["id"]
    assert retry_id != failing


def test_verify_and_degrade(emu: EmulatorProcess) -> None:
    connectors = truth(emu, "connectors")
    healthy = next(c for c in connectors if c["status"] == "connected")
    assert ok(call(emu, "POST", f"/v1/connectors/{healthy['id']}/verify")) == {"status": "ok"}
    refreshed = ok(call(emu, "GET", f"/v1/connectors/{healthy['id']}"))
    assert refreshed["last_verified_at"] >= healthy["last_verified_at"]
    degraded = next(c for c in connectors if c["status"] == "degraded")
    assert ok(call(emu, "POST", f"/v1/connectors/{degraded['id']}/verify")) == {"status": "error",
                                                                                   "error": degraded["last_error"]}
    flow = active_flow(emu)
    target = flow["connectors"]["destination"]["id"]
    emu.control("POST", f"/_emulator/ops/connectors/{target}/degrade",
                json={"code": "quota_exceeded", "message": "Daily API quota used up."})
    try:
        after = ok(call(emu, "GET", f"/v1/connectors/{target}"))
        assert after["status"] == "degraded" and after["last_error"]["code"] == "quota_exceeded"
        verdict = ok(call(emu, "POST", f"/v1/connectors/{target}/verify"))
        assert verdict["status"] == "error" and verdict["error"]["code"] == "quota_exceeded"
        run_id = ok(call(emu, "POST", f"/v1/flows/{flow['id']}/trigger"), 202)["run_id"]
        advance(emu, 400)
        run = ok(call(emu, "GET", f"/v1/runs/{run_id}"))
        assert run["status"] == "failed" and run["errors"][0]["code"] == "quota_exceeded"
    finally:
        emu.control("POST", f"/_emulator/ops/connectors/{target}/restore")
    assert ok(call(emu, "POST", f"/v1/connectors/{target}/verify")) == {"status": "ok"}


def test_emulator_time(emu: EmulatorProcess) -> None:
    before = emu.control("GET", "/_emulator/time")
    after = advance(emu, 3600)
    assert after["offset_seconds"] == pytest.approx(before["offset_seconds"] + 3600)
    assert after["unix"] - before["unix"] == pytest.approx(3600, abs=5)
    bad = emu.http.post(emu.base_url + "/_emulator/time/advance", json={"seconds": -5}, timeout=10)
    assert bad.status_code == 422


def test_ground_truth_routes_validate(emu: EmulatorProcess) -> None:
    assert emu.http.get(emu.base_url + "/_emulator/ops/widgets", timeout=10).status_code == 404
    assert emu.http.get(emu.base_url + "/_emulator/ops/flows", params={"tenant": "initech"}, timeout=10).status_code == 404
    globex = truth(emu, "flows", tenant="globex", env="live")
    assert {f["id"] for f in globex}.isdisjoint(f["id"] for f in truth(emu, "flows"))


def test_openapi_documents_ops_routes(emu: EmulatorProcess) -> None:
    spec = emu.http.get(emu.base_url + "/openapi.json", timeout=10).json()
    params = {p["name"] for p in spec["paths"]["/v1/runs"]["get"]["parameters"]}
    assert params >= {"limit", "starting_after", "flow_id", "status", "from", "to"}
    for path in ("/v1/flows/{flow_id}/pause", "/v1/flows/{flow_id}/trigger", "/v1/runs/{run_id}/retry"):
        operation = spec["paths"][path]["post"]
        assert "ErrorEnvelope" in str(operation["responses"]["409"])
    assert "202" in spec["paths"]["/v1/flows/{flow_id}/trigger"]["post"]["responses"]


def test_history_is_deterministic_from_the_seed(emu: EmulatorProcess) -> None:
    def shape() -> list[tuple]:
        return [(r["id"], r["flow_id"], r["status"], r["trigger"], r["records_processed"]) for r in truth(emu, "runs")]

    emu.control("POST", "/_emulator/reset", json={"seed": 42})
    first = shape()
    emu.control("POST", "/_emulator/reset", json={"seed": 42})
    assert shape() == first
    emu.control("POST", "/_emulator/reset", json={"seed": 7})
    assert shape() != first
    emu.control("POST", "/_emulator/reset", json={"seed": 42})
    assert emu.control("GET", "/_emulator/time")["offset_seconds"] == 0


# -- rate limits and keys (each on its own emulator) ----------------------------------------------
def test_write_and_trigger_buckets(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=20, write_limit=3, trigger_limit=2)
    flow = active_flow(emu)
    connector = truth(emu, "connectors")[0]["id"]
    for i in range(3):
        response = call(emu, "POST", f"/v1/connectors/{connector}/verify")
        assert response.status_code == 200 and response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(2 - i)
    limited = call(emu, "POST", f"/v1/connectors/{connector}/verify")
    error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    for i in range(2):  # trigger has its own bucket: the exhausted write bucket does not block it
        response = call(emu, "POST", f"/v1/flows/{flow['id']}/trigger")
        assert response.status_code == 202 and response.headers["X-RateLimit-Limit"] == "2"
    error(call(emu, "POST", f"/v1/flows/{flow['id']}/trigger"), 429, "rate_limited")
    read = call(emu, "GET", "/v1/flows")  # reads are a third bucket
    assert read.status_code == 200 and read.headers["X-RateLimit-Limit"] == "100000"


def test_rotate_key(emulator_factory) -> None:
    emu = emulator_factory(records_per_entity=20)
    error(call(emu, "POST", "/v1/api-keys/key_003/rotate"), 404, "not_found")  # globex's key
    error(call(emu, "POST", "/v1/api-keys/key_002/rotate"), 404, "not_found")  # acme's test-env key
    rotated = ok(call(emu, "POST", "/v1/api-keys/key_005/rotate"))  # the ops-only key, by acme live
    assert rotated["id"] == "key_005" and rotated["secret"].startswith("apx_live_") and rotated["secret"] != OPS_ONLY
    assert "rotated" in error(call(emu, "GET", "/v1/flows", key=OPS_ONLY), 401, "unauthorized")
    assert ok(call(emu, "GET", "/v1/flows", key=rotated["secret"]))["meta"]["total"] >= 4
    own = ok(call(emu, "POST", "/v1/api-keys/key_001/rotate"))  # a key may rotate itself
    error(call(emu, "GET", "/v1/flows"), 401, "unauthorized")
    assert rotated["secret"] not in call(emu, "GET", "/v1/flows", key=own["secret"]).text
    emu.control("POST", "/_emulator/reset", json={})
    assert ok(call(emu, "GET", "/v1/flows", key=OPS_ONLY))["meta"]["total"] >= 4  # reset restores the keys
    error(call(emu, "GET", "/v1/flows", key=own["secret"]), 401, "unauthorized")
