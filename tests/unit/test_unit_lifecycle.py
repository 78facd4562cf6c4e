"""Unit tests of the lifecycle rules: windows and their state marker, rewinds, new-field typing."""

from __future__ import annotations

import logging

import pytest

from tap_apixx.new_fields import infer_property, is_json_text
from tap_apixx.rewind import APPLIED_KEY, apply_rewinds, parse_rewinds, rewind_problems
from tap_apixx.window import Window, WindowStateError, covers, mark_complete, prepare_stream_state

LOG = logging.getLogger("test")
JAN, FEB, MAR = "2026-01-01T00:00:00.000Z", "2026-02-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z"


def records(*stamps: str) -> list[dict]:
    return [{"updated_at": s} for s in stamps]


# -- windows -----------------------------------------------------------------------------------

def test_window_from_config_normalises_to_the_api_form():
    window = Window.from_config({"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-02-01T01:00:00+01:00"})
    assert (window.start, window.end, window.bounded) == (JAN, FEB, True)
    assert not Window.from_config({"start_date": JAN}).bounded


def test_cut_keeps_records_strictly_before_the_end_comparing_instants():
    window = Window(end=FEB)
    page = records("2026-01-31T23:59:59.999Z", "2026-01-31T23:59:59.999500+00:00", FEB, "2026-02-01T00:00:00.001Z")
    assert window.cut(page, "updated_at") == 2
    assert window.cut(page[:2], "updated_at") == 2
    assert window.cut(records(FEB, MAR), "updated_at") == 0
    assert Window().cut(page, "updated_at") == 4


def test_covers():
    assert covers(None, None) and covers(None, JAN) and covers(JAN, JAN) and covers(JAN, FEB)
    assert not covers(FEB, JAN) and not covers(JAN, None)


def test_a_fresh_stream_gets_the_window_marker_and_a_normal_run_none():
    state: dict = {}
    prepare_stream_state("order", state, Window(JAN, FEB))
    assert state["window"] == {"start": JAN, "end": FEB, "complete": False}
    mark_complete(state)
    assert state["window"]["complete"] is True
    normal: dict = {}
    prepare_stream_state("order", normal, Window(JAN))
    assert "window" not in normal


def test_a_windowed_run_continues_its_own_window_and_extends_it():
    state = {"replication_key_value": "2026-01-20T00:00:00.000Z",
             "window": {"start": JAN, "end": FEB, "complete": False}}
    prepare_stream_state("order", state, Window(JAN, MAR))
    assert state["window"] == {"start": JAN, "end": MAR, "complete": False}


def test_a_windowed_run_refuses_a_normal_state():
    state = {"replication_key_value": MAR}
    with pytest.raises(WindowStateError, match="normal incremental bookmark.*state-id-suffix"):
        prepare_stream_state("order", state, Window(JAN, FEB))
    assert state == {"replication_key_value": MAR}


def test_a_normal_run_takes_over_a_window_that_started_early_enough():
    state = {"replication_key_value": "2026-01-20T00:00:00.000Z",
             "window": {"start": None, "end": FEB, "complete": True}}
    note = prepare_stream_state("order", state, Window(JAN))
    assert state["window"] is None and "normal incremental state" in note
    assert state["replication_key_value"] == "2026-01-20T00:00:00.000Z"


def test_a_run_refuses_a_window_that_started_later_than_it_needs():
    state = {"replication_key_value": "2026-02-20T00:00:00.000Z",
             "window": {"start": FEB, "end": MAR, "complete": True}}
    for window in (Window(JAN), Window(), Window(JAN, MAR)):
        with pytest.raises(WindowStateError, match="unsynced"):
            prepare_stream_state("order", dict(state), window)


def test_a_rewound_stream_may_start_any_window():
    state = {"replication_key_value": None, "window": {"start": FEB, "end": MAR, "complete": True}}
    prepare_stream_state("order", state, Window(JAN))
    assert state["window"] is None


# -- rewinds -----------------------------------------------------------------------------------

STREAMS = {"order": "updated_at", "invoice": "updated_at", "runs": "started_at", "flows": None}


def test_rewind_setting_shapes_and_problems():
    assert parse_rewinds([{"stream": "order", "to": "start", "id": "T-1"}])[0].to is None
    assert parse_rewinds([{"stream": "order", "to": "2026-01-01T00:00:00Z", "id": "T-2"}])[0].to == JAN
    assert rewind_problems(None, STREAMS) == []
    for bad, why in [
        ("order", "expected a list"),
        ({"stream": "order", "to": "start", "id": "x"}, "expected a list"),
        ([{"stream": "order", "to": "start"}], "needs 'id'"),
        ([{"stream": "order", "to": "yesterday", "id": "x"}], "'to' must be"),
        ([{"stream": "order", "to": "start", "id": "x", "extra": 1}], "unknown keys"),
        ([{"stream": "orders", "to": "start", "id": "x"}], "unknown stream 'orders'"),
        ([{"stream": "flows", "to": "start", "id": "x"}], "read in full"),
    ]:
        problems = rewind_problems(bad, STREAMS)
        assert len(problems) == 1 and why in problems[0] and problems[0].startswith("rewind: ")


def test_rewind_moves_only_the_chosen_stream_back_once():
    bookmarks = {
        "order": {"replication_key_value": MAR, "seen_at_bookmark": {"updated_at": MAR, "ids": ["a"]}},
        "invoice": {"replication_key_value": MAR},
    }
    rewinds = parse_rewinds([{"stream": "order", "to": FEB, "id": "T-1"}])
    apply_rewinds(bookmarks, rewinds, {"order", "invoice"}, LOG)
    assert bookmarks["order"]["replication_key_value"] == FEB
    assert bookmarks["order"]["seen_at_bookmark"] is None
    assert bookmarks["order"][APPLIED_KEY] == ["T-1"]
    assert bookmarks["invoice"] == {"replication_key_value": MAR}
    bookmarks["order"]["replication_key_value"] = MAR  # the re-sync ran; the setting stays in place
    apply_rewinds(bookmarks, rewinds, {"order", "invoice"}, LOG)
    assert bookmarks["order"]["replication_key_value"] == MAR


def test_rewind_to_start_clears_with_nulls_and_never_moves_forward():
    bookmarks = {"order": {"replication_key_value": FEB}, "invoice": {"replication_key_value": JAN}}
    apply_rewinds(bookmarks, parse_rewinds([
        {"stream": "order", "to": "start", "id": "a"},
        {"stream": "invoice", "to": MAR, "id": "b"},
        {"stream": "runs", "to": "start", "id": "c"},
    ]), {"order", "invoice"}, LOG)
    assert bookmarks["order"]["replication_key_value"] is None
    assert bookmarks["invoice"] == {"replication_key_value": JAN, APPLIED_KEY: ["b"]}
    assert "runs" not in bookmarks  # not selected in this run: waits, not recorded


# -- new fields --------------------------------------------------------------------------------

@pytest.mark.parametrize(("values", "kind"), [
    (["gold", None], "string"),
    ([1, 2, None], "integer"),
    ([1, 2.5], "number"),
    ([True, False], "boolean"),
    ([{"a": 1}], "object"),
    ([[1, 2]], "array"),
])
def test_new_field_types_are_inferred_conservatively(values, kind):
    prop = infer_property(values)
    assert prop["type"] == [kind, "null"] and not is_json_text(prop)


def test_mixed_new_fields_are_json_text_and_all_null_ones_wait():
    prop = infer_property([1, "one"])
    assert prop["type"] == ["string", "null"] and is_json_text(prop)
    assert infer_property([True, 1])["type"] == ["string", "null"]  # bool is not an integer here
    assert infer_property([None, None]) is None
