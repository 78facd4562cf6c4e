"""Webhook receiver under hostile conditions: kill -9 with a sync pending, slow and crowding
clients, and a --help that reads as plain text with its defaults."""

from __future__ import annotations

import json
import os
import queue
import resource
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from apixx_webhooks.cli import build_parser, main
from apixx_webhooks.server import ReceiverConfig, serve_in_background
from apixx_webhooks.store import EventStore, StoredEvent
from apixx_webhooks.sync_runner import SyncTrigger
from apixx_webhooks.verify import sign
from tests.helpers import wait_for

SECRET = "whsec_hardening_test_5c2e"


def event_body(event_type: str = "run.succeeded", event_id: str = "evt_1") -> bytes:
    return json.dumps({"id": event_id, "type": event_type, "data": {}}).encode()


def deliver(url: str, event_id: str, event_type: str = "run.succeeded") -> requests.Response:
    body = event_body(event_type, event_id)
    headers = {"X-Apixx-Signature": sign(SECRET, body), "X-Apixx-Event": event_type,
               "X-Apixx-Delivery": f"del_{event_id}", "Content-Type": "application/json"}
    return requests.post(url, data=body, headers=headers, timeout=30)


def pending_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM pending_syncs").fetchone()[0]


# --- a pending sync is durable ---------------------------------------------------------------

class Receiver:
    """`apixx-webhooks serve` as a real process, its log collected line by line."""

    def __init__(self, db: Path, *args: str) -> None:
        env = {**os.environ, "APIXX_WEBHOOK_SECRET": SECRET}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apixx_webhooks.cli", "serve", "--port", "0",
             "--db", str(db), *args],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        urls: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                if "listening on " in line:
                    urls.put(line.split("listening on ")[1].split()[0])

        threading.Thread(target=pump, daemon=True).start()
        self.url = urls.get(timeout=30) + "/webhooks"

    def logged(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no handler, no cleanup
        self.proc.wait(15)


@pytest.fixture
def start_receiver() -> Iterator[Callable[..., Receiver]]:
    """Starts receivers; whatever a failing test left running is killed afterwards."""
    started: list[Receiver] = []

    def start(db: Path, *args: str) -> Receiver:
        started.append(Receiver(db, *args))
        return started[-1]

    yield start
    for receiver in started:
        if receiver.proc.poll() is None:
            receiver.kill()


def _append_command(target: Path) -> str:
    script = f"open({str(target)!r}, 'a').write('synced\\n')"
    return f"{sys.executable} -c \"{script}\""


def test_a_sync_pending_at_kill_9_runs_after_restart(
    tmp_path: Path, start_receiver: Callable[..., Receiver]
) -> None:
    db, synced = tmp_path / "hooks.sqlite", tmp_path / "synced.txt"
    sync_args = ("--on", "run.succeeded", "--run", _append_command(synced))
    first = start_receiver(db, *sync_args, "--debounce-seconds", "3600")  # the sync cannot run yet
    try:
        for i in range(3):
            assert deliver(first.url, f"evt_{i}").json()["stored"] is True
        assert deliver(first.url, "evt_other", "run.started").ok  # not an --on event
        assert pending_rows(db) == 3  # acknowledged, so already on disk
    finally:
        first.kill()
    assert not synced.exists()

    second = start_receiver(db, *sync_args, "--debounce-seconds", "0")
    assert second.logged("a sync requested before the last shutdown has not run yet")
    assert wait_for(lambda: second.logged("sync finished: exit code 0"))
    assert second.stop() == 0
    assert synced.read_text() == "synced\n"  # one sync covers the three requests
    assert pending_rows(db) == 0

    third = start_receiver(db, *sync_args, "--debounce-seconds", "0")
    assert not third.logged("has not run yet")  # logged before "listening on", if at all
    assert third.stop() == 0
    assert synced.read_text() == "synced\n"


class GatedRunner:
    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, argv: object) -> int:
        self.calls += 1
        self.started.set()
        self.release.wait(30)
        return 0


def _stored(store: EventStore, event_id: str) -> None:
    event = StoredEvent(f"del_{event_id}", event_id, "run.succeeded", None,
                        "2026-01-01T00:00:00.000Z", event_body(event_id=event_id))
    assert store.insert(event, request_sync=True)


def test_a_request_that_arrives_during_a_sync_outlives_that_sync(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "hooks.sqlite"))
    runner = GatedRunner()
    trigger = SyncTrigger("sync", ["run.succeeded"], debounce_seconds=0, runner=runner,
                          pending=store)
    _stored(store, "evt_before")
    trigger.notify("run.succeeded")
    assert runner.started.wait(10)
    trigger.debounce_seconds = 3600  # the follow-up sync must not start before we stop
    _stored(store, "evt_during")
    newest = store.pending_sync()
    trigger.notify("run.succeeded")
    runner.release.set()
    trigger.close(timeout=10)  # finishes the running sync, then stops
    assert runner.calls == 1
    assert store.pending_sync() == newest  # the first sync started before it: still owed

    again = GatedRunner()
    again.release.set()
    restarted = SyncTrigger("sync", ["run.succeeded"], debounce_seconds=0, runner=again,
                            pending=store)
    assert restarted.wait_idle(10)
    restarted.close()
    assert again.calls == 1 and store.pending_sync() is None
    store.close()


def test_duplicates_and_unmatched_events_owe_no_sync(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "hooks.sqlite"))
    _stored(store, "evt_1")
    duplicate = StoredEvent("del_evt_1", "evt_1", "run.succeeded", None, "x", b"{}")
    assert store.insert(duplicate, request_sync=True) is False
    other = StoredEvent("del_2", "evt_2", "run.started", None, "x", b"{}")
    assert store.insert(other, request_sync=False) is True
    assert pending_rows(Path(store.path)) == 1
    store.close()


# --- bounded connections ---------------------------------------------------------------------

def _threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line")


def _answered(sock: socket.socket) -> bytes | None:
    """What the server sent (b"" for a plain close), or None while it is still silent."""
    # poll, not select: a thousand sockets take descriptors past select()'s FD_SETSIZE (1024)
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
    if not poller.poll(0):
        return None
    try:
        return sock.recv(4096)
    except OSError:
        return b""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to count threads")
def test_a_thousand_slow_clients_cannot_pile_up_threads(
    tmp_path: Path, start_receiver: Callable[..., Receiver]
) -> None:
    cap, crowd = 8, 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = crowd + 512  # the crowd plus what pytest, the emulators and the receiver hold
    if soft < wanted:  # a fresh machine's soft limit is often 1024: raise it, up to the hard one
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    receiver = start_receiver(tmp_path / "hooks.sqlite", "--max-connections", str(cap),
                        "--request-deadline", "120")  # nothing is cut off during the test
    host, port = receiver.url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    idle_threads = _threads_of(receiver.proc.pid)
    sockets: list[socket.socket] = []
    try:
        for _ in range(crowd):
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\n")  # headers never end
            sockets.append(sock)
        answers: dict[int, bytes] = {}

        def all_but_cap_answered() -> bool:
            for i, sock in enumerate(sockets):
                if i not in answers and (got := _answered(sock)) is not None:
                    answers[i] = got
            return len(answers) >= crowd - cap

        assert wait_for(all_but_cap_answered, timeout=60)
        assert len(answers) == crowd - cap  # exactly `cap` are held, none beyond
        assert all(a.startswith(b"HTTP/1.1 503") or a == b"" for a in answers.values())
        assert sum(a.startswith(b"HTTP/1.1 503") for a in answers.values()) > crowd // 2
        assert _threads_of(receiver.proc.pid) <= idle_threads + cap

        busy = deliver(receiver.url, "evt_busy")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.json()["error"]["code"] == "busy"
    finally:
        for sock in sockets:
            sock.close()
    # the held handlers see their clients go and free their slots
    assert wait_for(lambda: deliver(receiver.url, "evt_after").status_code == 200)
    assert _threads_of(receiver.proc.pid) <= idle_threads + cap
    assert receiver.stop() == 0
    assert receiver.logged("busy: 8 deliveries in progress")


@pytest.fixture
def quick_deadline(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    db = tmp_path / "hooks.sqlite"
    store = EventStore(str(db))
    config = ReceiverConfig(secret=SECRET, store=store, request_deadline=1.0)
    with serve_in_background(config) as server:
        host, port = server.server_address[:2]
        yield host, port, db
    store.close()


def _trickle(host: str, port: int, head: bytes, tail: bytes) -> tuple[int, bytes]:
    """Send ``head`` at once and then ``tail`` a byte at a time (4 bytes a second, a slow
    but steady client that an idle timeout never catches). Returns how many bytes of the
    tail were sent before the server answered or hung up, and the answer."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head)
        for sent, byte in enumerate(tail):
            if (answer := _answered(sock)) is not None:
                return sent, answer + (sock.recv(4096) if answer else b"")
            try:
                sock.send(bytes([byte]))
            except OSError:
                return sent, b""
            time.sleep(0.25)
        return len(tail), b""


def _handler_threads(besides: frozenset[threading.Thread] = frozenset()) -> int:
    """Request-handler threads alive in this process, except those in `besides` (another
    test file's server on the same pytest worker may still have some)."""
    return sum("process_request_thread" in t.name and t not in besides for t in threading.enumerate())


def _threads() -> frozenset[threading.Thread]:
    return frozenset(threading.enumerate())


def test_a_client_trickling_its_headers_is_cut_off(quick_deadline: tuple[str, int, Path]) -> None:
    host, port, _db = quick_deadline
    before = _threads()
    padding = b"X-Padding: " + b"a" * 400 + b"\r\n\r\n"  # 100 s at this pace
    sent, _answer = _trickle(host, port, b"POST /webhooks HTTP/1.1\r\n", padding)
    assert sent < len(padding)
    assert wait_for(lambda: _handler_threads(besides=before) == 0)


def test_a_client_trickling_its_body_gets_408(quick_deadline: tuple[str, int, Path]) -> None:
    host, port, db = quick_deadline
    before = _threads()
    body = event_body(event_id="evt_slow") + b" " * 400  # 100 s at this pace
    head = (f"POST /webhooks HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
            f"X-Apixx-Signature: {sign(SECRET, body)}\r\nX-Apixx-Event: run.succeeded\r\n"
            "X-Apixx-Delivery: del_slow\r\n\r\n").encode()
    sent, answer = _trickle(host, port, head, body)
    assert sent < len(body)
    assert answer.startswith(b"HTTP/1.0 408")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert wait_for(lambda: _handler_threads(besides=before) == 0)


# --- --help ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [[], ["serve"], ["events"], ["sign"]])
def test_help_is_plain_text_and_shows_defaults(
    command: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping inside a default value
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":class:" not in text and "`" not in text
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    actions = sub.choices[command[0]]._actions if command else []  # type: ignore[union-attr]
    shown = [a for a in actions if a.option_strings and a.default not in (None, [], False)
             and a.default != "==SUPPRESS=="]
    for action in shown:
        assert f"(default: {action.default})" in text, action.option_strings
    if command == ["serve"]:
        assert {"--max-connections", "--request-deadline"} <= {
            s for a in shown for s in a.option_strings}
