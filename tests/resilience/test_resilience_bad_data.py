"""Bad data from the server: each kind ends in one clear error line or a sync that loses nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from apixx_emulator.testing import EmulatorProcess
from tap_apixx.errors import ApiRequestError
from tap_apixx.streams import CanonicalStream
from tests.helpers.resilience import (
    error_lines,
    no_secrets_anywhere,  # noqa: F401  (autouse: every test here is scanned for the key)
    record_figures,
    run_cli_scanned,
    tap_argv,
    watch,
)
from tests.helpers.tap import config_for, latest, list_requests, parse_messages, run_tap, truth

ENTITY = "order"
PAGE = 20
SKIP = 2  # spoil the third page, so that good pages come first
# The server counts the pages it serves to spoil the third: the sync-start probe's requests
# would be counted too, so it is off here (tests/tap/test_tap_check.py covers it under bad data).


@dataclass(frozen=True)
class Fatal:
    kind: str
    says: str  # the problem, as the error line names it


FATAL = [
    Fatal("missing_canonical_id", "sent a record without a canonical_id"),
    Fatal("missing_updated_at", "with updated_at None, not an RFC 3339 timestamp"),
    Fatal("bad_timestamp", "with updated_at 'yesterday at noon', not an RFC 3339 timestamp"),
    Fatal("wrong_type_key", "with updated_at 1767225600000, not an RFC 3339 timestamp"),
    Fatal("out_of_order", "not ascending"),
    Fatal("stale_page", "before that instant"),  # the same page again: before updated_since
]
BEHAVIOUR: dict[str, str] = {}  # kind -> what the tap did (for the figures)


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=200, read_limit=10**6) as server:
        yield server


@pytest.fixture(autouse=True)
def clean(emu):
    emu.control("DELETE", "/_emulator/bad-data")
    emu.clear_stats()
    yield
    emu.control("DELETE", "/_emulator/bad-data")


@pytest.fixture()
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CanonicalStream, "backoff_base_seconds", 0.01)


def plan(emu: EmulatorProcess, kind: str, **extra) -> None:
    emu.control("POST", "/_emulator/bad-data", json={"entity": ENTITY, "kind": kind, **extra})


@pytest.mark.parametrize("case", FATAL, ids=[c.kind for c in FATAL])
def test_unusable_data_stops_with_one_line_naming_entity_request_and_problem(emu, case, tmp_path):
    plan(emu, case.kind, skip=SKIP, always=True)
    proc = run_cli_scanned(tap_argv(tmp_path, config_for(emu, page_size=PAGE, semantics_probe=False), [ENTITY]))
    lines = error_lines(proc.stderr)
    served = list_requests(emu, ENTITY)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"tap-apixx: error: {ENTITY}: ")
    assert case.says in lines[0]
    assert served[-1]["status"] == 200 and "request_id=req_" in lines[0]
    assert len(served) == SKIP + 1  # stopped at the bad page: no retry loop, no skipping
    emitted = {m["record"]["canonical_id"] for m in parse_messages(proc.stdout)
               if m["type"] == "RECORD"}
    emu.control("DELETE", "/_emulator/bad-data")
    good_pages = set()  # what the server sent before the bad page, asked for again, clean
    for request in served[:SKIP]:
        page = emu.get(f"/api/public/data/{ENTITY}", params=request["params"]).json()["data"]
        good_pages |= {r["canonical_id"] for r in page}
    assert len(good_pages) > PAGE and good_pages <= emitted  # all of it was delivered
    BEHAVIOUR[case.kind] = f"exit 1, one line: '{ENTITY}: … {case.says} … (request_id=req_…)'"


@pytest.mark.parametrize("kind", ["no_data", "non_json"])
def test_a_broken_200_once_is_retried_and_nothing_is_lost(emu, kind, fast_backoff):
    plan(emu, kind, skip=SKIP, count=1)
    result = run_tap(config_for(emu, page_size=PAGE, semantics_probe=False), streams=[ENTITY])
    watch("records", result.messages)
    assert latest(result.records(ENTITY)) == truth(emu, ENTITY)
    asked = [tuple(sorted(r["params"].items())) for r in list_requests(emu, ENTITY)]
    assert len(asked) - len(set(asked)) == 1  # the spoiled page, asked for once more
    BEHAVIOUR[kind] = "once: retried, nothing lost"


@pytest.mark.parametrize("kind", ["no_data", "non_json"])
def test_a_broken_200_every_time_gives_up_clearly(emu, kind, fast_backoff):
    plan(emu, kind, skip=SKIP, always=True)
    with pytest.raises(ApiRequestError) as info:
        run_tap(config_for(emu, page_size=PAGE, semantics_probe=False), streams=[ENTITY])
    text = watch("exception", str(info.value))
    assert text.startswith(f"{ENTITY}: ") and "\n" not in text
    assert "request_id=req_" in text and text.endswith("gave up after 6 attempts")
    assert ("without a 'data' list" if kind == "no_data" else "unparseable JSON") in text
    assert len(list_requests(emu, ENTITY)) == SKIP + 6  # bounded: six attempts, then stop
    BEHAVIOUR[kind] += "; always: gives up after 6 attempts with one line"


def test_a_next_cursor_that_repeats_changes_nothing(emu):
    """The tap pages on updated_since, never on the cursor: a stuck cursor cannot loop it."""
    plan(emu, "repeat_cursor", always=True)
    result = run_tap(config_for(emu, page_size=PAGE, semantics_probe=False), streams=[ENTITY])
    cursors = {r["params"].get("cursor") for r in list_requests(emu, ENTITY)}
    assert cursors == {None}
    assert latest(result.records(ENTITY)) == truth(emu, ENTITY)
    assert len(result.ids(ENTITY)) == len(truth(emu, ENTITY))
    BEHAVIOUR["repeat_cursor"] = "ignored (paging is on updated_since): nothing lost, no loop"


def test_a_value_of_the_wrong_type_is_nulled_with_a_warning_naming_stream_field_and_id(emu, caplog):
    plan(emu, "wrong_type", skip=SKIP, count=3)  # an integer field sent as "1234.50"
    with caplog.at_level(logging.WARNING):
        result = run_tap(config_for(emu, page_size=PAGE, semantics_probe=False), streams=[ENTITY])
    records = result.records(ENTITY)
    assert latest(records) == truth(emu, ENTITY)  # no record lost
    warnings = [r.getMessage() for r in caplog.records if "loading null instead" in r.getMessage()]
    assert len(warnings) == 3
    by_id = {r["canonical_id"]: r for r in records}
    api = {r["canonical_id"]: r for r in emu.ground_truth(ENTITY)}
    for line in warnings:
        assert line.startswith(f"Stream '{ENTITY}', record ") and "request_id=req_" in line
        cid, field = line.split("record ", 1)[1].split(":")[0], line.split("field '")[1].split("'")[0]
        assert by_id[cid][field] is None and isinstance(api[cid][field], int)  # nulled, not passed on
    assert all(not (isinstance(v, str) and v.endswith(".50")) for r in records for v in r.values())
    BEHAVIOUR["wrong_type"] = "nulled (not convertible without loss), one warning naming stream, field and id"


def test_a_value_of_the_wrong_type_stops_the_sync_with_type_errors_fail(emu, tmp_path):
    plan(emu, "wrong_type", skip=SKIP, count=1)
    proc = run_cli_scanned(tap_argv(tmp_path, config_for(emu, page_size=PAGE, type_errors="fail", semantics_probe=False), [ENTITY]))
    lines = error_lines(proc.stderr)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"tap-apixx: error: {ENTITY}: record ")
    assert ".50', not" in lines[0]  # the value, shown as sent
    assert "type_errors is 'fail'" in lines[0] and "request_id=req_" in lines[0]


def test_zz_record_the_behaviour_table():
    assert len(BEHAVIOUR) >= 10, BEHAVIOUR
    record_figures("ci", "bad_data", dict(sorted(BEHAVIOUR.items())))
