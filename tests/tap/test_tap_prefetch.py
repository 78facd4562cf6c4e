"""The next page is requested while the current one is processed (tap_apixx/prefetch.py).

Against tests/helpers/fake_apixx.py, a server independent of our emulator: the overlap happens,
no page is asked for twice, an error of the page ahead surfaces only after the page before it
has been written with its STATE, and `--test` asks for one page only.
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stdout

import pytest

from tap_apixx.prefetch import NextPage
from tap_apixx.tap import TapApixx
from tests.helpers import wait_for
from tests.helpers.fake_apixx import START_US, FakeApixx
from tests.helpers.tap import catalog_for, parse_messages

STAMPS = [START_US + i * 1000 for i in range(30)]  # three pages of 10, no ties


def stream_of(fake: FakeApixx, **settings):
    tap = TapApixx(config=fake.config(page_size=10, **settings), catalog=catalog_for(["order"]))
    return tap.streams["order"]


def test_the_next_page_is_requested_while_the_current_page_is_still_being_read(monkeypatch):
    with FakeApixx() as fake:
        fake.add("order", STAMPS)
        out = io.StringIO()
        with redirect_stdout(out):
            records = stream_of(fake).request_records(None)
            first = next(records)
            # the consumer holds page 1's first record: its STATE is not written yet, and
            # page 2 is already asked for (a sequential tap would still be waiting here)
            assert wait_for(lambda: len(fake.list_requests("order")) == 2, timeout=10)
            assert parse_messages(out.getvalue()) == []
            rest = list(records)
        ids = [r["canonical_id"] for r in [first, *rest]]
        assert sorted(ids) == sorted(fake.truth("order"))  # each record once
        ahead = [r["params"] for r in fake.list_requests("order")]

    class OneAtATime(NextPage):  # never starts a request ahead: the sequential tap
        def start(self, send):
            pass

    with FakeApixx() as fake, redirect_stdout(io.StringIO()):
        fake.add("order", STAMPS)
        monkeypatch.setattr("tap_apixx.streams.NextPage", OneAtATime)
        list(stream_of(fake).request_records(None))
        # exactly the requests of a sequential sync: none twice, none beyond the end
        assert ahead == [r["params"] for r in fake.list_requests("order")]


class FailingSecondPage(FakeApixx):
    """Answers the second list request with a 403 (a key that lost its scope mid-sync)."""

    def serve(self, path, params):
        if path == "/order" and len(self.list_requests("order")) == 2:
            return 403, {"error": {"code": "forbidden", "message": "Missing scope data:read."}}
        return super().serve(path, params)


def test_an_error_of_the_page_ahead_surfaces_after_the_page_before_it_is_written():
    with FailingSecondPage() as fake:
        fake.add("order", STAMPS)
        out = io.StringIO()
        with redirect_stdout(out), pytest.raises(Exception, match="403") as raised:
            for _ in stream_of(fake).request_records(None):
                pass
        messages = parse_messages(out.getvalue())
        # page 1 was handed on whole and its STATE written before the error was raised
        assert [m["type"] for m in messages] == ["STATE"]
        bookmark = messages[0]["value"]["bookmarks"]["order"]["replication_key_value"]
        assert bookmark == fake.stamp(STAMPS[9])
        assert "req_fake2" in str(raised.value)


def test_a_connection_test_asks_for_one_page_only():
    with FakeApixx() as fake:
        fake.add("order", STAMPS)
        stream = stream_of(fake)
        stream.ABORT_AT_RECORD_COUNT = 1
        with redirect_stdout(io.StringIO()):
            assert len(list(stream.get_records(None))) == 1
        time.sleep(0.2)  # a request sent in the background would have arrived by now
        assert len(fake.list_requests("order")) == 1
