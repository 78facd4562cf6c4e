"""`tap-apixx-check` against the emulator: it must report the mode the emulator was started with,
and name the setting to fix when the URL or the key is wrong. Also the sync-start verdict line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import typing as t
from collections import Counter
from pathlib import Path

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, free_port
from tap_apixx.check import MAX_CHECK_REQUESTS
from tap_apixx.errors import ApiRequestError
from tap_apixx.pagination import MAX_PAGE_SIZE
from tap_apixx.streams import CANONICAL_ENTITIES, CanonicalStream
from tests.helpers.tap import config_for, latest, run_cli, run_tap, truth

CHECK = str(Path(sys.executable).with_name("tap-apixx-check"))
OPS_ONLY_KEY = "apx_live_acme_opsonly_2e8d5c"  # built-in: flows:read only
DATA_ONLY_KEY = "apixx_acme_data_7b3e1f9a"  # built-in: data:read only


def run_check(tmp_path: Path, config: dict | None, *args: str, env: dict | None = None
              ) -> subprocess.CompletedProcess:
    argv = [CHECK, *args]
    if config is not None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        argv += ["--config", str(path)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAP_APIXX_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          env={**clean, **(env or {})})


def check_json(tmp_path: Path, config: dict, **kwargs: t.Any) -> tuple[int, dict]:
    proc = run_check(tmp_path, config, "--json", **kwargs)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert config.get("api_key", DEFAULT_KEY)[10:] not in proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def rows(report: dict) -> dict[str, dict]:
    return {row["check"]: row for row in report["checks"]}


def largest_tie(emu: EmulatorProcess) -> int:
    """The emulator's largest tie group among the records a 1000-record sample of each entity sees."""
    best = 0
    for entity in CANONICAL_ENTITIES:
        stamps = sorted(r["updated_at"] for r in emu.ground_truth(entity))[:MAX_PAGE_SIZE]
        best = max(best, *Counter(stamps).values())
    return best


def test_check_reports_the_default_emulator_and_stays_within_its_budget(emulator, tmp_path):
    emulator.clear_stats()
    code, report = check_json(tmp_path, config_for(emulator))
    found = rows(report)
    sent = emulator.stats()["total"]
    assert code == 0 and report["ok"], found
    assert report["measured"]["since_mode"] == "inclusive"  # the emulator's default
    assert report["measured"]["cursor_mode"] == "exclusive"  # --cursor-mode default
    assert report["measured"]["ordered"] is True
    assert report["measured"]["key"] == {"prefix": "apx_live_", "environment": "live"}
    assert report["measured"]["scopes"] == {"data:read": "granted", "flows:read": "granted"}
    assert report["measured"]["timestamp_forms"] == [
        {"precision": "millisecond", "offset": "Z",
         "records": sum(min(len(emulator.ground_truth(e)), MAX_PAGE_SIZE) for e in CANONICAL_ENTITIES)}]
    assert report["measured"]["largest_tie_group"]["records"] == largest_tie(emulator)
    assert report["measured"]["rate_limit"]["X-RateLimit-Limit"] == "100000"  # FAST_FLAGS
    assert report["measured"]["page_cap"] == {"limit_1000": 200, "limit_1001": 422}
    assert sent == report["requests"] <= MAX_CHECK_REQUESTS
    assert {r["status"] for r in report["checks"]} <= {"ok", "info"}


def test_check_reports_an_inclusive_cursor(emulator_factory, tmp_path):
    emu = emulator_factory(cursor_mode="inclusive")
    code, report = check_json(tmp_path, config_for(emu))
    assert code == 0
    assert report["measured"]["cursor_mode"] == "inclusive"
    assert "repeated the page's last record" in rows(report)["cursor"]["result"]


# Each value of each emulator flag twice, in pairs (since, precision, cursor).
MODES = [("inclusive", "ms", "exclusive"), ("exclusive", "us", "inclusive"),
         ("exclusive", "ms", "exclusive"), ("inclusive", "us", "inclusive")]
FORMS = {"ms": ("millisecond", "Z"), "us": ("microsecond", "+00:00")}


@pytest.mark.parametrize(("since", "precision", "cursor"), MODES, ids=["-".join(m) for m in MODES])
def test_check_and_the_sync_report_the_mode_the_emulator_was_started_with(
        emulator_factory, tmp_path, caplog, since, precision, cursor):
    emu = emulator_factory(since_mode=since, timestamp_precision=precision, cursor_mode=cursor)
    code, report = check_json(tmp_path, config_for(emu))
    measured = report["measured"]
    name, offset = FORMS[precision]
    assert measured["since_mode"] == since
    assert measured["cursor_mode"] == cursor
    assert [(f["precision"], f["offset"]) for f in measured["timestamp_forms"]] == [(name, offset)]
    assert measured["largest_tie_group"]["records"] == largest_tie(emu)
    assert code == 0 and report["ok"]  # the tap pages safely under either reading
    assert rows(report)["updated_since"]["status"] == rows(report)["paging"]["status"] == "ok"
    assert f"one {name}" in rows(report)["paging"]["result"]  # the step back, in the unit seen
    with caplog.at_level(logging.INFO):
        run_tap(config_for(emu), streams=["product"])
    verdicts = [r.getMessage() for r in caplog.records if "Server semantics:" in r.getMessage()]
    assert len(verdicts) == 1
    assert f"updated_since {since}; updated_at {name} precision with {offset}; ascending" in verdicts[0]


def test_check_table_names_every_row_and_hides_the_key(emulator, tmp_path):
    proc = run_check(tmp_path, config_for(emulator))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"tap-apixx check: data_url {emulator.data_url}")
    for check in ("key", "data API", "ops API", "scope data:read", "scope flows:read",
                  "updated_since", "cursor", "timestamps", "order", "largest tie group",
                  "page cap", "paging", "rate-limit headers", "latency"):
        assert any(line.startswith(check + " ") for line in lines), check
    assert lines[-1].startswith("OK: ")
    assert DEFAULT_KEY not in proc.stdout + proc.stderr
    assert "apx_live_…" in proc.stdout


def test_check_reads_the_settings_from_the_environment_as_under_meltano(emulator, tmp_path):
    env = {"TAP_APIXX_API_KEY": DEFAULT_KEY, "TAP_APIXX_DATA_URL": emulator.data_url,
           "TAP_APIXX_API_URL": emulator.api_url}
    proc = run_check(tmp_path, None, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data_url"] == emulator.data_url


def test_check_environment_overrides_the_config_file(emulator, tmp_path):
    config = {**config_for(emulator), "data_url": f"http://127.0.0.1:{free_port()}/api/public/data"}
    code, report = check_json(tmp_path, config, env={"TAP_APIXX_DATA_URL": emulator.data_url})
    assert code == 0 and report["data_url"] == emulator.data_url


def test_check_on_a_refused_port_names_data_url_and_the_emulator(emulator, tmp_path):
    port = free_port()
    config = {**config_for(emulator), "data_url": f"http://127.0.0.1:{port}/api/public/data"}
    code, report = check_json(tmp_path, config)
    data = rows(report)["data API"]
    assert code == 1 and not report["ok"]
    assert data["status"] == "fail"
    assert f"connection refused by 127.0.0.1:{port}" in data["result"]
    assert "Check data_url" in data["result"] and f"apixx-emulator --port {port}" in data["result"]
    assert rows(report)["ops API"]["status"] == "ok"  # the other API is told apart
    assert report["requests"] == 2  # no probe of an API that is not there


def test_check_on_https_to_the_plain_http_emulator_names_api_url(emulator, tmp_path):
    https = emulator.api_url.replace("http://", "https://")
    code, report = check_json(tmp_path, {**config_for(emulator), "api_url": https})
    ops = rows(report)["ops API"]
    assert code == 1 and ops["status"] == "fail"
    assert "answers plain http, not https" in ops["result"]
    assert f"Check api_url: the local emulator speaks http, use {emulator.api_url}" in ops["result"]
    assert rows(report)["scope flows:read"]["status"] == "skip"
    assert report["measured"]["since_mode"] == "inclusive"  # the data API is still probed


def test_check_on_a_wrong_path_says_where_each_api_lives(emulator, tmp_path):
    config = {**config_for(emulator), "data_url": emulator.base_url + "/api/data",
              "api_url": emulator.base_url}
    code, report = check_json(tmp_path, config)
    found = rows(report)
    assert code == 1
    assert found["data API"]["status"] == found["ops API"]["status"] == "fail"
    assert "wrong path" in found["data API"]["result"]
    assert "served under /api/public/data" in found["data API"]["result"]
    assert "served under /v1" in found["ops API"]["result"]
    assert "request_id=req_" in found["data API"]["result"]


@pytest.mark.parametrize(("key", "missing", "prefix"), [(OPS_ONLY_KEY, "data:read", "apx_live_"),
                                                        (DATA_ONLY_KEY, "flows:read", "apixx_")])
def test_check_names_the_missing_scope_and_its_streams(emulator, tmp_path, key, missing, prefix):
    code, report = check_json(tmp_path, {**config_for(emulator), "api_key": key})
    scope = rows(report)[f"scope {missing}"]
    assert code == 1
    assert scope["status"] == "fail" and "HTTP 403 forbidden" in scope["result"]
    assert report["measured"]["key"] == {"prefix": prefix, "environment": "live"}
    assert report["measured"]["scopes"][missing] == "missing"
    assert key not in json.dumps(report)


def test_check_with_a_revoked_key_fails_with_a_hint(emulator, tmp_path):
    code, report = check_json(tmp_path, {**config_for(emulator), "api_key": "apx_test_nobody_00000000"})
    assert code == 1
    assert "the key was refused" in rows(report)["data API"]["result"]
    assert report["measured"]["key"]["environment"] == "test"


def test_check_bad_settings_are_one_line_each(emulator, tmp_path):
    proc = run_check(tmp_path, {**config_for(emulator), "page_size": 0},
                     env={"TAP_APIXX_DATA_URL": "http://example.com/api/public/data"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == ""  # 2: could not run (1: a check failed)
    assert "tap-apixx-check: error: config: page_size: 0 is not an integer in 1..1000" in lines
    assert any(line.startswith("tap-apixx-check: error: config: data_url: ") for line in lines)
    assert "Traceback" not in proc.stderr


def test_each_sync_logs_the_semantics_once(emulator, tmp_path):
    emulator.clear_stats()
    proc = run_cli(tmp_path, config_for(emulator, max_parallel_streams=4), streams=["order", "lead"])
    verdicts = [line for line in proc.stderr.splitlines() if "Server semantics:" in line]
    probes = [r for r in emulator.stats()["requests"] if r["params"].get("fields") == "updated_at"]
    assert proc.returncode == 0
    assert len(verdicts) == 1, verdicts
    assert "updated_since inclusive; updated_at millisecond precision with Z; ascending" in verdicts[0]
    assert len(probes) == 2 and {r["route"] for r in probes} == {"data:lead:list"}


def test_the_sync_start_probe_never_stops_a_sync(emulator_factory, monkeypatch, caplog):
    monkeypatch.setattr(CanonicalStream, "backoff_base_seconds", 0.01)
    emu = emulator_factory(records_per_entity=50)
    emu.faults(error_500_rate=1.0)
    with caplog.at_level(logging.INFO), pytest.raises(ApiRequestError) as info:
        run_tap(config_for(emu), streams=["order"])
    emu.faults()
    verdicts = [r.getMessage() for r in caplog.records if "Server semantics:" in r.getMessage()]
    assert len(verdicts) == 1 and "not probed: HTTP 500 internal_error" in verdicts[0]
    assert "request_id=req_" in verdicts[0]
    assert str(info.value).startswith("order: HTTP 500")  # the stream's own error, as without it


@pytest.mark.parametrize("kind", ["non_json", "out_of_order"])
def test_bad_data_in_the_probe_loses_nothing(emulator_factory, caplog, kind):
    emu = emulator_factory(records_per_entity=200)
    emu.control("POST", "/_emulator/bad-data", json={"entity": "order", "kind": kind, "count": 1})
    with caplog.at_level(logging.INFO):
        result = run_tap(config_for(emu, page_size=20), streams=["order"])
    verdicts = [r.getMessage() for r in caplog.records if "Server semantics:" in r.getMessage()]
    assert len(verdicts) == 1
    assert ("not probed" if kind == "non_json" else "NOT ascending") in verdicts[0]
    assert latest(result.records("order")) == truth(emu, "order")


def test_the_probe_can_be_turned_off(emulator, tmp_path):
    emulator.clear_stats()
    proc = run_cli(tmp_path, config_for(emulator, semantics_probe=False), streams=["order"])
    assert proc.returncode == 0
    assert "Server semantics" not in proc.stderr
    assert not [r for r in emulator.stats()["requests"] if r["params"].get("fields") == "updated_at"]


@pytest.mark.parametrize("content", [[1], "apx_live_x", 7, True])
def test_a_config_file_that_is_not_an_object_ends_in_one_line(tmp_path, content):
    proc = run_check(tmp_path, content)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("tap-apixx-check: error: config file ")
    assert f"holds a JSON {type(content).__name__}, not an object of settings" in lines[0]


def test_the_companion_commands_raise_their_own_error_for_a_bad_config_file(tmp_path):
    from tap_apixx.companion import build_tap
    from tap_apixx.reconcile.errors import ReconcileError

    path = tmp_path / "config.json"
    path.write_text("[")
    with pytest.raises(ReconcileError, match="cannot read config file"):
        build_tap((str(path),), ReconcileError)
    path.write_text("[]")
    with pytest.raises(ReconcileError, match="holds a JSON list"):
        build_tap((str(path),), ReconcileError)
