"""Unit tests of the tap without HTTP: settings, paging, pacing, error policy, state, catalog."""

from __future__ import annotations

import json

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities

from tap_apixx import error_policy
from tap_apixx.error_policy import Action, action_for
from tap_apixx.pacing import RatePacer
from tap_apixx.pagination import MAX_PAGE_SIZE
from tap_apixx.streams import CANONICAL_ENTITIES
from tap_apixx.tap import TapApixx
from tests.helpers import ROOT

KEY = "apx_test_acme_8d2b6f0c4e1a"
CONFIG = {"api_key": KEY, "data_url": "http://127.0.0.1:9/api/public/data"}
CATALOG = ROOT / "catalog" / "catalog.json"


# Settings


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"api_key": "sk_live_123"}, "api_key: does not start with a known prefix"),
        ({"start_date": "last tuesday"}, "start_date: 'last tuesday' is not an RFC 3339"),
        ({"data_url": "http://api.example.com/data"}, "data_url: 'http://api.example.com/data' is"),
        ({"api_url": "ftp://127.0.0.1/v1"}, "api_url: 'ftp://127.0.0.1/v1' is not an http(s)"),
        ({"page_size": 0}, "page_size: 0 is not an integer in 1..1000"),
        ({"page_size": 1001}, "page_size: 1001 is not an integer in 1..1000"),
        ({"lookback_minutes": -1}, "lookback_minutes: -1 is not an integer in 0..10080"),
        ({"max_requests_per_minute": 0}, "max_requests_per_minute: 0 is not an integer"),
        ({"request_timeout": 0}, "request_timeout: 0 is not an integer in 1..3600"),
    ],
)
def test_bad_setting_fails_with_one_clear_line(override: dict, expected: str) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TapApixx(config={**CONFIG, **override})
    errors = info.value.errors
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_good_settings_pass_and_loopback_http_is_allowed() -> None:
    for url in ("http://127.0.0.1:8765/x", "http://localhost/x", "http://[::1]:1/x", "https://a.b/x"):
        tap = TapApixx(config={**CONFIG, "data_url": url, "start_date": "2025-01-01T00:00:00Z"})
        assert tap.config["data_url"] == url


def test_batch_is_not_advertised_and_batch_config_is_refused() -> None:
    assert PluginCapabilities.BATCH not in TapApixx.capabilities
    assert "batch_config" not in TapApixx.config_jsonschema["properties"]
    with pytest.raises(ConfigValidationError) as info:
        TapApixx(config={**CONFIG, "batch_config": {"encoding": {"format": "jsonl"}}})
    assert [e.split(":")[0] for e in info.value.errors] == ["batch_config"]


def test_key_never_in_config_errors() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TapApixx(config={**CONFIG, "api_key": "bogus_secret_value", "page_size": "x"})
    assert all("bogus_secret_value" not in e for e in info.value.errors)


def test_defaults() -> None:
    tap = TapApixx(config=CONFIG)
    stream = tap.streams["order"]
    assert tap.config["page_size"] == MAX_PAGE_SIZE
    assert tap.config["lookback_minutes"] == 5
    assert stream.user_agent.startswith("tap-apixx/")
    assert stream.get_url(None) == CONFIG["data_url"] + "/order"


# Streams and catalog


def test_one_stream_per_entity_with_keys() -> None:
    tap = TapApixx(config=CONFIG)
    assert set(tap.streams) == {*CANONICAL_ENTITIES, "flows", "runs", "connectors"}
    assert len(CANONICAL_ENTITIES) == 15
    for stream in (tap.streams[entity] for entity in CANONICAL_ENTITIES):
        assert stream.primary_keys == ("canonical_id",)
        assert stream.replication_key == "updated_at"
        props = stream.schema["properties"]
        assert props["updated_at"] == {**props["updated_at"], "format": "date-time"}
        assert props["external_ids"]["additionalProperties"]
        assert all("integer" in props[p]["type"] for p in props if p.endswith("_cents"))


def test_catalog_file_matches_discovery() -> None:
    """catalog/catalog.json is `tap-apixx --discover`; regenerate it when this fails."""
    tap = TapApixx(config={}, validate_config=False, setup_mapper=False)
    assert json.loads(CATALOG.read_text()) == json.loads(tap.catalog_json_text)


def test_fields_pushdown_only_when_something_is_deselected() -> None:
    catalog = json.loads(CATALOG.read_text())
    tap = TapApixx(config=CONFIG, catalog=catalog)
    assert tap.streams["order"].fields_param is None
    for entry in catalog["streams"]:
        for md in entry["metadata"]:
            if entry["tap_stream_id"] == "order" and md["breadcrumb"] in (
                ["properties", "status"],
                ["properties", "canonical_id"],
            ):
                md["metadata"]["selected"] = False
    fields = TapApixx(config=CONFIG, catalog=catalog).streams["order"].fields_param.split(",")
    assert "status" not in fields
    assert fields[:2] == ["canonical_id", "updated_at"]
    assert "total_cents" in fields


# Error policy


def test_error_policy_table() -> None:
    assert action_for(200) is Action.OK
    for status in (400, 401, 403, 404, 409, 422, 302):
        assert action_for(status) is Action.FATAL
    for status in (500, 502, 503, 504, 599):
        assert action_for(status) is Action.RETRY
    assert action_for(429) is Action.THROTTLE


def _response(status: int, body: bytes, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    response.url = "http://127.0.0.1/api/public/data/order"
    return response


def test_fatal_messages_name_status_code_request_id_and_hint() -> None:
    def fatal_error(response: requests.Response) -> Exception:
        return error_policy.fatal_error("order", response, "data:read", KEY)

    body = b'{"error": {"code": "forbidden", "message": "lacks data:read", "request_id": "req_9"}}'
    error = fatal_error(_response(403, body))
    assert str(error).startswith("order: HTTP 403 forbidden: lacks data:read (request_id=req_9)")
    assert "'data:read' scope" in str(error)
    body = f'{{"error": {{"code": "unauthorized", "message": "bad {KEY}"}}}}'.encode()
    error = fatal_error(_response(401, body, {"X-Request-Id": "req_h"}))
    assert KEY not in str(error)
    assert "request_id=req_h" in str(error)
    assert "Check api_key" in str(error)


def test_html_and_truncated_bodies_are_transient() -> None:
    from singer_sdk.exceptions import RetriableAPIError

    stream = TapApixx(config=CONFIG).streams["order"]
    with pytest.raises(RetriableAPIError, match="non-JSON error body"):
        stream.validate_response(_response(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}))
    with pytest.raises(RetriableAPIError, match="unparseable JSON"):
        stream.validate_response(_response(200, b'{"entity": "order", "da'))


# Pacing


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def send(pacer: RatePacer, clock: FakeClock) -> float:
    """One request through the pacer, answered at once without rate-limit headers."""
    at = clock.now + pacer.acquire()
    pacer.observe({})
    return at


def test_pacer_goes_flat_out_while_budget_is_ample() -> None:
    clock = FakeClock()
    pacer = RatePacer(clock=clock, sleep=clock.sleep)
    pacer.observe({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "500",
                   "X-RateLimit-Reset": "1060"})
    assert sum(pacer.acquire() for _ in range(100)) == 0


def test_pacer_spreads_the_last_requests_until_reset_and_never_overspends() -> None:
    clock = FakeClock()
    pacer = RatePacer(clock=clock, sleep=clock.sleep)
    pacer.observe({"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "4",
                   "X-RateLimit-Reset": "1040"})
    sent = [send(pacer, clock) for _ in range(5)]
    assert sent[3] < 1040
    assert sent[1] - sent[0] >= 9
    assert sent[4] >= 1040


def test_pacer_client_side_cap_is_a_sliding_window() -> None:
    clock = FakeClock()
    pacer = RatePacer(max_per_minute=3, clock=clock, sleep=clock.sleep)
    sent = [send(pacer, clock) for _ in range(7)]
    assert sent[:3] == [1000.0] * 3
    assert sent[3] == sent[0] + 60
    assert sent[6] == sent[3] + 60


def test_one_pacer_per_tap_shared_by_its_streams() -> None:
    tap = TapApixx(config={**CONFIG, "max_requests_per_minute": 42})
    pacers = {id(s.pacer) for s in tap.streams.values()}
    assert len(pacers) == 1
    assert tap.pacer.max_per_minute == 42
