"""Pins the singer-sdk behaviour each SDK seam of the tap relies on, so an upgrade fails loudly.

One test per seam module (output.py, parallel.py, cli.py, settings.py, transport.py). Each
names what the tap would silently get wrong if the SDK changed underneath it.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import textwrap
import typing as t
from contextlib import redirect_stdout

import pytest
import requests
from singer_sdk import RESTStream, Stream, Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers import _state
from singer_sdk.plugin_base import PluginBase, SingerCommand

from tap_apixx.cli import ApixxCommand
from tap_apixx.output import SerialStateWriter
from tap_apixx.tap import TapApixx
from tap_apixx.transport import PAYLOAD_ATTR

KEY = "apx_test_acme_8d2b6f0c4e1a"
CONFIG = {"api_key": KEY, "data_url": "http://127.0.0.1:9/api/public/data"}


def calls_in(function: t.Callable) -> list[str]:
    """The names of the methods and functions `function` calls, in source order."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    calls = sorted(
        (node.lineno, node.col_offset, id(node), node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
    )
    return [f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "?") for *_, f in calls]


def params(function: t.Callable) -> list[tuple[str, t.Any]]:
    return [(p.name, p.kind) for p in inspect.signature(function).parameters.values()]


def test_output_seam_record_state_and_bookmark_hooks() -> None:
    """output.py replaces these private Stream methods and the Tap's private state writer."""
    kw, pos = inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params(Stream._write_record_message) == [("self", pos), ("record", pos)]
    assert params(Stream._write_state_message) == [("self", pos)]
    assert params(Stream._increment_stream_state) == [
        ("self", pos), ("latest_record", pos), ("context", kw)]
    # the SDK's record loop still goes through the three hooks we replace
    loop = calls_in(Stream._sync_records)
    assert {"_write_record_message", "_increment_stream_state", "_write_state_message"} <= set(loop)
    # the state writer: a private class, a private attribute, read through `state_writer`
    assert params(_state.StateWriter.write_state)[:2] == [("self", pos), ("state", pos)]
    tap = TapApixx(config=CONFIG)
    assert isinstance(tap._state_writer, SerialStateWriter)
    assert tap.state_writer is tap._state_writer
    assert "state_writer" in calls_in(Stream._write_state_message) or "write_state" in calls_in(
        Stream._write_state_message)
    stream = tap.streams["order"]
    assert stream._tap is tap and stream._stream_version is None
    assert stream.state_manager.is_flushed in (True, False)


def test_output_seam_record_lines_match_the_sdks() -> None:
    """A RECORD line written by PageOutput equals the SDK's own message for the record."""
    tap = TapApixx(config=CONFIG)
    stream = tap.streams["order"]
    record = {"canonical_id": "ord_1", "updated_at": "2024-01-01T00:00:00.000Z", "total": 1.5}
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        stream._write_record_message(dict(record))
        stream._flush_records()
    ours = json.loads(buffer.getvalue())
    sdk = next(iter(stream._generate_record_messages(dict(record)))).to_dict()
    assert list(ours) == list(sdk)
    assert {k: v for k, v in ours.items() if k != "time_extracted"} == {
        k: v for k, v in sdk.items() if k != "time_extracted"}


def test_parallel_seam_repeats_the_sdks_sync_all() -> None:
    """parallel.py replaces `Tap.sync_all`; a new step in the SDK's version must be copied."""
    assert calls_in(Tap.sync_all) == [
        "_reset_state_progress_markers",
        "_set_compatible_replication_methods",
        "write_state",
        "values",
        "info",
        "debug",
        "type",
        "sync",
        "finalize_state_progress_markers",
        "values",
        "log_sync_costs",
    ]
    assert callable(Tap._reset_state_progress_markers)
    assert callable(Tap._set_compatible_replication_methods)


def test_cli_seam_swaps_the_class_of_a_plain_singer_command() -> None:
    """cli.py turns the SDK's command into an ApixxCommand by setting its class."""
    command = Tap.get_singer_command.__func__(TapApixx)  # type: ignore[attr-defined]
    assert type(command) is SingerCommand  # exactly: an ApixxCommand has the same layout
    assert "__init__" not in vars(ApixxCommand) and "__slots__" not in vars(ApixxCommand)
    assert callable(SingerCommand.excepthook)
    assert type(TapApixx.get_singer_command()) is ApixxCommand


def test_settings_seam_validate_config_runs_at_init() -> None:
    """settings.py replaces `PluginBase._validate_config`, which the SDK calls when built."""
    kw = inspect.Parameter.KEYWORD_ONLY
    assert params(PluginBase._validate_config)[1:] == [("raise_errors", kw)]
    assert "_validate_config" in calls_in(PluginBase.__init__)
    with pytest.raises(ConfigValidationError) as info:
        TapApixx(config={**CONFIG, "page_size": 0})
    assert info.value.errors == ["page_size: 0 is not an integer in 1..1000"]


class FakePacer:
    def __init__(self) -> None:
        self.acquired, self.observed = 0, []

    def acquire(self) -> float:
        self.acquired += 1
        return 0.0

    def observe(self, headers: t.Mapping[str, str]) -> None:
        self.observed.append(dict(headers))


def test_transport_seam_sdk_requests_go_through_requests_session(monkeypatch) -> None:
    """transport.py paces in `requests_session`, so the SDK's `_request` must send through it
    and call `validate_response`; its `request_records` must retry with `request_decorator`."""
    assert "request_decorator" in calls_in(RESTStream.request_records)
    assert {"send", "validate_response"} <= set(calls_in(RESTStream._request))
    tap = TapApixx(config={**CONFIG, "max_parallel_streams": 1})
    pacer = tap.__dict__["pacer"] = FakePacer()
    answer = requests.Response()
    answer.status_code, answer._content = 200, b'{"data": []}'
    answer.headers["X-RateLimit-Remaining"] = "9"
    answer.elapsed = __import__("datetime").timedelta(0)
    sent: list[dict] = []
    monkeypatch.setattr(requests.Session, "send", lambda self, request, **kw: sent.append(kw) or answer)
    stream = tap.streams["order"]
    prepared = stream.build_prepared_request(method="GET", url=stream.url_base + "/order")
    assert stream._request(prepared, None) is answer  # the SDK's method, not ours
    assert pacer.acquired == 1 and pacer.observed == [{"X-RateLimit-Remaining": "9"}]
    assert getattr(answer, PAYLOAD_ATTR) == {"data": []}  # validate_response ran
    assert stream.counts["requests"] == 1
    assert sent[0]["allow_redirects"] is False  # the SDK passes the stream's redirect policy
    assert stream.requests_session.stream is False  # requests' own flag: bodies read whole


def test_output_seam_process_record_only_adds_partition_keys_and_syncs_children() -> None:
    """PageOutput skips `_process_record` for a stream without child streams or partition keys:
    the SDK's method must do nothing else (fill partition keys, sync children per record), and
    the record loop must pass it the partition context by keyword."""
    assert set(calls_in(Stream._process_record)) <= {
        "items", "generate_child_contexts", "get_filter_result", "_sync_children", "copy"}
    assert params(Stream._process_record)[1:] == [
        ("record", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("child_context", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("partition_context", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    source = inspect.getsource(Stream._sync_records)
    assert "partition_context=state_partition_context" in source
    assert "for child_stream in self.child_streams" in inspect.getsource(Stream._sync_children)
    tap = TapApixx(config=CONFIG)
    for stream in tap.streams.values():
        assert not stream.child_streams and not stream.partitions  # so nothing is skipped wrongly
    order = tap.streams["order"]
    record = {"canonical_id": "ord_1"}
    Stream._process_record(order, record, None, None)  # the SDK's: no effect on such a stream
    assert record == {"canonical_id": "ord_1"}
    order._process_record(record, None, {"tenant": "t1"})  # with partition keys: the SDK's way
    assert record == {"canonical_id": "ord_1", "tenant": "t1"}


def test_transport_seam_proxies_resolved_once_per_host_from_the_environment(monkeypatch) -> None:
    """requests resolves proxies from the environment on each `Session.send` unless given them;
    PacedSession gives them, resolved once per host, still honouring HTTPS_PROXY and NO_PROXY."""
    assert "resolve_proxies" in calls_in(requests.Session.send)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    for name in ("https_proxy", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    calls: list[str] = []
    real = __import__("tap_apixx.transport", fromlist=["resolve_proxies"]).resolve_proxies
    monkeypatch.setattr("tap_apixx.transport.resolve_proxies",
                        lambda req, *a: calls.append(req.url) or real(req, *a))
    seen: list[dict] = []
    answer = requests.Response()
    answer.status_code, answer._content = 200, b"{}"
    monkeypatch.setattr(requests.Session, "send", lambda self, request, **kw: seen.append(kw) or answer)
    hosts = {"data_url": "https://api.example/a", "api_url": "https://direct.example/c"}  # allowed
    tap = TapApixx(config={**CONFIG, **hosts, "max_parallel_streams": 1})
    tap.__dict__["pacer"] = FakePacer()
    session = tap.streams["order"].requests_session
    for url in ("https://api.example/a", "https://api.example/b?x=1", "https://direct.example/c"):
        session.send(requests.Request("GET", url).prepare())
    assert [kw["proxies"].get("https") for kw in seen] == ["http://proxy.invalid:3128"] * 2 + [None]
    assert calls == ["https://api.example/a", "https://direct.example/c"]  # once per host
