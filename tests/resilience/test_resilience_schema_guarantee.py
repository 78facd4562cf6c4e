"""The schema guarantee: every RECORD the tap emits validates against the SCHEMA it sent.

Property-based three times: values of any JSON type in any field of any canonical schema (in
process), whole syncs against the emulator with its bad-data controls spoiling pages, and syncs
of the ops streams from a server that sends any value in any field.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apixx_emulator.testing import EmulatorProcess
from tap_apixx.schema_drift import (
    DATED,
    MISSING,
    SchemaDrift,
    SchemaViolationError,
    _show,
    all_match,
    calendar_ok,
    rule_for,
)
from tap_apixx.schema_drift import FORMATS as PATTERNS
from tap_apixx.streams import CANONICAL_ENTITIES, CanonicalStream, load_schema
from tests.helpers.hostile import run_cli, write_inputs
from tests.helpers.hostile_server import HostileServer, json_reply, ops_detail, ops_items, ops_page
from tests.helpers.tap import catalog_for, config_for, latest, run_tap, truth
from tests.unit.test_unit_parse_stamp import texts

FORMATS = jsonschema.Draft7Validator.FORMAT_CHECKER
LOG = logging.getLogger("test-schema-guarantee")
SCHEMAS = {entity: load_schema(entity) for entity in CANONICAL_ENTITIES}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["12", "-7", "12.0", "1234.50", "2026-01-02T03:04:05Z", "2026-13-45",
                       "2026-01-02", "0b9e6f3c-1d2a-4e5f-8a9b-0c1d2e3f4a5b", "yesterday", " 5 "]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def validator(entity: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(SCHEMAS[entity], format_checker=FORMATS)


def good_record(entity: str) -> dict:
    """A record every field of which is valid (nulls where allowed)."""
    record = {}
    for name, prop in SCHEMAS[entity]["properties"].items():
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        fmt = prop.get("format")
        if "null" in kinds:
            record[name] = None
        elif fmt == "uuid":
            record[name] = "0b9e6f3c-1d2a-4e5f-8a9b-0c1d2e3f4a5b"
        elif fmt == "date-time":
            record[name] = "2026-01-02T03:04:05.123456Z"
        elif "integer" in kinds:
            record[name] = 7
        else:
            record[name] = "text"
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), entity=st.sampled_from(sorted(CANONICAL_ENTITIES)),
       mode=st.sampled_from(["coerce", "fail"]))
def test_any_value_in_any_field_is_made_valid_or_stops_the_sync(data, entity, mode):
    props = SCHEMAS[entity]["properties"]
    records = [good_record(entity) for _ in range(data.draw(st.integers(1, 4)))]
    spoiled = data.draw(st.lists(st.tuples(st.integers(0, len(records) - 1), st.sampled_from(sorted(props)),
                                           json_values), max_size=6))
    for index, name, value in spoiled:
        records[index][name] = value
    sent = [dict(r) for r in records]
    drift = SchemaDrift(entity, props, frozenset(props), LOG, mode)
    try:
        drift.check(records, "req_test")
    except SchemaViolationError as exc:
        assert f"{entity}: record " in str(exc) and "request_id=req_test" in str(exc)
        # it stops only for a value that is wrong and not convertible, nullable or not
        assert mode == "fail" or any(
            not rule.nullable and not rule.valid(r.get(rule.name, MISSING))
            for r in sent for rule in filter(None, (rule_for(n, p) for n, p in props.items())))
        return
    check = validator(entity)
    for before, after in zip(sent, records):
        errors = [e.message for e in check.iter_errors(after)]
        assert not errors, (before, after, errors)
        for name, value in after.items():  # kept, converted without loss, or nulled
            old = before[name]
            assert value == old or value is None or lossless(old, value), (name, old, value)


def lossless(old, new) -> bool:
    """`new` says exactly what `old` said, in another JSON type."""
    if isinstance(new, bool) or isinstance(old, (dict, list)):
        return isinstance(new, dict) and all(lossless(o, n) or o == n for o, n in zip(old.values(), new.values()))
    if isinstance(new, str):
        import orjson
        return orjson.dumps(old).decode() == new
    if isinstance(new, int):
        return (isinstance(old, str) and int(old) == new) or (isinstance(old, float) and old == new)
    if isinstance(new, float):
        return isinstance(old, str) and math.isclose(float(old), new, rel_tol=0)
    return False


def test_the_rule_on_examples():
    props = SCHEMAS["order"]["properties"]
    drift = SchemaDrift("order", props, frozenset(props), LOG)
    record = {**good_record("order"), "subtotal_cents": "12", "tax_cents": 3.0, "total_cents": "1234.50",
              "status": 12345, "currency": True, "placed_at": "yesterday",
              "external_ids": {"crm": 42}, "order_number": {"a": 1}}
    drift.check([record])
    assert record["subtotal_cents"] == 12 and record["tax_cents"] == 3
    assert record["total_cents"] is None  # 1234.50 is no integer: nulled, not rounded
    assert record["status"] == "12345" and record["currency"] == "true"
    assert record["placed_at"] is None and record["order_number"] is None
    assert record["external_ids"] == {"crm": "42"}
    assert drift.nulled == {"total_cents": 1, "placed_at": 1, "order_number": 1}


def test_a_non_nullable_field_that_cannot_be_converted_stops_with_one_line():
    props = SCHEMAS["order"]["properties"]
    drift = SchemaDrift("order", props, frozenset(props), LOG)
    record = {**good_record("order"), "canonical_id": "not-a-uuid"}
    with pytest.raises(SchemaViolationError) as info:
        drift.check([record], "req_1")
    assert "order: record not-a-uuid has field 'canonical_id'" in str(info.value)
    assert "request_id=req_1" in str(info.value) and "\n" not in str(info.value)


# -- whole syncs with the emulator's bad-data controls -------------------------------------------

ENTITIES = ["order", "customer", "invoice", "product_variant", "inventory"]


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=120, read_limit=10**6) as server:
        yield server


@pytest.fixture(scope="module", autouse=True)
def fast_backoff():
    before = CanonicalStream.backoff_base_seconds
    CanonicalStream.backoff_base_seconds = 0.01
    yield
    CanonicalStream.backoff_base_seconds = before


plans = st.lists(st.fixed_dictionaries({
    "kind": st.sampled_from(["wrong_type", "wrong_type", "repeat_cursor", "no_data", "non_json"]),
    "skip": st.integers(0, 5), "count": st.integers(1, 3),
}), min_size=1, max_size=3)


@settings(max_examples=int(__import__("os").environ.get("APIXX_SCHEMA_EXAMPLES", "8")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(entity=st.sampled_from(ENTITIES), page_size=st.sampled_from([7, 20, 50]), spoil=plans)
def test_every_record_emitted_under_bad_data_validates_against_its_schema(emu, entity, page_size, spoil):
    emu.control("DELETE", "/_emulator/bad-data")
    for plan in spoil:
        count = 1 if plan["kind"] in ("no_data", "non_json") else plan["count"]  # once: retried
        emu.control("POST", "/_emulator/bad-data", json={**plan, "entity": entity, "count": count})
    try:
        result = run_tap(config_for(emu, page_size=page_size, semantics_probe=False), streams=[entity])
    finally:
        emu.control("DELETE", "/_emulator/bad-data")
    schemas = {m["stream"]: m["schema"] for m in result.messages if m["type"] == "SCHEMA"}
    check = jsonschema.Draft7Validator(schemas[entity], format_checker=FORMATS)
    records = result.records(entity)
    for record in records:
        errors = [e.message for e in check.iter_errors(record)]
        assert not errors, (record, errors)
    assert latest(records) == truth(emu, entity)  # and nothing was lost on the way


formatted = st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123+05:30", "2026-02-30T00:00:00Z",
                             "2026-01-02", "2026-1-02", "0b9e6f3c-1d2a-4e5f-8a9b-0c1d2e3f4a5b",
                             "0b9e6f3c-1d2a-4e5f-8a9b-0c1d2e3f4a5", "", "\n", "2023-02-29", "2024-02-29T00:00:00Z"])


@settings(max_examples=300, deadline=None)
@given(fmt=st.sampled_from(["date-time", "date", "uuid"]),
       strings=st.lists(formatted | st.text(max_size=30) | st.builds("\n".join, st.lists(formatted, max_size=3)),
                        max_size=20))
def test_a_page_of_strings_is_checked_at_once_exactly_as_one_by_one(fmt, strings):
    """all_match (one regular expression over the page's values joined) agrees with the
    per-value check, including values that hold the newline it joins them with."""
    pattern = PATTERNS[fmt]
    expected = all(pattern.match(s) is not None and (pattern not in DATED or calendar_ok(s)) for s in strings)
    assert all_match(pattern, strings) == expected


# -- the ops streams: the same guarantee, whatever their server sends ----------------------------

OPS_PREFIX = {"flows": "flw", "runs": "run", "connectors": "con"}
OPS_SCHEMAS = {stream: load_schema(stream) for stream in OPS_PREFIX}


def ops_sync(items: list[dict], stream: str, tmp_path, **settings):
    """A sync of one ops stream from a server holding `items` (list and detail alike)."""
    def route(request):
        parts = request.path.split("/")  # ['', 'v1', stream, id?]
        if len(parts) == 3:
            return ops_page(items, request)
        return json_reply(ops_detail(next(i for i in items if i["id"] == parts[3])))

    with HostileServer(route) as server:
        config = {"api_key": "apx_live_acme_schema_ops_5e1d", "api_url": f"{server.url}/v1",
                  "data_url": f"{server.url}/api/public/data", "semantics_probe": False,
                  "max_parallel_streams": 1, "page_size": 4, **settings}
        argv = write_inputs(tmp_path, config=config, catalog=catalog_for([stream]))
        return run_cli(argv).check()


def messages_of(stdout: str, stream: str, kind: str) -> list[dict]:
    return [m for m in map(json.loads, stdout.splitlines()) if m["type"] == kind and m["stream"] == stream]


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), stream=st.sampled_from(sorted(OPS_PREFIX)), mode=st.sampled_from(["coerce", "fail"]))
def test_every_ops_record_validates_against_its_schema_whatever_the_server_sends(data, stream, mode, tmp_path):
    items = ops_items(6, OPS_PREFIX[stream])
    if stream == "runs":  # failed runs: their detail (errors) is fetched too
        items = [{**item, "status": "failed"} for item in items]
    props = OPS_SCHEMAS[stream]["properties"]
    spoilable = sorted(set(props) - {"id"})  # an unusable id stops the list earlier (its own test)
    spoiled = data.draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(spoilable), json_values),
                                 min_size=1, max_size=5))
    missing = data.draw(st.sets(st.sampled_from(spoilable), max_size=2))  # absent from item 0
    for index, name, value in spoiled:
        items[index][name] = value
    for name in missing:
        items[0].pop(name, None)
    required = set(OPS_SCHEMAS[stream].get("required", ()))
    outcome = ops_sync(items, stream, tmp_path, type_errors=mode)
    if outcome.code == 1:  # only for a value that is wrong and can be neither converted nor nulled
        assert f"{stream}: record " in outcome.errors[0]
        assert mode == "fail" or any(not rule_for(n, props[n]).nullable for _, n, _ in spoiled) or any(
            not rule_for(n, props[n]).nullable for n in missing & required)
        return
    schema = messages_of(outcome.stdout, stream, "SCHEMA")[-1]["schema"]
    check = jsonschema.Draft7Validator(schema, format_checker=FORMATS)
    records = [m["record"] for m in messages_of(outcome.stdout, stream, "RECORD")]
    assert [r["id"] for r in records] == [i["id"] for i in items]
    for record in records:
        errors = [e.message for e in check.iter_errors(record)]
        assert not errors, (record, errors)


def test_an_ops_value_of_the_wrong_type_is_nulled_with_the_id_or_converted(tmp_path):
    items = ops_items(3, "run")
    items[1].update({"duration_ms": "12.5", "records_processed": "40", "finished_at": "soon"})
    outcome = ops_sync(items, "runs", tmp_path)
    assert outcome.code == 0
    record = messages_of(outcome.stdout, "runs", "RECORD")[1]["record"]
    assert record["duration_ms"] is None and record["finished_at"] is None  # not integers / instants
    assert record["records_processed"] == 40  # converted without loss
    assert any("run_0001" in w and "duration_ms" in w for w in outcome.warnings)


def test_a_missing_required_ops_field_stops_the_sync_or_loads_null(tmp_path):
    items = ops_items(3, "run")
    del items[1]["finished_at"]  # required? no: absent is valid
    del items[2]["started_at"]  # required and not nullable: neither loaded nor nulled
    outcome = ops_sync(items, "runs", tmp_path)
    assert outcome.code == 1
    assert "runs: record run_0002 has field 'started_at' = nothing (the field was missing)" in outcome.errors[0]
    assert [m["record"]["id"] for m in messages_of(outcome.stdout, "runs", "RECORD")] == ["run_0000", "run_0001"]


# -- date-times and dates: what the loaders' parsers accept -------------------------------------

def parses(text: str) -> bool:
    """RFC 3339 (jsonschema's shape) and a real instant for Python's datetime (and PostgreSQL)."""
    shape = r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)\Z"
    if not re.match(shape, text, re.ASCII):
        return False
    try:
        datetime.fromisoformat(text[:10] + "T" + text[11:].upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def test_the_date_time_check_accepts_exactly_what_datetime_parses():
    rule = rule_for("at", {"type": "string", "format": "date-time"})

    @settings(max_examples=3000, deadline=None)
    @given(st.lists(texts, min_size=1, max_size=4))
    def check(values):
        expected = [parses(v) for v in values]
        assert [rule.valid(v) for v in values] == expected, values
        assert all_match(PATTERNS["date-time"], values) == all(expected), values

    check()
    for text, ok in [("2024-02-29T00:00:00Z", True), ("2023-02-29T00:00:00Z", False),
                     ("1900-02-29T00:00:00Z", False), ("2000-02-29T00:00:00Z", True),
                     ("2026-04-31T00:00:00Z", False), ("2026-12-31T23:59:60Z", False),
                     ("0000-01-01T00:00:00Z", False)]:
        assert rule.valid(text) is ok and all_match(PATTERNS["date-time"], [text, "2026-01-01T00:00:00Z"]) is ok


def test_a_runs_started_at_that_no_state_could_hold_never_becomes_the_bookmark(tmp_path):
    items = ops_items(3, "run")
    items[2]["started_at"] = "2999-01-01T00:00:00.000Z"  # valid RFC 3339, but in the future
    outcome = ops_sync(items, "runs", tmp_path, start_date="2025-01-01T00:00:00Z")
    assert outcome.code == 0
    states = [json.loads(line)["value"] for line in outcome.stdout.splitlines() if '"STATE"' in line]
    bookmark = states[-1]["bookmarks"]["runs"].get("replication_key_value")
    assert bookmark == items[1]["started_at"]  # held before the run the next start would refuse
    assert any("run_0002" in w and "in the future" in w for w in outcome.warnings)


def test_a_value_nested_too_deep_to_show_is_named_without_a_recursion_error():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert _show(deep) == "a JSON list nested too deep to show"
    assert _show("x" * 100).endswith("...") and len(_show("x" * 100)) == 60


def test_an_object_with_typed_values_and_nested_fields_is_held_to_both():
    rule = rule_for("x", {"type": "object", "additionalProperties": {"type": "string"},
                          "properties": {"a": {"type": "string"}}, "required": ["a"]})
    assert rule.valid({"a": "1", "b": "2"})
    assert not rule.valid({"b": "2"})  # the nested `required`
    assert not rule.valid({"a": "1", "b": 2})  # the typed values
