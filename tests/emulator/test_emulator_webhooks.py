"""Contract tests for the emulator's webhook deliveries: signatures, events, retries over emulator time, the log."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, free_port
from apixx_webhooks.verify import verify

SECRET = "whsec_emulator_test_91f2"


class Receiver:
    """A loopback HTTP server that records each POST and answers the queued status codes (then 200)."""

    def __init__(self, port: int = 0, answers: list[int] | None = None, default: int = 200):
        self.port, self.answers, self.default = port, list(answers or []), default
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "raw": raw,
                                              "at": time.time()})
                    status = receiver.answers.pop(0) if receiver.answers else receiver.default
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.requests) < count:
            time.sleep(0.02)
        return list(self.requests)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    with EmulatorProcess(records_per_entity=20, read_limit=100000, write_limit=100000, trigger_limit=100000) as e:
        yield e


@pytest.fixture(autouse=True)
def fresh(emu: EmulatorProcess) -> None:
    emu.control("POST", "/_emulator/reset", json={})  # clears subscriptions, deliveries, the clock and ops state


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


# -- helpers ------------------------------------------------------------------------------------
def subscribe(emu: EmulatorProcess, url: str, events: list[str] | None = None, secret: str = SECRET) -> dict:
    return emu.control("POST", "/_emulator/webhooks", json={"url": url, "secret": secret,
                                                              **({"events": events} if events else {})})


def deliveries(emu: EmulatorProcess, **filters: str) -> list[dict]:
    return emu.control("GET", "/_emulator/webhooks/deliveries", params=filters)["data"]


def flush(emu: EmulatorProcess) -> None:
    emu.control("POST", "/_emulator/webhooks/flush")


def advance(emu: EmulatorProcess, seconds: float) -> None:
    emu.control("POST", "/_emulator/time/advance", json={"seconds": seconds})


def api(emu: EmulatorProcess, method: str, path: str, status: int = 200) -> Any:
    response = emu.http.request(method, emu.base_url + path, headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
                                timeout=30)
    assert response.status_code == status, response.text
    return response.json()


def healthy_flow(emu: EmulatorProcess) -> dict:
    flows = emu.control("GET", "/_emulator/ops/flows")["data"]
    return next(f for f in flows if f["status"] == "active" and all(
        c["status"] == "connected" for c in f["connectors"].values()))


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_signature(request: dict[str, Any], secret: str = SECRET) -> int:
    """Recompute the HMAC from the raw body; returns the signature's t."""
    t_part, v1_part = request["headers"]["X-Apixx-Signature"].split(",")
    t, sent = int(t_part.removeprefix("t=")), v1_part.removeprefix("v1=")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + request["raw"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sent, expected)
    verify(secret, request["headers"]["X-Apixx-Signature"], request["raw"])  # the tap's verifier agrees
    return t


# -- tests --------------------------------------------------------------------------------------
def test_flow_paused_delivery_is_signed_and_carries_the_flow(emu: EmulatorProcess, receiver: Receiver) -> None:
    subscribe(emu, receiver.url(), ["flow.paused"])
    flow = healthy_flow(emu)
    paused = api(emu, "POST", f"/v1/flows/{flow['id']}/pause")
    flush(emu)
    [request] = receiver.wait_for(1)
    headers = request["headers"]
    assert request["path"] == "/hook" and headers["Content-Type"] == "application/json"
    assert headers["X-Apixx-Event"] == "flow.paused" and headers["X-Apixx-Delivery"].startswith("del_")
    assert abs(check_signature(request) - time.time()) < 10  # t is the send time
    body = json.loads(request["raw"])
    assert set(body) == {"id", "type", "created_at", "data"} and body["id"].startswith("evt_")
    assert body["type"] == "flow.paused" and body["data"] == paused and body["data"]["status"] == "paused"
    with pytest.raises(Exception):  # noqa: B017 - any verification error: a wrong secret must not verify
        verify("wrong-secret", headers["X-Apixx-Signature"], request["raw"])
    [logged] = deliveries(emu)
    assert logged["id"] == headers["X-Apixx-Delivery"] and logged["state"] == "delivered"
    assert logged["event_id"] == body["id"] and [a["status"] for a in logged["attempts"]] == [200]


def test_run_events_follow_the_run_through_emulator_time(emu: EmulatorProcess, receiver: Receiver) -> None:
    subscribe(emu, receiver.url("/all"))
    subscribe(emu, receiver.url("/failed"), ["run.failed"])
    flow = healthy_flow(emu)
    run_ids = {}
    for status in ("succeeded", "partial", "failed"):
        emu.control("POST", "/_emulator/ops/next-run", json={"flow_id": flow["id"], "status": status,
                                                              "duration_seconds": 60})
        run_ids[api(emu, "POST", f"/v1/flows/{flow['id']}/trigger", 202)["run_id"]] = status
    advance(emu, 300)
    flush(emu)
    requests_ = receiver.wait_for(3 * 2 + 1)
    events = [json.loads(r["raw"]) for r in requests_ if r["path"] == "/all"]
    for run_id, status in run_ids.items():
        mine = {e["type"]: e for e in events if e["data"]["id"] == run_id}
        assert set(mine) == {"run.started", f"run.{status}"}
        assert mine["run.started"]["data"]["status"] == "running"
        assert ts(mine["run.started"]["created_at"]) < ts(mine[f"run.{status}"]["created_at"])
        done = mine[f"run.{status}"]["data"]
        assert done["status"] == status and done == api(emu, "GET", f"/v1/runs/{run_id}")
        assert (done["errors"] == []) == (status == "succeeded")  # zero record errors
        assert (len(done["errors"]) == done["records_failed"] > 0) == (status == "partial")
        assert bool(done["errors"] and done["errors"][0]["record_ref"] is None) == (status == "failed")
    only_failed = [json.loads(r["raw"]) for r in requests_ if r["path"] == "/failed"]
    assert [(e["type"], run_ids[e["data"]["id"]]) for e in only_failed] == [("run.failed", "failed")]
    assert all(r["headers"]["X-Apixx-Event"] == json.loads(r["raw"])["type"] for r in requests_)


def test_connector_degraded_event(emu: EmulatorProcess, receiver: Receiver) -> None:
    subscribe(emu, receiver.url(), ["connector.degraded"])
    connector = next(c for c in emu.control("GET", "/_emulator/ops/connectors")["data"] if c["status"] == "connected")
    emu.control("POST", f"/_emulator/ops/connectors/{connector['id']}/degrade",
                json={"code": "auth_expired", "message": "Token revoked."})
    flush(emu)
    [request] = receiver.wait_for(1)
    body = json.loads(request["raw"])
    assert body["type"] == "connector.degraded" and body["data"]["id"] == connector["id"]
    assert body["data"]["status"] == "degraded" and body["data"]["last_error"] == {"code": "auth_expired",
                                                                                    "message": "Token revoked."}
    check_signature(request)


def test_a_retry_keeps_the_delivery_id_and_body(emu: EmulatorProcess) -> None:
    receiver = Receiver(answers=[500]).start()
    try:
        subscribe(emu, receiver.url())
        api(emu, "POST", f"/v1/flows/{healthy_flow(emu)['id']}/pause")
        flush(emu)
        receiver.wait_for(1)
        [pending] = deliveries(emu)
        assert pending["state"] == "pending" and [a["status"] for a in pending["attempts"]] == [500]
        gap = (ts(pending["next_attempt_at"]) - ts(pending["attempts"][0]["at"])).total_seconds()
        assert gap == pytest.approx(60, abs=1)
        advance(emu, 30)  # not due yet
        assert len(receiver.wait_for(2, timeout=0.5)) == 1
        advance(emu, 31)
        first, second = receiver.wait_for(2)
        assert first["headers"]["X-Apixx-Delivery"] == second["headers"]["X-Apixx-Delivery"]
        assert first["raw"] == second["raw"]
        check_signature(second)
        [done] = deliveries(emu)
        assert done["state"] == "delivered" and [a["status"] for a in done["attempts"]] == [500, 200]
        assert done["next_attempt_at"] is None
    finally:
        receiver.stop()


def test_deliveries_are_retried_when_the_receiver_was_down(emu: EmulatorProcess) -> None:
    port = free_port()  # nothing listens there yet
    sub = subscribe(emu, f"http://127.0.0.1:{port}/hook", ["run.failed"])
    emu.control("POST", "/_emulator/webhooks/test", json={"type": "run.failed", "data": {"id": "run_x"}})
    flush(emu)
    [pending] = deliveries(emu, subscription_id=sub["id"])
    assert pending["state"] == "pending" and pending["attempts"][0]["status"] is None
    assert pending["attempts"][0]["error"]
    receiver = Receiver(port=port).start()
    try:
        advance(emu, 61)
        [request] = receiver.wait_for(1)
        assert request["headers"]["X-Apixx-Delivery"] == pending["id"]
        assert json.loads(request["raw"])["data"] == {"id": "run_x"}
        [done] = deliveries(emu, state="delivered")
        assert done["id"] == pending["id"] and len(done["attempts"]) == 2
    finally:
        receiver.stop()


def test_backoff_doubles_then_gives_up_after_24_hours(emu: EmulatorProcess) -> None:
    receiver = Receiver(default=503).start()
    try:
        subscribe(emu, receiver.url())
        emu.control("POST", "/_emulator/webhooks/test", json={"type": "flow.paused", "data": {}})
        flush(emu)
        gaps = []
        for _ in range(60):
            [delivery] = deliveries(emu)
            if delivery["state"] != "pending":
                break
            gap = (ts(delivery["next_attempt_at"]) - ts(delivery["attempts"][-1]["at"])).total_seconds()
            gaps.append(round(gap))
            advance(emu, gap + 1)
        assert delivery["state"] == "failed" and delivery["next_attempt_at"] is None
        assert gaps[:8] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
        span = (ts(delivery["attempts"][-1]["at"]) - ts(delivery["created_at"])).total_seconds()
        assert 23 * 3600 < span <= 24 * 3600
        assert len(receiver.requests) == len(delivery["attempts"]) == len(gaps) + 1
        assert len({r["headers"]["X-Apixx-Delivery"] for r in receiver.requests}) == 1
    finally:
        receiver.stop()


def test_subscriptions_are_managed_on_the_control_plane(emu: EmulatorProcess, receiver: Receiver) -> None:
    for bad in ({"url": "ftp://x", "secret": "s"}, {"url": receiver.url(), "secret": ""},
                {"url": receiver.url(), "secret": "s", "events": ["run.exploded"]}):
        assert emu.http.post(emu.base_url + "/_emulator/webhooks", json=bad, timeout=10).status_code == 422
    sub = subscribe(emu, receiver.url(), ["flow.paused", "run.failed"])
    assert sub["id"].startswith("whk_") and sub["events"] == ["flow.paused", "run.failed"]
    listed = emu.control("GET", "/_emulator/webhooks")["data"]
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    assert SECRET not in emu.http.get(emu.base_url + "/_emulator/webhooks/deliveries", timeout=10).text
    assert emu.control("DELETE", f"/_emulator/webhooks/{sub['id']}") == {"deleted": sub["id"]}
    assert emu.http.delete(emu.base_url + f"/_emulator/webhooks/{sub['id']}", timeout=10).status_code == 404
    api(emu, "POST", f"/v1/flows/{healthy_flow(emu)['id']}/pause")
    flush(emu)
    assert deliveries(emu) == [] and receiver.wait_for(1, timeout=0.5) == []
    assert emu.http.post(emu.base_url + "/_emulator/webhooks/test", json={"type": "nope"}, timeout=10).status_code == 422


def test_reset_clears_the_delivery_log(emu: EmulatorProcess, receiver: Receiver) -> None:
    subscribe(emu, receiver.url())
    emu.control("POST", "/_emulator/webhooks/test", json={"type": "flow.paused", "data": {}})
    flush(emu)
    assert len(deliveries(emu)) == 1
    emu.control("POST", "/_emulator/reset", json={})
    assert deliveries(emu) == [] and emu.control("GET", "/_emulator/webhooks")["data"] == []


def test_cli_webhook_flag_subscribes_to_every_event(emulator_factory, receiver: Receiver) -> None:
    emu = emulator_factory(records_per_entity=20, webhook=f"{receiver.url('/cli')}=cli-secret")
    [sub] = emu.control("GET", "/_emulator/webhooks")["data"]
    assert sub["url"] == receiver.url("/cli") and sub["events"] == ["*"] and sub["source"] == "settings"
    api(emu, "POST", f"/v1/flows/{healthy_flow(emu)['id']}/pause")
    emu.control("POST", "/_emulator/webhooks/flush")
    [request] = receiver.wait_for(1)
    assert request["path"] == "/cli" and check_signature(request, "cli-secret")
    emu.control("POST", "/_emulator/reset", json={})
    assert [s["url"] for s in emu.control("GET", "/_emulator/webhooks")["data"]] == [receiver.url("/cli")]
