"""`tap-apixx --test`: a good connection test reads one record per stream and logs no ERROR.

The seam (tap_apixx/dry_run.py) relies on how the SDK runs the test; the pins below fail
loudly if an SDK upgrade changes that.
"""

from __future__ import annotations

import json

import pytest
from singer_sdk import Stream, Tap
from singer_sdk.exceptions import AbortedSyncFailedException, AbortedSyncPausedException

from tap_apixx.tap import TapApixx
from tests.helpers.tap import config_for, run_cli

STREAMS = 18  # 15 canonical + flows, runs, connectors


def test_a_good_connection_test_logs_no_error(emulator, tmp_path):
    proc = run_cli(tmp_path, config_for(emulator), "--test")
    records = [json.loads(line) for line in proc.stdout.splitlines() if '"RECORD"' in line]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert " ERROR " not in proc.stderr and "unhandled error" not in proc.stderr
    assert len({r["stream"] for r in records}) == len(records) == STREAMS
    assert proc.stderr.count("answered: 1 record(s) read (the test stops at 1)") == STREAMS


def test_a_failing_connection_test_still_fails_clearly(emulator, tmp_path):
    proc = run_cli(tmp_path, {**config_for(emulator), "api_key": "apx_live_acme_revoked_0000"}, "--test")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("tap-apixx: error: ")
    assert "HTTP 401 unauthorized" in proc.stderr


def test_sdk_pin_the_connection_test_caps_each_stream_at_one_record(emulator, monkeypatch):
    """Pin: `run_connection_test` sets ABORT_AT_RECORD_COUNT = 1 on every stream, then syncs it."""
    seen: dict[str, int | None] = {}
    monkeypatch.setattr(Stream, "sync", lambda self, context=None: seen.update({self.name: self.ABORT_AT_RECORD_COUNT}))
    assert Tap.run_connection_test(TapApixx(config=config_for(emulator))) is True
    assert len(seen) == STREAMS and set(seen.values()) == {1}


def test_sdk_pin_one_record_over_the_cap_aborts_through_an_exception(emulator):
    """Pin: the SDK stops a capped stream by raising (which `Stream.sync` logs as an ERROR),
    so our streams must end before the record over the cap."""
    stream = TapApixx(config=config_for(emulator)).streams["order"]
    stream.ABORT_AT_RECORD_COUNT = 1
    stream._check_max_record_limit(current_record_index=0)  # the first record is allowed
    with pytest.raises((AbortedSyncFailedException, AbortedSyncPausedException)):
        stream._check_max_record_limit(current_record_index=1)
