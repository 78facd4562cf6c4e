"""Every error class and its message, retries, 429s, pacing and key redaction, over real HTTP."""

from __future__ import annotations

import json
import typing as t

import pytest

from apixx_emulator.testing import DEFAULT_KEY
from tap_apixx import transport
from tap_apixx.errors import ApiRequestError
from tap_apixx.settings import DEFAULT_MAX_RATE_LIMIT_WAIT
from tap_apixx.streams import CANONICAL_ENTITIES, CanonicalStream, load_schema
from tap_apixx.tap import TapApixx
from tests.helpers.tap import TAP, config_for, latest, list_requests, run_cli, run_tap, truth

if t.TYPE_CHECKING:
    from pathlib import Path

OPS_ONLY_KEY = "apx_live_acme_opsonly_2e8d5c"  # built-in emulator key without data:read


def error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    assert "Traceback" not in stderr
    return lines[-1]


@pytest.fixture()
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CanonicalStream, "backoff_base_seconds", 0.01)


def test_401_says_check_api_key_and_never_shows_it(emulator, tmp_path: Path) -> None:
    bad_key = "apx_live_acme_not_a_real_key_91f3"
    proc = run_cli(tmp_path, {**config_for(emulator), "api_key": bad_key}, streams=["order"])
    line = error_line(proc.stderr)
    assert proc.returncode == 1
    assert line.startswith("tap-apixx: error: order: HTTP 401 unauthorized: ")
    assert "request_id=req_" in line
    assert "Check api_key" in line
    assert bad_key not in proc.stderr + proc.stdout


def test_403_names_the_missing_scope(emulator, tmp_path: Path) -> None:
    proc = run_cli(tmp_path, {**config_for(emulator), "api_key": OPS_ONLY_KEY}, streams=["lead"])
    line = error_line(proc.stderr)
    assert proc.returncode == 1
    assert line.startswith("tap-apixx: error: lead: HTTP 403 forbidden: ")
    assert "'data:read' scope" in line
    assert "request_id=req_" in line


def _stream(config: dict, name: str, schema: dict) -> CanonicalStream:
    return CanonicalStream(tap=TapApixx(config=config), name=name, schema=schema)


def test_404_unknown_entity_fails_at_once(emulator) -> None:
    emulator.clear_stats()
    stream = _stream(config_for(emulator), "widget", load_schema("order"))
    with pytest.raises(ApiRequestError) as info:
        list(stream.request_records(None))
    assert (info.value.status, info.value.code) == (404, "not_found")
    assert str(info.value).startswith("widget: HTTP 404 not_found: Unknown entity 'widget'")
    assert info.value.request_id in str(info.value)
    assert len(list_requests(emulator, "widget")) == 1  # not retried


def test_422_names_the_rejected_field(emulator) -> None:
    schema = load_schema("order")
    schema["properties"]["bogus_field"] = {"type": ["string", "null"]}
    stream = _stream(config_for(emulator), "order", schema)
    stream.__dict__["fields_param"] = "canonical_id,updated_at,bogus_field"
    with pytest.raises(ApiRequestError) as info:
        list(stream.request_records(None))
    assert (info.value.status, info.value.code) == (422, "validation_error")
    assert "bogus_field" in str(info.value)
    assert "request_id=req_" in str(info.value)


def test_bad_config_fails_before_any_request(emulator, tmp_path: Path) -> None:
    emulator.clear_stats()
    config = {**config_for(emulator), "page_size": 0, "data_url": "http://example.com/data"}
    proc = run_cli(tmp_path, config)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "tap-apixx: error: config: page_size: 0 is not an integer in 1..1000" in lines
    assert any(line.startswith("tap-apixx: error: config: data_url: ") for line in lines)
    assert emulator.stats()["total"] == 0


def test_transient_faults_are_retried_without_losing_records(emulator_factory, fast_backoff) -> None:
    emu = emulator_factory(records_per_entity=200)
    emu.faults(error_500_rate=0.1, html_502_rate=0.1, reset_rate=0.05, truncated_rate=0.05, seed=3)
    result = run_tap(config_for(emu, page_size=10), streams=["order", "customer"])
    injected = emu.stats()["faults"]["injected"]
    emu.faults()
    assert all(injected[kind] > 0 for kind in ("error_500", "html_502", "reset", "truncated"))
    for entity in ("order", "customer"):
        assert latest(result.records(entity)) == truth(emu, entity)


def test_persistent_5xx_gives_up_with_one_clear_error(emulator_factory, fast_backoff) -> None:
    emu = emulator_factory(records_per_entity=20)
    emu.faults(error_500_rate=1.0)
    with pytest.raises(ApiRequestError) as info:
        run_tap(config_for(emu, semantics_probe=False), streams=["order"])  # count the stream's only
    text = str(info.value)
    assert text.startswith("order: HTTP 500 internal_error: Internal error")
    assert text.endswith("; gave up after 6 attempts")
    assert "request_id=req_" in text
    assert "\n" not in text
    assert len(list_requests(emu, "order")) == 6


def test_429_waits_its_retry_after_even_beyond_30s(emulator_factory, monkeypatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(transport.time, "sleep", waits.append)
    emu = emulator_factory(records_per_entity=100)
    emu.faults(rate_429_rate=0.3, retry_after=95, seed=11)
    result = run_tap(config_for(emu, page_size=4, semantics_probe=False), streams=["payment", "lead"])
    statuses = [r["status"] for r in emu.stats()["requests"]]
    emu.faults()
    assert 429 in statuses
    assert waits.count(95.0) == statuses.count(429)
    assert latest(result.records("payment")) == truth(emu, "payment")


def test_retry_after_beyond_the_ceiling_fails_clearly(emulator_factory, monkeypatch) -> None:
    monkeypatch.setattr(transport.time, "sleep", lambda _: None)
    emu = emulator_factory(records_per_entity=10)
    emu.faults(rate_429_rate=1.0, retry_after=DEFAULT_MAX_RATE_LIMIT_WAIT + 1)
    with pytest.raises(ApiRequestError, match="HTTP 429 rate_limited, Retry-After 901 s.*"
                       r"beyond max_rate_limit_wait \(900 s\)"):
        run_tap(config_for(emu), streams=["order"])


def test_pacing_meets_no_429_under_a_tight_limit(emulator_factory) -> None:
    """15 streams, one request each, against 12 requests a window: paced, never refused. The
    window is 3 s, not the documented 60 s: what is checked is the pacing, not the window's length."""
    emu = emulator_factory(records_per_entity=20, read_limit=12, rate_window_seconds=3)
    result = run_tap(config_for(emu), streams=CANONICAL_ENTITIES)
    statuses = [r["status"] for r in emu.stats()["requests"]]
    assert len(statuses) > 12
    assert set(statuses) == {200}
    for entity in CANONICAL_ENTITIES:
        assert latest(result.records(entity)) == truth(emu, entity)


def test_key_is_redacted_everywhere(emulator, tmp_path: Path) -> None:
    proc = run_cli(tmp_path, config_for(emulator, page_size=50), streams=["order"],
                   env={"TAP_APIXX_LOG_LEVEL": "DEBUG"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert DEFAULT_KEY not in proc.stdout
    assert DEFAULT_KEY not in proc.stderr
    states = [json.loads(line) for line in proc.stdout.splitlines() if '"STATE"' in line]
    assert states
    about = run_cli(tmp_path, config_for(emulator), "--about", "--format=json")
    assert about.returncode == 0
    assert DEFAULT_KEY not in about.stdout + about.stderr
    assert "api_key" in about.stdout


def test_cli_runs_and_discovers(tmp_path: Path, emulator) -> None:
    proc = run_cli(tmp_path, config_for(emulator), "--discover")
    assert proc.returncode == 0
    names = {s["tap_stream_id"] for s in json.loads(proc.stdout)["streams"]}
    assert names == {*CANONICAL_ENTITIES, "flows", "runs", "connectors"}
    assert TAP.endswith("tap-apixx")
