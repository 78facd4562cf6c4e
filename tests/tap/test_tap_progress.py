"""Progress lines: the share of the time window is measured from the start point or first record."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from tap_apixx.progress import SyncProgress


def fake_stream(records: int) -> SimpleNamespace:
    return SimpleNamespace(name="order", counts={"records": records, "requests": 1, "retries": 0, "throttled": 0},
                           logger=logging.getLogger("test-progress"))


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_without_a_start_point_the_window_opens_at_the_first_record(caplog, monkeypatch):
    now = datetime.now(timezone.utc)
    first, halfway = now - timedelta(days=100), now - timedelta(days=50)
    progress = SyncProgress(fake_stream(500), since=None)
    monkeypatch.setattr("tap_apixx.progress.PROGRESS_EVERY_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="test-progress"):
        progress.tick(iso(first + timedelta(days=1)), first_ts=iso(first))  # first page
        progress.tick(iso(halfway))
    shares = [float(r.getMessage().split(", ")[-1].split("%")[0]) for r in caplog.records]
    assert 0.5 <= shares[0] <= 1.5 and 49.0 <= shares[1] <= 51.0


def test_with_a_start_point_the_window_opens_there(caplog, monkeypatch):
    now = datetime.now(timezone.utc)
    progress = SyncProgress(fake_stream(10), since=iso(now - timedelta(days=10)))
    monkeypatch.setattr("tap_apixx.progress.PROGRESS_EVERY_SECONDS", 0.0)
    with caplog.at_level(logging.INFO, logger="test-progress"):
        progress.tick(iso(now - timedelta(days=1)), first_ts=iso(now - timedelta(days=5)))
    assert "90." in caplog.records[-1].getMessage() or "89.9" in caplog.records[-1].getMessage()
