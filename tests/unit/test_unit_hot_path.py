"""The per-page work of a sync: a page of RECORD lines encoded at once, and a quiet collector."""

from __future__ import annotations

import gc
import json
from decimal import Decimal

import pytest

from tap_apixx.output import encode, record_lines
from tap_apixx.parallel import GC_YOUNG_THRESHOLD, ParallelSync
from tap_apixx.tap import TapApixx

CONFIG = {"api_key": "apx_test_acme_8d2b6f0c4e1a", "data_url": "http://127.0.0.1:9/api/public/data"}
PREFIX = b'{"type":"RECORD","stream":"order","record":'
SUFFIX = b',"time_extracted":"2026-11-30T12:00:00.000001+00:00"}\n'


def one_by_one(records: list[dict]) -> bytes:
    return b"".join(PREFIX + encode(record) + SUFFIX for record in records)


@pytest.mark.parametrize(
    "records",
    [
        [{"canonical_id": "a", "n": 1}],
        [{"canonical_id": str(i), "nested": {"k": [i, None, "x\ny"]}, "f": i / 3} for i in range(50)],
        [{"canonical_id": "big", "n": 2**70}, {"canonical_id": "plain", "n": 2}],  # orjson refuses
        [{"canonical_id": "dec", "n": Decimal("1.10")}, {"canonical_id": "x", "s": "é\u2028"}],
    ],
    ids=["one", "fifty", "int beyond 64 bits", "decimal"],
)
def test_a_page_encodes_as_each_record_would_alone(records: list[dict]) -> None:
    data = record_lines(records, PREFIX, SUFFIX)
    assert data == one_by_one(records)
    lines = data.split(b"\n")
    assert lines.pop() == b"" and len(lines) == len(records)  # a line per record, in order
    for line, record in zip(lines, records):
        message = json.loads(line)
        assert message["type"] == "RECORD" and message["stream"] == "order"
        assert message["record"] == {k: float(v) if isinstance(v, Decimal) else v for k, v in record.items()}


def test_a_sync_runs_with_a_quiet_collector_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def capture(self: ParallelSync) -> None:
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()
        raise RuntimeError("stops here")

    monkeypatch.setattr(ParallelSync, "_sync_all", capture)
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0  # nothing in this process froze objects
    with pytest.raises(RuntimeError, match="stops here"):
        TapApixx(config=CONFIG).sync_all()
    assert seen["threshold"] == (GC_YOUNG_THRESHOLD, *before[1:]) and GC_YOUNG_THRESHOLD > before[0]
    assert seen["frozen"] > 0  # what existed before the sync is out of every collection
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0  # even on an error


def test_a_host_that_froze_objects_keeps_its_own_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedding process froze before (e.g. to fork): the sync neither adds nor thaws."""
    seen: list[int] = []
    monkeypatch.setattr(ParallelSync, "_sync_all", lambda self: seen.append(gc.get_freeze_count()))
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        TapApixx(config=CONFIG).sync_all()
        # (the count only falls, as frozen objects are freed: a freeze would add the tap's
        # thousands of new objects, a thaw would leave none)
        assert len(seen) == 1 and 0 < seen[0] <= frozen and 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
