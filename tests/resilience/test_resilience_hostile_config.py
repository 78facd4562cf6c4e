"""Hostile input classes 2 and 7 (config): settings of any shape, the key in no form anywhere.

Run through the real command line, in-process (`hostile_helpers.run_cli`), against a small
fake server: a setting with a control character or stray whitespace, of the wrong type, out of
range, misspelt or unknown, and config files that are not JSON objects at all. Each ends in
exit 0 (possibly with a warning) or exit 1 with one line naming the setting, never its value
when that could be the key, never a traceback.
"""

from __future__ import annotations

import difflib
import json
import string
import typing as t
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tap_apixx.streams import CanonicalStream
from tap_apixx.tap import TapApixx
from tests.helpers.hostile import Tally, fuzz, run_cli, tally_fixture, write_inputs
from tests.helpers.hostile_server import HostileServer, Reply, Request, data_page, data_records
from tests.helpers.resilience import also_secret, no_secrets_anywhere  # noqa: F401  (autouse)
from tests.helpers.tap import catalog_for

KEY = "apx_live_acme_hostile_cfg_4e1b7a"
tally2 = tally_fixture(2)
tally7 = tally_fixture(7)
SETTINGS = sorted(TapApixx(config={"api_key": KEY}, validate_config=False)
                  .config_jsonschema["properties"])


def serve(request: Request) -> Reply:
    return data_page(data_records(3), request)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CanonicalStream, "backoff_base_seconds", 0.01)


@pytest.fixture(scope="module")
def server() -> t.Iterator[HostileServer]:
    with HostileServer(serve) as running:
        yield running


def good_config(server: HostileServer) -> dict[str, t.Any]:
    return {"api_key": KEY, "data_url": f"{server.url}/api/public/data",
            "api_url": f"{server.url}/v1", "max_parallel_streams": 1,
            "semantics_probe": False}


def run(tmp_path, config: t.Any, streams: tuple[str, ...] = ("order",)):
    argv = write_inputs(tmp_path, config=config, catalog=catalog_for(streams))
    return run_cli(argv).check()


# Class 2: control characters and stray whitespace, in the key and in every string setting.

BAD_CHARS = ["\n", "\r", "\r\n", "\t", " ", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u00a0",
             "\ufeff", "\u200b", "\x0b", "\x0c"]
STRING_SETTINGS = ["api_key", "data_url", "api_url", "start_date", "user_agent"]


@st.composite
def spoilt(draw: st.DrawFn, value: str, anywhere: bool) -> str:
    char = draw(st.sampled_from(BAD_CHARS))
    where = draw(st.sampled_from(["start", "end", "middle"] if anywhere else ["start", "end"]))
    if where == "start":
        return char + value
    if where == "end":
        return value + char
    cut = draw(st.integers(1, len(value) - 1))
    return value[:cut] + char + value[cut:]


@fuzz(60)
@given(data=st.data(), setting=st.sampled_from(STRING_SETTINGS),
       secret=st.text(string.ascii_letters + string.digits + "_-", min_size=12, max_size=40))
def test_a_control_character_or_stray_space_is_one_line_without_the_value(
        data, setting, secret, server, tmp_path, tally2: Tally):
    key = f"apx_live_{secret}"
    config = {**good_config(server), "api_key": key, "start_date": "2026-01-01T00:00:00Z",
              "user_agent": "acme-elt/1.0 (ops@example.com)"}
    value = config[setting]
    inner_space_ok = setting in ("user_agent", "start_date")  # "acme-elt/1.0 (ops@…)"
    bad = data.draw(spoilt(value, anywhere=True))
    if inner_space_ok:  # a plain inner space: another problem (or none), not this class
        assume(not bad.isprintable() or bad != bad.strip() or not bad.isascii())
    config[setting] = bad
    also_secret(key)
    also_secret(bad) if setting == "api_key" else None
    outcome = run(tmp_path, config)
    assert outcome.code == 1, (setting, bad)
    line = outcome.errors[0]
    assert line.startswith(f"tap-apixx: error: config: {setting}:"), line
    assert value not in line and repr(bad)[1:-1] not in line  # never the value, in any form
    tally2.add(outcome.kind)


def test_the_issue_example_a_key_ending_in_a_newline(server, tmp_path) -> None:
    key = KEY + "\n"
    also_secret(key)
    outcome = run(tmp_path, {**good_config(server), "api_key": key})
    assert outcome.code == 1
    assert "api_key" in outcome.errors[0] and "whitespace" in outcome.errors[0]


# Class 7 (config): wrong types, values out of range, dates out of range.

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)
OWN_SETTINGS = [s for s in SETTINGS if s in TapApixx.config_jsonschema["properties"]]


@fuzz(80)
@given(setting=st.sampled_from(OWN_SETTINGS), value=JSON_VALUES)
def test_a_setting_of_any_type_ends_cleanly(setting, value, server, tmp_path, tally7: Tally):
    assume(not (setting in ("data_url", "api_url") and value is None))  # the real host: offline
    if setting == "api_key" and isinstance(value, str):
        also_secret(value) if len(value) >= 12 else None
    config = {**good_config(server), setting: value}
    outcome = run(tmp_path, config)
    if outcome.code and "error: config:" in outcome.errors[0]:
        assert outcome.errors[0].startswith(f"tap-apixx: error: config: {setting}:"), (
            setting, value, outcome.errors)
    tally7.add(outcome.kind)


NOW = datetime.now(timezone.utc)


@fuzz(40)
@given(moment=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                           timezones=st.just(timezone.utc)),
       form=st.sampled_from(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f+00:00",
                             "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]))
def test_start_date_out_of_range_is_one_line(moment, form, server, tmp_path, tally7: Tally):
    value = moment.strftime(form) if moment.year >= 1000 else moment.isoformat()
    outcome = run(tmp_path, {**good_config(server), "start_date": value})
    in_range = datetime(1970, 1, 1, tzinfo=timezone.utc) <= moment <= NOW + timedelta(hours=1)
    if in_range and moment < NOW - timedelta(minutes=1):
        assert outcome.code == 0, (value, outcome.errors)
    if not (datetime(1970, 1, 1, tzinfo=timezone.utc) <= moment <= NOW + timedelta(days=2)):
        assert outcome.code == 1, value
        assert outcome.errors[0].startswith("tap-apixx: error: config: start_date:")
    tally7.add(outcome.kind)


def test_start_date_in_year_1_is_one_line(server, tmp_path) -> None:
    outcome = run(tmp_path, {**good_config(server), "start_date": "0001-01-01T00:00:00Z"})
    assert outcome.code == 1 and "start_date" in outcome.errors[0]


# Class 7 (config): misspelt and unknown setting names.

def one_edit(name: str, draw: st.DrawFn) -> str:
    i = draw(st.integers(0, len(name) - 1))
    kind = draw(st.sampled_from(["drop", "swap", "insert", "replace"]))
    char = draw(st.sampled_from(string.ascii_lowercase + "_"))
    if kind == "drop":
        return name[:i] + name[i + 1:]
    if kind == "swap" and i < len(name) - 1:
        return name[:i] + name[i + 1] + name[i] + name[i + 2:]
    if kind == "insert":
        return name[:i] + char + name[i:]
    return name[:i] + char + name[i + 1:]


@fuzz(40)
@given(data=st.data(), original=st.sampled_from([s for s in OWN_SETTINGS if len(s) >= 7]))
def test_a_misspelt_setting_says_did_you_mean(data, original, server, tmp_path, tally7: Tally):
    typo = one_edit(original, data.draw)
    assume(typo not in SETTINGS and typo != original)
    config = {**good_config(server), typo: data.draw(JSON_VALUES)}
    outcome = run(tmp_path, config)
    assert outcome.code == 1, typo
    assert f"config: {typo}:" in outcome.errors[0] and f"'{original}'" in outcome.errors[0]
    assert "did you mean" in outcome.errors[0]
    tally7.add(outcome.kind)


@fuzz(30)
@given(name=st.text(string.ascii_lowercase + "_", min_size=1, max_size=20))
def test_an_unknown_setting_is_a_warning_or_a_suggestion(name, server, tmp_path, tally7: Tally):
    assume(name not in SETTINGS)
    outcome = run(tmp_path, {**good_config(server), name: 1})
    close = difflib.get_close_matches(name, SETTINGS, n=3, cutoff=0.8)
    if outcome.code:
        assert f"config: {name}:" in outcome.errors[0] and "did you mean" in outcome.errors[0]
    else:
        assert any(name in w and "unknown setting" in w for w in outcome.warnings), outcome.log
        assert not close, (name, close)
    tally7.add(outcome.kind)


# Class 7 (config): files that are not a JSON object.

FILES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"\n", b"{", b"[]", b"[1]", b"null", b"42", b'"apx"', b"{bad}",
                     b'{"api_key": NaN}', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"[" * 100000,
                     b'{"a": 1} trailing', b"\x00" * 10]),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
)


@fuzz(40)
@given(content=FILES, which=st.sampled_from(["config", "state", "catalog"]))
def test_a_file_that_is_not_a_json_object_is_one_line(content, which, server, tmp_path,
                                                      tally7: Tally):
    files: dict[str, t.Any] = {"config": good_config(server), "catalog": catalog_for(["order"])}
    files[which] = content
    outcome = run_cli(write_inputs(tmp_path, **files)).check()
    if outcome.code:
        assert f"error: {which}" in outcome.errors[0], outcome.errors
    else:
        assert which != "config", content  # a config without api_key cannot pass
    tally7.add(outcome.kind)


@pytest.mark.parametrize("path", ["missing.json", "."])
def test_a_config_path_that_is_not_a_file_is_one_line(path, tmp_path, tally7: Tally) -> None:
    outcome = run_cli(["--config", str(tmp_path / path)]).check()
    assert outcome.code == 1 and "config" in outcome.errors[0]
    tally7.add(outcome.kind)
