"""Hostile input class 1: no URL, redirect or server-sent id makes the key go to another host.

Every name the HTTP client resolves is recorded (socket.getaddrinfo is wrapped; a name other
than a loopback one is refused there, so nothing leaves this machine). For any URL the guard
accepts, the client connects to exactly the host both URL parsers (urllib3's, which requests
uses, and the standard library's) read from it, and plain http goes to loopback only. A URL
the guard refuses is one config line naming the setting, and nothing is resolved at all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import typing as t
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from singer_sdk.exceptions import ConfigValidationError
from urllib3.util import parse_url

from tap_apixx import transport
from tap_apixx.tap import TapApixx
from tests.helpers.hostile import Tally, fuzz, run_cli, tally_fixture, write_inputs
from tests.helpers.hostile_server import (
    HostileServer,
    Reply,
    Request,
    data_page,
    data_records,
    json_reply,
    ops_detail,
    ops_item,
)
from tests.helpers.resilience import no_secrets_anywhere  # noqa: F401  (autouse: scanned for the key)
from tests.helpers.tap import catalog_for

KEY = "apx_live_acme_hostile_url_93af0c"
tally = tally_fixture(1)


class Resolver:
    """Wraps socket.getaddrinfo: records each (host, port); refuses non-loopback names."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, int | None]] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: t.Any, port: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.targets.append((name, int(port) if port is not None else None))
        if not _loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, "refused by the test: not loopback")
        return self.real(host, port, *args, **kwargs)


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture()
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    spy = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", spy)
    monkeypatch.setattr(transport, "FIRST_CONTACT_WAIT_SECONDS", 0.0)  # only where it goes counts
    return spy


def one_request(config: dict, stream_name: str = "order") -> list[str] | None:
    """Validate `config`, then sync one stream with no retries; the config errors, or None."""
    try:
        tap = TapApixx(config=config, validate_config=True)
    except ConfigValidationError as exc:
        return list(exc.errors)
    stream = tap.streams[stream_name]
    stream.backoff_max_tries = lambda: 1  # type: ignore[method-assign]
    with contextlib.suppress(Exception):  # whatever the outcome, only where it connected matters
        for _ in stream.request_records(None):
            pass
    return None


def expected_target(url: str) -> tuple[str, int]:
    """Where a URL the guard accepted must lead: both parsers agree on it."""
    ours, std = parse_url(url), urlsplit(url)
    port = ours.port or (443 if ours.scheme == "https" else 80)
    assert (ours.host or "").strip("[]").lower() == (std.hostname or "").lower(), url
    assert ours.port == std.port, url
    return (ours.host or "").strip("[]").lower(), port


def check_url(url: str, setting: str, resolver: Resolver, port: int) -> str:
    resolver.targets.clear()
    config = {"api_key": KEY, "data_url": f"http://127.0.0.1:{port}/api/public/data",
              "api_url": f"http://127.0.0.1:{port}/v1", "request_timeout": 2,
              "request_deadline": 3, setting: url}  # https to this plain server: no answer
    errors = one_request(config, "order" if setting == "data_url" else "connectors")
    if errors is not None:
        assert errors and all("\n" not in e for e in errors)
        assert any(e.startswith(f"{setting}:") for e in errors), errors
        assert resolver.targets == [], resolver.targets
        return "refused by the guard"
    host, want_port = expected_target(url)
    for target_host, target_port in resolver.targets:
        assert (target_host.strip("[]").lower(), target_port) == (host, want_port), (url, resolver.targets)
    if urlsplit(url).scheme.lower() == "http":
        assert _loopback(host), url
    return "accepted, connected only there"


SCHEMES = st.sampled_from(["http", "https", "HTTP", "hTtPs", "ftp", "file", "javascript", "",
                           "ws", "http+unix", "gopher"])
SEPARATORS = st.sampled_from(["://", ":/", ":\\\\", ":///", "://\\", ":", "//", ":\\/"])
USERINFO = st.sampled_from(["", "", "", "evil.invalid@", "evil.invalid\\@", "u:p@", "%40@",
                            "evil.invalid%40", "@", "evil.invalid:80@", "evil.invalid#@",
                            "evil.invalid?@", "evil.invalid/@", "evil.invalid\t@", "ev\nil@"])
HOSTS = st.sampled_from(["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "127.1", "2130706433",
                         "0x7f000001", "0177.0.0.1", "127.0.0.1.", "localhost.", "evil.invalid",
                         "127.0.0.1.evil.invalid", "localhost.evil.invalid", "[::ffff:127.0.0.1]",
                         "١٢٧.0.0.1", "ｌｏｃａｌｈｏｓｔ", "0.0.0.0", "[::]", "", "127.0.0.1 ",
                         "[127.0.0.1]", "[::1%25lo]", "evil.invalid%2F127.0.0.1"])
JUNK = st.text(alphabet=st.sampled_from(list("\\@#?/:%. \t\r\n\x00\x7f\u2028\ufeffa")),
               max_size=3)
TAILS = st.sampled_from(["", "", "\\@evil.invalid", "#@evil.invalid", "?@evil.invalid",
                         "/\\evil.invalid", "\\\\evil.invalid", "/%2F%2Fevil.invalid",
                         "@evil.invalid", ":80@evil.invalid", "\\.evil.invalid"])
PATHS = st.sampled_from(["/api/public/data", "", "/", "/v1", "//evil.invalid/x", "/a?b=c",
                         "/a#frag", "/%0d%0aHost:evil.invalid"])


@st.composite
def urls(draw: st.DrawFn, port: int) -> str:
    port_part = draw(st.sampled_from(["", f":{port}", f":{port}", ":0", ":65536", ":-1", ":abc",
                                      ":99999999999", ":80", f":{port}\\"]))
    return (draw(SCHEMES) + draw(SEPARATORS) + draw(USERINFO) + draw(JUNK) + draw(HOSTS)
            + port_part + draw(TAILS) + draw(JUNK) + draw(PATHS))


def serve(request: Request) -> Reply:
    if request.path.endswith("/connectors"):
        return json_reply({"data": [], "meta": {"total": 0, "has_more": False}})
    return data_page(data_records(3), request)


@pytest.fixture(scope="module")
def server() -> t.Iterator[HostileServer]:
    with HostileServer(serve) as running:
        yield running


@fuzz(500)
@given(data=st.data(), setting=st.sampled_from(["data_url", "api_url"]))
def test_no_url_sends_the_key_to_another_host(data, setting, resolver, server, tally: Tally):
    url = data.draw(urls(server.port))
    tally.add(check_url(url, setting, resolver, server.port))


@fuzz(300)
@given(url=st.text(max_size=60))
def test_any_text_as_a_url_is_refused_or_connects_where_it_says(url, resolver, server,
                                                                tally: Tally):
    tally.add(check_url(url, "data_url", resolver, server.port))


SAFE_PATH = st.text(alphabet=st.sampled_from(list("abcxyz0129-._~/%")), max_size=20)


@st.composite
def plausible_urls(draw: st.DrawFn, port: int) -> str:
    """URLs a user might well configure: mostly accepted, so where they lead is tested."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    host = draw(st.sampled_from(["127.0.0.1", "localhost", "LocalHost", "[::1]", "127.0.0.2",
                                 "evil.invalid", "api.apixx.invalid", "10.0.0.1"]))
    secure = scheme.lower() == "https"  # (not to the plain test server: no TLS answer there)
    port_part = draw(st.sampled_from(["", ":443", ":8443"] if secure else ["", f":{port}", ":81"]))
    return f"{scheme}://{host}{port_part}/{draw(SAFE_PATH)}"


@fuzz(200)
@given(data=st.data(), setting=st.sampled_from(["data_url", "api_url"]))
def test_a_plausible_url_connects_only_where_it_says(data, setting, resolver, server,
                                                     tally: Tally):
    url = data.draw(plausible_urls(server.port))
    tally.add(check_url(url, setting, resolver, server.port))


def test_the_issue_example_is_refused_before_any_connection(resolver, server) -> None:
    url = f"http://evil.invalid\\@127.0.0.1:{server.port}/api/public/data"
    assert check_url(url, "data_url", resolver, server.port) == "refused by the guard"


# Redirects and server-sent ids: the key stays on the configured host.

LOCATIONS = st.sampled_from(["http://evil.invalid/", "https://evil.invalid/x", "//evil.invalid/",
                             "/elsewhere", "http://127.0.0.1:1/", "\\\\evil.invalid",
                             "http://evil.invalid\\@127.0.0.1/"])


@fuzz(30)
@given(status=st.sampled_from([301, 302, 303, 307, 308]), location=LOCATIONS)
def test_a_redirect_is_never_followed(status, location, resolver, tmp_path, tally: Tally):
    def route(request: Request) -> Reply:
        return Reply(status, b"", {"Location": location, "X-Request-Id": "req_redirect"})

    with HostileServer(route) as hostile:
        argv = write_inputs(tmp_path, config={"api_key": KEY, "max_parallel_streams": 1, "semantics_probe": False,
                                              "data_url": f"{hostile.url}/api/public/data"},
                            catalog=catalog_for(["order"]))
        outcome = run_cli(argv).check()
        assert len(hostile.requests) == 1
    assert outcome.code == 1 and "Redirects are not followed" in outcome.errors[0]
    assert {h for h, _ in resolver.targets} <= {"127.0.0.1"}, resolver.targets
    tally.add(outcome.kind)


IDS = st.one_of(st.text(max_size=30), st.sampled_from([
    "@evil.invalid", "../../../evil", "x/../../@evil.invalid", "?x=1#", "%2e%2e/%2e%2e",
    "//evil.invalid", "\\\\evil.invalid\\x", "flw_1 HTTP/1.1\r\nHost: evil.invalid", "#", "..",
    ":@evil.invalid:80"]))


@fuzz(40)
@given(flow_id=IDS)
def test_a_server_sent_id_cannot_steer_the_detail_request(flow_id, resolver, tmp_path,
                                                         tally: Tally):
    seen: list[Request] = []

    def route(request: Request) -> Reply:
        seen.append(request)
        if request.path == "/v1/flows":
            return json_reply({"data": [{**ops_item("flw_x"), "id": flow_id}],
                               "meta": {"total": 1, "has_more": False}})
        return json_reply(ops_detail({**ops_item("flw_x"), "id": flow_id}))

    with HostileServer(route) as hostile:
        argv = write_inputs(tmp_path, config={"api_key": KEY, "max_parallel_streams": 1, "semantics_probe": False,
                                              "api_url": f"{hostile.url}/v1"},
                            catalog=catalog_for(["flows"]))
        outcome = run_cli(argv).check()
    assert {h for h, _ in resolver.targets} <= {"127.0.0.1"}, resolver.targets
    details = [r for r in seen if r.path != "/v1/flows"]
    for request in details:  # one path segment under /v1/flows/, the id percent-encoded
        prefix, _, segment = request.target.partition("/v1/flows/")
        assert prefix == "" and "/" not in segment and "?" not in segment, request.target
        assert unquote(segment) == flow_id
    tally.add(outcome.kind)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_plain_http_to_loopback_never_goes_through_a_proxy(variable, server, tmp_path,
                                                           monkeypatch, tally: Tally) -> None:
    """A proxy from the environment would carry the key in clear to the proxy's host."""
    proxy = HostileServer(lambda request: json_reply({"proxied": True}))
    with proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(variable, proxy.url)
        argv = write_inputs(tmp_path, config={"api_key": KEY, "max_parallel_streams": 1,
                                              "data_url": f"{server.url}/api/public/data"},
                            catalog=catalog_for(["order"]))
        outcome = run_cli(argv).check()
    assert proxy.requests == [], [r.headers.get("authorization") is not None for r in proxy.requests]
    assert outcome.code == 0, outcome.errors
    tally.add("exit 0, no request through the proxy")
