"""Bad settings and bad keys: one clear line each, exit 1, and no request when the config is wrong."""

from __future__ import annotations

import pytest

from apixx_emulator.testing import DEFAULT_KEY
from tests.helpers.resilience import (
    also_secret,
    error_lines,
    no_secrets_anywhere,  # noqa: F401  (autouse: every test here is scanned for the key)
    record_figures,
    run_cli_scanned,
    tap_argv,
)
from tests.helpers.tap import config_for, latest, parse_messages, truth

TEST_KEY = "apx_test_acme_8d2b6f0c4e1a"  # built-in: tenant acme, environment test
BEHAVIOUR: dict[str, str] = {}

# (setting, value, what the one line says); test_tap_errors.py already covers page_size 0
# together with a remote http data_url, so each is tried alone here.
BAD_SETTINGS = [
    ("api_key", "sk_live_4f9c2e1a7b3d", "api_key: does not start with a known prefix"),
    ("start_date", "last tuesday", "start_date: 'last tuesday' is not an RFC 3339 timestamp"),
    ("data_url", "http://example.com/api/public/data", "plain http to a remote host"),
    ("api_url", "ftp://127.0.0.1/v1", "is not an http(s) URL"),
    ("page_size", 1001, "page_size: 1001 is not an integer in 1..1000"),
    ("page_size", "100", "page_size"),
    ("lookback_minutes", -1, "lookback_minutes: -1 is not an integer in 0..10080"),
    ("max_requests_per_minute", 601, "max_requests_per_minute: 601 is not an integer in 1..600"),
    ("request_timeout", 0, "request_timeout: 0 is not an integer in 1..3600"),
    ("batch_config", {"encoding": {"format": "jsonl"}, "storage": {"root": "file:///tmp/b"}},
     "BATCH messages are not supported: a page's STATE would reach the target before the batch"),
]


@pytest.mark.parametrize(("setting", "value", "says"), BAD_SETTINGS,
                         ids=[f"{s}={v!r}" for s, v, _ in BAD_SETTINGS])
def test_each_bad_setting_is_one_line_and_sends_nothing(emulator, tmp_path, setting, value, says):
    emulator.clear_stats()
    config = {**config_for(emulator), setting: value}
    proc = run_cli_scanned(tap_argv(tmp_path, config, ["order"]))
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"tap-apixx: error: config: {setting}")
    assert says in lines[0]
    assert proc.stdout == ""
    assert emulator.stats()["total"] == 0  # the config alone was wrong: no request was sent
    BEHAVIOUR[f"{setting}={value!r}"] = "exit 1, one line, 0 requests"


def test_a_rotated_key_stops_at_the_first_request_with_one_line(emulator_factory, tmp_path):
    emu = emulator_factory(records_per_entity=20)
    rotated = emu.http.post(f"{emu.api_url}/api-keys/key_001/rotate",
                            headers={"Authorization": f"Bearer {DEFAULT_KEY}"}, timeout=30)
    assert rotated.status_code == 200
    also_secret(rotated.json()["secret"])
    emu.clear_stats()
    config = config_for(emu, semantics_probe=False)  # the stream's own first request is counted
    proc = run_cli_scanned(tap_argv(tmp_path, config, ["order"]))  # the old secret
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0].startswith("tap-apixx: error: order: HTTP 401 unauthorized: ")
    assert "revoked or rotated" in lines[0] and "request_id=req_" in lines[0]
    assert [r["status"] for r in emu.stats()["requests"]] == [401]  # not retried
    BEHAVIOUR["rotated key"] = "exit 1, one line (HTTP 401 … Check api_key), 1 request"


def test_a_key_of_the_other_environment_syncs_that_environment_only(emulator, tmp_path):
    """Not an error: an apx_test_ key reads the test dataset, and live ids are 404 to it."""
    also_secret(TEST_KEY)
    proc = run_cli_scanned(tap_argv(tmp_path, {**config_for(emulator), "api_key": TEST_KEY},
                                    ["order"]))
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [m["record"] for m in parse_messages(proc.stdout) if m["type"] == "RECORD"]
    live = truth(emulator, "order")
    assert latest(records) == latest(emulator.ground_truth("order", env="test"))
    assert not set(live) & {r["canonical_id"] for r in records}
    some_live_id = next(iter(live))
    assert emulator.get(f"/api/public/data/order/{some_live_id}", key=TEST_KEY).status_code == 404
    BEHAVIOUR["apx_test_ key on live data"] = "exit 0: syncs the test environment's records"


def test_zz_record_the_behaviour_table():
    assert len(BEHAVIOUR) == len(BAD_SETTINGS) + 2, BEHAVIOUR
    BEHAVIOUR["key without data:read"] = "exit 1, one line (HTTP 403 …), see test_tap_errors.py"
    record_figures("ci", "bad_config", dict(sorted(BEHAVIOUR.items())))
