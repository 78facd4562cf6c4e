"""The control plane under hostile input: bounded numbers, JSON errors only, JSON bodies only,
loopback Host only, and a prompt stop on SIGTERM. Each class is generated, not only sampled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apixx_emulator.cli import parser
from apixx_emulator.inputs import Field
from apixx_emulator.routes import control
from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess

EXAMPLES = int(os.environ.get("APIXX_FUZZ_EXAMPLES", "60"))  # `make soak` raises it
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# route -> (its fields, a smallest valid body to which one bad field is added)
ROUTES: dict[str, tuple[dict[str, Field], dict[str, Any]]] = {
    "/_emulator/reset": (control.RESET_FIELDS, {}),
    "/_emulator/churn": (control.CHURN_FIELDS, {"entity": "order"}),
    "/_emulator/faults": (control.FAULT_FIELDS, {}),
    "/_emulator/limits": (control.LIMIT_FIELDS, {}),
    "/_emulator/bad-data": (control.PLAN_FIELDS, {"entity": "order", "kind": "out_of_order", "count": 0}),
    "/_emulator/time/advance": (control.ADVANCE_FIELDS, {"seconds": 0}),
    "/_emulator/ops/next-run": (control.NEXT_RUN_FIELDS, {"status": "succeeded", "flow_id": "flw_none"}),
    "/_emulator/webhooks": (control.SUBSCRIBE_FIELDS, {"url": "http://127.0.0.1:9/x", "secret": "s"}),
    "/_emulator/webhooks/test": (control.TEST_EVENT_FIELDS, {"type": "flow.paused"}),
}
NUMERIC = [(path, name, spec) for path, (fields, _) in ROUTES.items()
           for name, spec in fields.items() if spec.kind in ("int", "number")]
POST_ROUTES = [*ROUTES, "/_emulator/webhooks/flush", "/_emulator/ops/connectors/con_x/restore"]


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=50, read_limit=10**9, write_limit=10**9) as emu:
        yield emu


def post(emu: EmulatorProcess, path: str, body: bytes, **headers: str) -> requests.Response:
    headers = {"Content-Type": "application/json", **headers}
    return emu.http.post(emu.base_url + path, data=body, headers=headers, timeout=30)


def assert_json_error(response: requests.Response, status: int | None = None) -> dict:
    """A 4xx in the documented envelope with the request id of the header; never a 5xx."""
    assert response.status_code < 500, response.text[:300]
    assert 400 <= response.status_code, response.text[:300]
    if status is not None:
        assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["request_id"] == response.headers["X-Request-Id"] and error["code"] and error["message"]
    return error


def out_of_range(spec: Field) -> st.SearchStrategy:
    """Values a numeric field must refuse: past either bound, of another type, or not an integer."""
    lo, hi = spec.lo, spec.hi
    wrong = [st.floats(min_value=float(hi), exclude_min=True, allow_infinity=False, allow_nan=False),
             st.floats(max_value=float(lo), exclude_max=True, allow_infinity=False, allow_nan=False),
             st.sampled_from([1e300, -1e300, 1e19, 2**64]),
             st.text(max_size=10), st.booleans(), st.lists(st.integers(), max_size=2),
             st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)]
    if spec.kind == "int":
        wrong += [st.integers(min_value=int(hi) + 1), st.integers(max_value=int(lo) - 1),
                  st.floats(min_value=float(lo), max_value=float(hi)).filter(lambda v: not float(v).is_integer())]
    return st.one_of(wrong)


@given(data=st.data())
@FUZZ
def test_numbers_out_of_bounds_are_a_422_naming_the_field(emu, data):
    path, name, spec = data.draw(st.sampled_from(NUMERIC))
    value = data.draw(out_of_range(spec))
    body = {**ROUTES[path][1], name: value}
    error = assert_json_error(post(emu, path, json.dumps(body).encode()), 422)
    assert f"'{name}'" in error["message"]


@given(data=st.data())
@FUZZ
def test_numbers_that_json_cannot_hold_are_refused(emu, data):
    path, name, _ = data.draw(st.sampled_from(NUMERIC))
    literal = data.draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "01", "0x10", "1e"]))
    base = json.dumps(ROUTES[path][1])[:-1]
    raw = f'{base}{", " if len(base) > 1 else ""}"{name}": {literal}}}'.encode()
    assert_json_error(post(emu, path, raw))


def test_the_reported_example_latency_1e300_is_refused_and_nothing_hangs(emu):
    error = assert_json_error(post(emu, "/_emulator/faults", b'{"latency_ms": 1e300}'), 422)
    assert "'latency_ms'" in error["message"] and "60_000" in error["message"]
    assert emu.get("/api/public/data/order", params={"limit": 1}).status_code == 200


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)


@given(path=st.sampled_from(POST_ROUTES), body=JSON)
@FUZZ
def test_any_json_body_is_answered_in_json_never_a_5xx(emu, path, body):
    response = post(emu, path, json.dumps(body).encode())
    if response.status_code >= 400:
        assert_json_error(response)
    else:
        response.json()


@given(path=st.sampled_from(POST_ROUTES), body=st.binary(max_size=200))
@FUZZ
def test_any_bytes_are_answered_in_json_never_a_5xx(emu, path, body):
    response = post(emu, path, body)
    if response.status_code >= 400:
        assert_json_error(response)


@given(path=st.sampled_from(list(ROUTES)), field=st.sampled_from(["tenant", "seed", "entity", "update", "kind", "latency"])
       | st.text(min_size=1, max_size=12), value=JSON)
@FUZZ
def test_unknown_or_misspelt_fields_are_named(emu, path, field, value):
    fields, base = ROUTES[path]
    if field in fields:
        return
    error = assert_json_error(post(emu, path, json.dumps({**base, field: value}).encode()), 422)
    assert f"'{field}'" in error["message"]


MEDIA = st.one_of(st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                   "text/plain", "text/json", "application/jsonx", "application/xml", ""]),
                  st.from_regex(r"[a-z]{1,8}/[a-z.+-]{1,12}", fullmatch=True).filter(lambda m: m != "application/json"))


@given(path=st.sampled_from(POST_ROUTES), media=MEDIA)
@FUZZ
def test_a_body_that_is_not_declared_json_is_refused(emu, path, media):
    headers = {"Content-Type": media} if media else {}
    response = emu.http.post(emu.base_url + path, data=b"seed=7", headers=headers, timeout=30)
    if not media:  # requests sends no Content-Type at all
        assert "content-type" not in {k.lower() for k in response.request.headers}
    error = assert_json_error(response, 415)
    assert "application/json" in error["message"]


def test_json_with_a_charset_is_json(emu):
    response = post(emu, "/_emulator/faults", b"{}", **{"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200, response.text


def test_a_cross_site_form_post_cannot_reset_the_emulator(emulator_factory):
    emu = emulator_factory()
    changed = emu.churn("order", inserts=1)["inserted"][0]
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
    assert_json_error(emu.http.post(emu.base_url + "/_emulator/reset", data="seed=1", headers=form, timeout=10), 415)
    no_type = emu.http.post(emu.base_url + "/_emulator/reset", headers={"Origin": "https://evil.example"}, timeout=10)
    assert_json_error(no_type, 415)
    assert emu.get(f"/api/public/data/order/{changed}").status_code == 200  # nothing was reset


HOSTS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){1,3}(:[0-9]{1,5})?", fullmatch=True),
    st.tuples(st.ip_addresses(v=4).filter(lambda ip: not ip.is_loopback), st.one_of(st.none(), st.integers(0, 65535)))
    .map(lambda a: str(a[0]) if a[1] is None else f"{a[0]}:{a[1]}"),
    st.ip_addresses(v=6).filter(lambda ip: not ip.is_loopback).map(lambda ip: f"[{ip}]"),
    st.sampled_from(["localhost.evil.example", "127.0.0.1.evil.example", "127.0.0.1@evil.example", "evil.example#127.0.0.1",
                     "[::2]", "[::1].evil", "localhostx", "127.0.0", "0.0.0.0", "127.0.0.1:80:80", "[::1]x", "127.0.0.1:abc"]),
).filter(lambda h: not h.startswith("localhost:") and h != "localhost")


@given(host=HOSTS, method=st.sampled_from(["GET", "POST", "DELETE"]))
@FUZZ
def test_a_host_that_is_not_loopback_is_refused(emu, host, method):
    """A page on another site that rebinds its name to 127.0.0.1 still sends its own name as Host."""
    response = emu.http.request(method, emu.base_url + "/_emulator/faults", headers={"Host": host, "Content-Type": "application/json"},
                                data=b"{}" if method == "POST" else None, timeout=30)
    error = assert_json_error(response, 403)
    assert "loopback Host" in error["message"]


@given(host=st.sampled_from(["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "LOCALHOST"]),
       port=st.one_of(st.none(), st.integers(0, 65535)))
@FUZZ
def test_loopback_hosts_are_accepted(emu, host, port):
    value = host if port is None else f"{host}:{port}"
    response = emu.http.get(emu.base_url + "/_emulator/faults", headers={"Host": value}, timeout=30)
    assert response.status_code == 200, response.text


def asgi_get(app: Any, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One GET straight through the ASGI app, as uvicorn would make it from a loopback client."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8765"), *((k.lower().encode(), v.encode()) for k, v in headers.items())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


def test_an_unexpected_error_is_a_json_500_with_the_request_id():
    from apixx_emulator.app import create_app
    from apixx_emulator.models import Settings

    app = create_app(Settings(records_per_entity=5))

    def boom() -> None:
        raise RuntimeError("a bug")

    app.app.add_api_route("/_emulator/boom", boom, methods=["GET"])
    app.app.add_api_route("/api/public/data/{entity}/{cid}/boom", boom, methods=["GET"])
    for path, headers in (("/_emulator/boom", {}), ("/api/public/data/order/x/boom", {"Authorization": f"Bearer {DEFAULT_KEY}"})):
        status, answer_headers, body = asgi_get(app, path, headers)
        assert status == 500 and answer_headers["content-type"] == "application/json"
        error = json.loads(body)["error"]
        assert error["code"] == "internal_error" and error["request_id"] == answer_headers["x-request-id"]
        assert b"a bug" not in body and b"Traceback" not in body


def test_sigterm_stops_it_promptly_even_with_a_slow_request_in_flight():
    emu = EmulatorProcess(records_per_entity=50).start()
    try:
        emu.faults(latency_ms=60_000)  # the largest allowed: each API request waits a minute
        answers: list[Any] = []

        def slow_call() -> None:
            try:
                answers.append(emu.http.get(emu.data_url + "/order", headers={"Authorization": f"Bearer {DEFAULT_KEY}"}, timeout=120))
            except requests.RequestException as err:
                answers.append(err)

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(1.0)  # the request is now sleeping in the emulator
        assert caller.is_alive()
        emu.proc.send_signal(signal.SIGTERM)
        emu.proc.wait(10)  # raises TimeoutExpired (a failure) when it does not stop
        caller.join(10)
        assert not caller.is_alive()
        answer = answers[0]
        if isinstance(answer, requests.Response):  # told it is shutting down, in the envelope
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "internal_error"
    finally:
        if emu.proc.poll() is None:
            os.killpg(emu.proc.pid, signal.SIGKILL)
        emu.stop()


def test_sigterm_stops_an_idle_emulator():
    with EmulatorProcess(records_per_entity=50) as emu:
        emu.proc.send_signal(signal.SIGTERM)
        try:
            emu.proc.wait(10)
        except subprocess.TimeoutExpired:
            pytest.fail("the emulator did not stop within 10 s of SIGTERM")


CLI_NUMBERS = {"--port": (0, 65535), "--records-per-entity": (1, 1_000_000), "--max-tie-size": (1, 1_000_000),
               "--read-limit": (1, 10**9), "--write-limit": (1, 10**9), "--trigger-limit": (1, 10**9),
               "--rate-window-seconds": (0.01, 86400), "--seed": (-(2**63), 2**63 - 1)}


@given(flag=st.sampled_from(sorted(CLI_NUMBERS)), data=st.data())
@FUZZ
def test_cli_numbers_out_of_bounds_are_one_usage_error(flag, data, capsys):
    lo, hi = CLI_NUMBERS[flag]
    value = data.draw(st.one_of(st.integers(min_value=int(hi) + 1).map(str), st.integers(max_value=int(lo) - 1).map(str),
                                st.sampled_from(["nan", "inf", "-inf", "1e400", "", "ten", "1_0x"]),
                                st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not float(v).is_integer()).map(repr)
                                if isinstance(lo, int) else st.floats(max_value=lo, exclude_max=True).map(repr)))
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args([f"{flag}={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"apixx-emulator: error: argument {flag}: ")
    assert "Traceback" not in err
