"""Webhook receiver over real HTTP: storage, rejections, event-driven syncs and the CLI."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from apixx_webhooks.cli import main
from apixx_webhooks.server import ReceiverConfig, serve_in_background
from apixx_webhooks.store import EventStore, StoredEvent
from apixx_webhooks.sync_runner import COMMAND_NOT_RUNNABLE, SyncTrigger
from apixx_webhooks.verify import sign
from tests.helpers import wait_for

SECRET = "whsec_server_test_91ab"
MAX_BODY = 4096


def event_body(event_type: str = "run.succeeded", event_id: str = "evt_1") -> bytes:
    payload = {"id": event_id, "type": event_type, "created_at": "2026-01-01T00:00:00.000Z",
               "data": {"id": "run_1", "status": "succeeded"}}
    return json.dumps(payload).encode()


def deliver(
    url: str,
    body: bytes,
    delivery_id: str | None = "del_1",
    event: str | None = "run.succeeded",
    secret: str = SECRET,
    t: int | None = None,
    signature: str | None = None,
) -> requests.Response:
    headers = {"Content-Type": "application/json",
               "X-Apixx-Signature": signature or sign(secret, body, t)}
    if delivery_id is not None:
        headers["X-Apixx-Delivery"] = delivery_id
    if event is not None:
        headers["X-Apixx-Event"] = event
    return requests.post(url, data=body, headers=headers, timeout=10)


def stored_rows(db: Path) -> list[tuple]:
    """Read with a separate connection, as another process would."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT delivery_id, event_id, type, body FROM events").fetchall()


class FakeRunner:
    """Records calls; can hold a run open until released, to test single-flight."""

    def __init__(self, exit_code: int = 0, block: bool = False) -> None:
        self.calls: list[float] = []
        self.exit_code = exit_code
        self.started = threading.Event()
        self.release = threading.Event()
        if not block:
            self.release.set()
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, argv: object) -> int:
        with self._lock:
            self.calls.append(time.monotonic())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.started.set()
        self.release.wait(10)
        with self._lock:
            self.active -= 1
        return self.exit_code


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "webhooks.sqlite"


@pytest.fixture
def receiver(db: Path) -> Iterator[str]:
    store = EventStore(str(db))
    config = ReceiverConfig(secret=SECRET, store=store, max_body=MAX_BODY)
    with serve_in_background(config) as server:
        yield server.url + "/webhooks"
    store.close()


# --- storage -------------------------------------------------------------------------------

def test_a_delivery_is_stored_once_however_often_it_is_retried(receiver: str, db: Path) -> None:
    body = event_body()
    answers = [deliver(receiver, body, t=int(time.time()) - i) for i in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["stored"] for a in answers] == [True, False, False, False, False]
    assert {a.json()["delivery_id"] for a in answers} == {"del_1"}
    assert stored_rows(db) == [("del_1", "evt_1", "run.succeeded", body)]


def test_distinct_deliveries_are_all_stored(receiver: str, db: Path) -> None:
    for i in range(3):
        assert deliver(receiver, event_body(event_id=f"evt_{i}"), delivery_id=f"del_{i}").ok
    assert [row[0] for row in stored_rows(db)] == ["del_0", "del_1", "del_2"]


def test_a_replay_under_a_new_delivery_id_is_a_no_op(receiver: str, db: Path) -> None:
    body = event_body(event_id="evt_replayed")
    first = deliver(receiver, body, delivery_id="del_original")
    replay = deliver(receiver, body, delivery_id="del_forged")
    assert first.json()["stored"] is True and replay.status_code == 200 and replay.json()["stored"] is False
    assert [row[0] for row in stored_rows(db)] == ["del_original"]


def test_the_root_path_also_receives(receiver: str, db: Path) -> None:
    root = receiver.removesuffix("/webhooks") + "/"
    assert deliver(root, event_body()).status_code == 200
    assert len(stored_rows(db)) == 1


def test_stored_durably_before_the_2xx(receiver: str, db: Path) -> None:
    for i in range(20):
        answer = deliver(receiver, event_body(event_id=f"evt_{i}"), delivery_id=f"del_{i}")
        assert answer.status_code == 200
        # a brand-new connection sees the row the moment the answer arrives: it was committed
        with sqlite3.connect(db) as conn:
            found = conn.execute(
                "SELECT count(*) FROM events WHERE delivery_id = ?", (f"del_{i}",)
            ).fetchone()[0]
        assert found == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_retries_of_one_delivery_store_one_row(receiver: str, db: Path) -> None:
    results: list[bool] = []
    body = event_body()

    def send() -> None:
        results.append(deliver(receiver, body, delivery_id="del_race").json()["stored"])

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 9 + [True]
    assert len(stored_rows(db)) == 1


# --- rejections ----------------------------------------------------------------------------

NOW = int(time.time())
BAD_SIGNATURES = {
    "missing": "",
    "malformed": "v1=abc",
    "wrong-secret": sign("whsec_other", event_body(), NOW),
    "tampered-body": sign(SECRET, event_body(event_id="evt_other"), NOW),
    "stale": sign(SECRET, event_body(), NOW - 400),
    "future": sign(SECRET, event_body(), NOW + 4000),
}


@pytest.mark.parametrize("signature", BAD_SIGNATURES.values(), ids=BAD_SIGNATURES.keys())
def test_bad_signatures_get_401_and_store_nothing(
    receiver: str, db: Path, signature: str
) -> None:
    headers = {"X-Apixx-Delivery": "del_1", "X-Apixx-Event": "run.succeeded"}
    if signature:
        headers["X-Apixx-Signature"] = signature
    answer = requests.post(receiver, data=event_body(), headers=headers, timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert stored_rows(db) == []


def test_the_secret_never_appears_in_an_answer(receiver: str) -> None:
    answer = deliver(receiver, event_body(), secret="whsec_other")
    assert SECRET not in answer.text


BAD_INPUTS = {
    "no-delivery-header": {"body": event_body(), "delivery_id": None},
    "no-event-header": {"body": event_body(), "event": None},
    "not-json": {"body": b"{not json"},
    "not-utf8": {"body": b"\xff\xfe\xfd"},
    "json-array": {"body": b"[1, 2]"},
    "event-disagrees": {"body": event_body("run.failed"), "event": "run.succeeded"},
    "no-type": {"body": b'{"id": "evt_1"}'},
    "no-id": {"body": b'{"type": "run.succeeded"}'},
    "control-char-id": {"body": event_body(), "delivery_id": "del\t1"},
}


@pytest.mark.parametrize("kwargs", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_malformed_input_gets_400_and_stores_nothing(
    receiver: str, db: Path, kwargs: dict
) -> None:
    answer = deliver(receiver, **kwargs)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    assert stored_rows(db) == []


def test_an_oversized_body_gets_413(receiver: str, db: Path) -> None:
    body = json.dumps({"id": "evt_1", "type": "run.succeeded", "pad": "x" * MAX_BODY}).encode()
    answer = deliver(receiver, body)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert stored_rows(db) == []


def test_413_is_decided_from_content_length_without_reading(receiver: str) -> None:
    host_port = receiver.removeprefix("http://").removesuffix("/webhooks")
    conn = http.client.HTTPConnection(host_port, timeout=5)
    conn.putrequest("POST", "/webhooks")
    conn.putheader("Content-Length", str(10**9))  # announce a gigabyte, send nothing
    conn.endheaders()
    answer = conn.getresponse()  # a server that tried to read the body would time out here
    assert answer.status == 413
    assert json.loads(answer.read())["error"]["code"] == "payload_too_large"
    conn.close()


def test_a_body_without_content_length_gets_411(receiver: str, db: Path) -> None:
    host_port = receiver.removeprefix("http://").removesuffix("/webhooks")
    conn = http.client.HTTPConnection(host_port, timeout=5)
    conn.putrequest("POST", "/webhooks", skip_accept_encoding=True)
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 411
    assert stored_rows(db) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_get_405(receiver: str, method: str) -> None:
    answer = requests.request(method, receiver, timeout=10)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_other_paths_get_404(receiver: str, db: Path) -> None:
    answer = deliver(receiver.replace("/webhooks", "/hooks"), event_body())
    assert answer.status_code == 404
    assert stored_rows(db) == []


# --- SyncTrigger ---------------------------------------------------------------------------

def test_a_burst_of_events_is_debounced_into_one_run() -> None:
    runner = FakeRunner()
    trigger = SyncTrigger("sync now", ["run.succeeded"], debounce_seconds=0.3, runner=runner)
    for _ in range(5):
        assert trigger.notify("run.succeeded")
        last_event = time.monotonic()
        time.sleep(0.05)
    assert trigger.wait_idle(5)
    trigger.close()
    assert len(runner.calls) == 1
    assert runner.calls[0] - last_event >= 0.3 - 0.01  # started only after a quiet period


def test_events_during_a_run_cause_exactly_one_more_run() -> None:
    runner = FakeRunner(block=True)
    trigger = SyncTrigger("sync now", ["run.succeeded"], debounce_seconds=0.05, runner=runner)
    trigger.notify("run.succeeded")
    assert runner.started.wait(5)
    for _ in range(10):
        trigger.notify("run.succeeded")
    time.sleep(0.2)  # longer than the debounce: a second run must still wait for the first
    assert len(runner.calls) == 1
    runner.release.set()
    assert trigger.wait_idle(5)
    trigger.close()
    assert len(runner.calls) == 2
    assert runner.max_active == 1
    assert [run.exit_code for run in trigger.runs] == [0, 0]


def test_events_that_do_not_match_are_ignored() -> None:
    runner = FakeRunner()
    trigger = SyncTrigger("sync", ["run.succeeded"], debounce_seconds=0, runner=runner)
    assert not trigger.notify("run.failed")
    time.sleep(0.2)
    trigger.close()
    assert runner.calls == []


def test_several_event_types_share_one_command() -> None:
    runner = FakeRunner()
    trigger = SyncTrigger("sync", ["run.succeeded", "run.partial"], debounce_seconds=0.05,
                          runner=runner)
    assert trigger.notify("run.partial")
    assert trigger.wait_idle(5)
    assert trigger.notify("run.succeeded")
    assert trigger.wait_idle(5)
    trigger.close()
    assert len(runner.calls) == 2


def test_a_failing_command_is_recorded_and_later_events_still_run() -> None:
    runner = FakeRunner(exit_code=3)
    trigger = SyncTrigger("sync", ["run.succeeded"], debounce_seconds=0, runner=runner)
    trigger.notify("run.succeeded")
    assert trigger.wait_idle(5)
    trigger.notify("run.succeeded")
    assert trigger.wait_idle(5)
    trigger.close()
    assert [run.exit_code for run in trigger.runs] == [3, 3]


def test_a_runner_that_raises_does_not_kill_the_worker() -> None:
    calls: list[int] = []

    def broken(argv: object) -> int:
        calls.append(1)
        raise RuntimeError("boom")

    trigger = SyncTrigger("sync", ["run.succeeded"], debounce_seconds=0, runner=broken)
    for _ in range(2):
        trigger.notify("run.succeeded")
        assert trigger.wait_idle(5)
    trigger.close()
    assert len(calls) == 2
    assert [run.exit_code for run in trigger.runs] == [-1, -1]


def _append_command(target: Path) -> str:
    script = f"open({str(target)!r}, 'a').write('synced\\n')"
    return shlex.join([sys.executable, "-c", script])


def test_the_real_command_runs_without_a_shell(tmp_path: Path) -> None:
    target = tmp_path / "synced.txt"
    trigger = SyncTrigger(_append_command(target), ["run.succeeded"], debounce_seconds=0.05)
    trigger.notify("run.succeeded")
    assert trigger.wait_idle(10)
    trigger.close()
    assert target.read_text() == "synced\n"
    assert trigger.runs[0].exit_code == 0
    assert trigger.runs[0].duration > 0


def test_a_missing_command_is_an_exit_code_not_a_crash(tmp_path: Path) -> None:
    trigger = SyncTrigger(str(tmp_path / "no-such-binary"), ["*"], debounce_seconds=0)
    trigger.notify("flow.paused")
    assert trigger.wait_idle(5)
    trigger.close()
    assert trigger.runs[0].exit_code == COMMAND_NOT_RUNNABLE


def test_the_server_triggers_only_on_newly_stored_matching_events(db: Path) -> None:
    runner = FakeRunner()
    trigger = SyncTrigger("sync", ["run.succeeded"], debounce_seconds=0.05, runner=runner)
    store = EventStore(str(db))
    config = ReceiverConfig(secret=SECRET, store=store, trigger=trigger)
    with serve_in_background(config) as server:
        url = server.url + "/webhooks"
        assert deliver(url, event_body("run.started", "evt_a"), "del_a", "run.started").ok
        assert deliver(url, event_body("run.succeeded", "evt_b"), "del_b", "run.succeeded").ok
        assert trigger.wait_idle(5)
        assert deliver(url, event_body("run.succeeded", "evt_b"), "del_b", "run.succeeded").ok  # retry
        time.sleep(0.3)
        assert deliver(url, event_body("run.succeeded"), "del_c", "wrong").status_code == 400
        time.sleep(0.3)
    trigger.close()
    store.close()
    assert len(runner.calls) == 1


# --- CLI: events ---------------------------------------------------------------------------

def _seed(db: Path) -> None:
    store = EventStore(str(db))
    rows = [("del_1", "run.failed", "2026-01-01T10:00:00.000Z"),
            ("del_2", "run.succeeded", "2026-01-02T10:00:00.000Z"),
            ("del_3", "run.failed", "2026-01-03T10:00:00.000Z")]
    for delivery_id, event_type, received_at in rows:
        body = json.dumps({"id": f"evt_{delivery_id}", "type": event_type}).encode()
        store.insert(StoredEvent(delivery_id, f"evt_{delivery_id}", event_type, None,
                                 received_at, body))
    store.close()


def _events_json(capsys: pytest.CaptureFixture, *args: str) -> list[dict]:
    capsys.readouterr()
    assert main(["events", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_events_lists_everything_oldest_first(db: Path, capsys: pytest.CaptureFixture) -> None:
    _seed(db)
    events = _events_json(capsys, "--db", str(db))
    assert [e["delivery_id"] for e in events] == ["del_1", "del_2", "del_3"]
    assert events[0]["body"] == {"id": "evt_del_1", "type": "run.failed"}


def test_events_filters(db: Path, capsys: pytest.CaptureFixture) -> None:
    _seed(db)
    by_type = _events_json(capsys, "--db", str(db), "--type", "run.failed")
    assert [e["delivery_id"] for e in by_type] == ["del_1", "del_3"]
    since = _events_json(capsys, "--db", str(db), "--since", "2026-01-02T10:00:00Z")
    assert [e["delivery_id"] for e in since] == ["del_2", "del_3"]
    offset = _events_json(capsys, "--db", str(db), "--since", "2026-01-02T11:00:00+02:00")
    assert [e["delivery_id"] for e in offset] == ["del_2", "del_3"]  # 09:00Z
    latest = _events_json(capsys, "--db", str(db), "--limit", "2")
    assert [e["delivery_id"] for e in latest] == ["del_2", "del_3"]


def test_events_table(db: Path, capsys: pytest.CaptureFixture) -> None:
    _seed(db)
    assert main(["events", "--db", str(db), "--type", "run.succeeded"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["received_at", "type", "delivery_id", "event_id"]
    assert lines[1].split() == ["2026-01-02T10:00:00.000Z", "run.succeeded", "del_2", "evt_del_2"]
    assert len(lines) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "--db", "/nonexistent/dir/x.sqlite"], "no webhook database"),
        (["events", "--since", "yesterday-ish"], "not an ISO 8601"),
        (["serve", "--db", "/nonexistent/dir/x.sqlite", "--port", "0"], "cannot open"),
        (["serve", "--secret-env", "APIXX_TEST_UNSET_SECRET"], "APIXX_TEST_UNSET_SECRET"),
        (["serve", "--on", "run.succeeded"], "--on and --run go together"),
    ],
)
def test_cli_errors_are_one_clear_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APIXX_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("APIXX_TEST_UNSET_SECRET", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_port_in_use_is_one_clear_line(
    db: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APIXX_WEBHOOK_SECRET", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"apixx-webhooks: error: port {port} on 127.0.0.1 is already in use"]


# --- CLI: serve as a real process ----------------------------------------------------------

@pytest.fixture
def serve_process(tmp_path: Path, db: Path) -> Iterator[tuple[str, Path, list[str]]]:
    synced = tmp_path / "synced.txt"
    env = {**os.environ, "APIXX_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "apixx_webhooks.cli", "serve", "--port", "0", "--db", str(db),
         "--on", "run.succeeded", "--on", "run.partial", "--run", _append_command(synced),
         "--debounce-seconds", "1"],  # generous, so a slow CI still sees one burst
        env=env, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    urls: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "listening on " in line:
                urls.put(line.split("listening on ")[1].split()[0])

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield urls.get(timeout=20) + "/webhooks", synced, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_serve_stores_and_runs_one_sync_per_burst(
    serve_process: tuple[str, Path, list[str]], db: Path
) -> None:
    url, synced, log_lines = serve_process
    for i in range(4):
        event_type = "run.succeeded" if i % 2 else "run.partial"
        assert deliver(url, event_body(event_type, f"evt_{i}"), f"del_{i}", event_type).ok
    assert deliver(url, event_body("run.started", "evt_x"), "del_x", "run.started").ok
    assert wait_for(lambda: synced.exists())
    time.sleep(1.0)  # room for a wrong second run to show up
    assert synced.read_text() == "synced\n"
    assert len(stored_rows(db)) == 5
    assert wait_for(lambda: any("sync finished: exit code 0" in line for line in log_lines))
    assert not any(SECRET in line for line in log_lines)
