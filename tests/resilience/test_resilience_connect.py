"""A server that cannot be reached on first contact (refused, DNS, TLS mismatch) is a setting to
fix: the tap says which one within a few attempts, instead of retrying for half a minute."""

from __future__ import annotations

import requests

from apixx_emulator.testing import free_port
from tap_apixx.connectivity import FIRST_CONTACT_ATTEMPTS, FirstContact, diagnose
from tests.helpers.tap import config_for, run_cli

RETRY_MARK = "(retry "
BACKOFF_MARK = "Transient error"  # the usual exponential backoff's warning


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tap-apixx: error:")]


def retries(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if RETRY_MARK in line or BACKOFF_MARK in line]


def test_a_refused_connection_names_data_url_and_the_emulator(emulator, tmp_path):
    port = free_port()
    config = {**config_for(emulator), "data_url": f"http://127.0.0.1:{port}/api/public/data",
              "max_parallel_streams": 1}
    proc = run_cli(tmp_path, config, streams=["order"])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0].startswith(f"tap-apixx: error: order: connection refused by 127.0.0.1:{port}")
    assert "Check data_url" in lines[0] and f"apixx-emulator --port {port}" in lines[0]
    assert "urllib3" not in lines[0] and "Max retries" not in lines[0]
    assert len(retries(proc.stderr)) == FIRST_CONTACT_ATTEMPTS["refused"] - 1
    assert BACKOFF_MARK not in proc.stderr


def test_https_to_the_plain_http_emulator_is_not_retried(emulator, tmp_path):
    emulator.clear_stats()
    https = emulator.data_url.replace("http://", "https://")
    proc = run_cli(tmp_path, {**config_for(emulator), "data_url": https}, streams=["order"])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1
    assert "the server answers plain http, not https" in lines[0]
    assert f"Check data_url: the local emulator speaks http, use {emulator.data_url}" in lines[0]
    assert retries(proc.stderr) == []
    assert emulator.stats()["total"] == 0  # the handshake failed: no request reached the API


def test_an_unknown_host_names_the_setting(emulator, tmp_path):
    config = {**config_for(emulator), "api_url": "https://apixx-no-such-host.invalid/v1"}
    proc = run_cli(tmp_path, config, streams=["flows"])
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0].startswith("tap-apixx: error: flows: cannot resolve host 'apixx-no-such-host.invalid'")
    assert "Check api_url (https://apixx-no-such-host.invalid/v1)" in lines[0]
    assert len(retries(proc.stderr)) == FIRST_CONTACT_ATTEMPTS["dns"] - 1


def test_a_refusal_after_the_host_answered_is_retried_as_transient():
    """A host that answered in this run and then refuses is restarting: the usual backoff."""
    url = f"http://127.0.0.1:{free_port()}/api/public/data"
    try:
        requests.get(url, timeout=5)
    except requests.ConnectionError as exc:
        problem = diagnose(exc, url, "data_url")
    assert problem is not None and problem.kind == "refused"
    contact = FirstContact()
    assert contact.attempts(problem) == FIRST_CONTACT_ATTEMPTS["refused"]
    contact.answered(url + "/order")
    assert contact.attempts(problem) is None  # the usual transient policy


def test_a_reset_is_not_a_connection_problem():
    """Resets and timeouts stay transient: the contract says a connection reset is tolerated."""
    reset = requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    assert diagnose(reset, "https://api.apixx.io/v1", "api_url") is None
    assert diagnose(requests.Timeout("read timed out"), "https://api.apixx.io/v1", "api_url") is None
