"""Start and drive an emulator in a child process: for tests, the demo and the benchmarks."""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import requests

DEFAULT_KEY = "apx_live_acme_4f9c2e1a7b3d"
SERVING = re.compile(r"^apixx-emulator: serving on http://[^\s]+:(\d+) ")  # cli.main's first line


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmulatorProcess:
    """`with EmulatorProcess(records_per_entity=300) as emu:` serves on a free loopback port."""

    def __init__(self, port: int | None = None, ready_timeout: float = 120.0, **flags: Any):
        # no port: the emulator binds port 0 and says which one the kernel gave it, so emulators
        # started side by side (pytest-xdist workers) never race for a port picked in advance
        self.requested_port = port or 0
        self.flags = flags
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._serving = threading.Event()
        self._use_port(self.requested_port)
        self.http = requests.Session()

    def _use_port(self, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_url = self.base_url + "/api/public/data"
        self.api_url = self.base_url + "/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "apixx_emulator", "--port", str(self.requested_port)]
        for name, value in self.flags.items():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                cmd += [f"--{name.replace('_', '-')}", str(item)]
        return cmd

    def start(self) -> EmulatorProcess:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self._serving.clear()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc.wait()
                time.sleep(0.2)  # the reader's last lines
                raise RuntimeError(f"emulator exited with {self.proc.returncode}: {''.join(self.stderr_tail)}")
            if not self._serving.wait(0.1):
                continue  # not serving yet: it prints its port once its data is generated
            try:
                if self.http.get(self.base_url + "/_emulator/health", timeout=2).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"emulator did not answer on port {self.port} within {self.ready_timeout:.0f}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        """Keep the emulator's stderr drained (a full pipe would stall it); learn its port."""
        assert proc.stderr is not None
        with proc.stderr:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.stderr_tail.append(line)
                serving = SERVING.search(line)
                if serving and not self._serving.is_set():
                    self._use_port(int(serving[1]))
                    self._serving.set()

    def __enter__(self) -> EmulatorProcess:  # noqa: PYI034 (the class is not subclassed)
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control plane -------------------------------------------------------------------
    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """A control-plane call; its JSON answer, or HTTPError. A POST always says it sends JSON
        (the control plane refuses anything else), even when it has no body."""
        if method.upper() in ("POST", "PUT", "PATCH") and "json" not in kwargs and "data" not in kwargs:
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        response = self.http.request(method, self.base_url + path, timeout=120, **kwargs)
        response.raise_for_status()
        return response.json()

    def ground_truth(self, entity: str, tenant: str = "acme", env: str = "live") -> list[dict]:
        return self.control("GET", f"/_emulator/records/{entity}", params={"tenant": tenant, "env": env})["data"]

    def churn(self, entity: str, updates: int = 0, inserts: int = 0, tie: bool = False, deletes: int = 0,
              merges: int = 0, **extra: Any) -> dict:
        """Change records: `{"updated", "inserted", "deleted", "merged": [{"canonical_id",
        "merged_into"}], "updated_at": [first, last]}` say exactly which."""
        body = {"entity": entity, "updates": updates, "inserts": inserts, "tie": tie, **extra}
        if deletes or merges:
            body |= {"deletes": deletes, "merges": merges}
        return self.control("POST", "/_emulator/churn", json=body)

    def gone(self, entity: str, tenant: str = "acme", env: str = "live") -> list[dict]:
        """Ids deleted or merged away: `{"canonical_id", "reason": "deleted"|"merged", "merged_into",
        "survivor", "at"}`, oldest first."""
        return self.control("GET", f"/_emulator/records/{entity}", params={"tenant": tenant, "env": env})["gone"]

    def faults(self, **config: Any) -> dict:
        if not config:
            return self.control("DELETE", "/_emulator/faults")
        return self.control("POST", "/_emulator/faults", json=config)

    def stats(self, limit: int = 100000) -> dict:
        return self.control("GET", "/_emulator/stats", params={"limit": limit})

    def clear_stats(self) -> None:
        self.control("DELETE", "/_emulator/stats")

    def get(self, path: str, key: str = DEFAULT_KEY, **kwargs: Any) -> requests.Response:
        """A raw API call (path relative to the server root), for contract tests."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return self.http.get(self.base_url + path, headers=headers, timeout=60, **kwargs)


def assert_error_envelope(response: requests.Response, status: int, code: str) -> dict:
    """The documented error body: status, code, a message, and the request id of the header."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert error["message"]
    return error
