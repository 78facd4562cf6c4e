"""Contract tests for the emulator's data API, auth, rate limits, errors, faults and control plane."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import requests

from apixx_emulator.entities import ENTITIES, ENTITY_NAMES, field_names
from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, assert_error_envelope

GLOBEX = "apx_live_globex_3a7e9c1d5b2f"
ACME_TEST = "apx_test_acme_8d2b6f0c4e1a"
NO_DATA_SCOPE = "apx_live_acme_opsonly_2e8d5c"
DATA = "/api/public/data"


def page(emu: EmulatorProcess, entity: str, key: str = DEFAULT_KEY, **params) -> dict:
    response = emu.get(f"{DATA}/{entity}", key=key, params=params)
    assert response.status_code == 200, response.text
    return response.json()




# -- the data API ---------------------------------------------------------------------------

def test_every_entity_lists_with_the_documented_envelope(emulator):
    for entity in ENTITY_NAMES:
        body = page(emulator, entity)
        assert body["entity"] == entity
        assert body["count"] == len(body["data"]) == 100  # default limit
        assert body["next_cursor"] == body["data"][-1]["updated_at"]
        assert set(body["data"][0]) == set(field_names(entity))


def test_pages_are_ascending_and_the_last_cursor_is_null(emulator):
    truth = emulator.ground_truth("invoice")
    body = page(emulator, "invoice", limit=1000)
    stamps = [r["updated_at"] for r in body["data"]]
    assert stamps == sorted(stamps)
    assert body["count"] == len(truth) and body["next_cursor"] is None
    assert [r["canonical_id"] for r in body["data"]] == [r["canonical_id"] for r in truth]


def test_updated_since_is_inclusive(emulator):
    truth = emulator.ground_truth("order")
    pivot = truth[len(truth) // 2]["updated_at"]
    body = page(emulator, "order", limit=1000, updated_since=pivot)
    expected = [r["canonical_id"] for r in truth if r["updated_at"] >= pivot]
    assert [r["canonical_id"] for r in body["data"]] == expected
    assert body["data"][0]["updated_at"] == pivot


@pytest.mark.parametrize("params, named", [
    ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"limit": "ten"}, "limit"),
    ({"updated_since": "yesterday"}, "updated_since"), ({"cursor": "not-a-time"}, "cursor"),
    ({"fields": "status,colour"}, "colour"),
])
def test_malformed_parameters_are_422_naming_the_parameter(emulator, params, named):
    error = assert_error_envelope(emulator.get(f"{DATA}/order", params=params), 422, "validation_error")
    assert named in error["message"]


def test_fields_returns_only_the_named_fields_plus_id_and_updated_at(emulator):
    body = page(emulator, "order", fields="status,total_cents", limit=5)
    assert all(set(r) == {"canonical_id", "updated_at", "status", "total_cents"} for r in body["data"])


def test_get_one_record_and_unknown_ids(emulator):
    record = emulator.ground_truth("payment")[7]
    response = emulator.get(f"{DATA}/payment/{record['canonical_id']}")
    assert response.status_code == 200 and response.json() == record
    assert_error_envelope(emulator.get(f"{DATA}/payment/00000000-0000-4000-8000-000000000000"), 404, "not_found")
    assert_error_envelope(emulator.get(f"{DATA}/widget"), 404, "not_found")


def test_other_tenants_and_environments_see_404_not_403(emulator):
    record_id = emulator.ground_truth("customer")[0]["canonical_id"]
    for key in (GLOBEX, ACME_TEST):
        assert_error_envelope(emulator.get(f"{DATA}/customer/{record_id}", key=key), 404, "not_found")
    acme = {r["canonical_id"] for r in emulator.ground_truth("customer")}
    globex = {r["canonical_id"] for r in emulator.ground_truth("customer", tenant="globex")}
    assert acme and globex and not acme & globex


def test_referential_integrity_within_a_tenant(emulator):
    ids = {entity: {r["canonical_id"] for r in emulator.ground_truth(entity)} for entity in ENTITY_NAMES}
    checked = 0
    for entity, spec in ENTITIES.items():
        for fk, target in spec.foreign_keys.items():
            values = {r[fk] for r in emulator.ground_truth(entity)}
            assert values <= ids[target], f"{entity}.{fk} points outside {target}"
            checked += 1
    assert checked >= 10  # every foreign key of the contract


def test_generated_data_has_tie_groups_beyond_a_default_page(emulator):
    for entity in ("order", "customer"):
        sizes = Counter(r["updated_at"] for r in emulator.ground_truth(entity)).values()
        assert max(sizes) > 100  # a page boundary of the default limit falls inside it
        assert max(sizes) <= 1000
        assert sum(s for s in sizes if s > 1) >= 0.05 * sum(sizes)


def test_same_seed_same_data_other_seed_other_data(emulator, emulator_factory):
    other = emulator_factory(seed=7)
    assert emulator.ground_truth("lead") != other.ground_truth("lead")
    other.control("POST", "/_emulator/reset", json={"seed": 42})
    assert emulator.ground_truth("lead") == other.ground_truth("lead")


# -- cursor semantics ---------------------------------------------------------------------------

def naive_sync(emu: EmulatorProcess, entity: str, limit: int, max_pages: int = 200) -> list[str]:
    """What a client that trusts next_cursor blindly collects."""
    ids, cursor = [], None
    for _ in range(max_pages):
        body = page(emu, entity, limit=limit, **({"cursor": cursor} if cursor else {}))
        ids += [r["canonical_id"] for r in body["data"]]
        if body["next_cursor"] is None or body["next_cursor"] == cursor:
            break
        cursor = body["next_cursor"]
    return ids


def test_exclusive_cursor_skips_the_rest_of_a_tie_group(emulator_factory):
    emu = emulator_factory(cursor_mode="exclusive", records_per_entity=120, max_tie_size=1)
    emu.churn("refund", updates=0, inserts=150, tie=True)  # 150 records share one millisecond
    truth = {r["canonical_id"] for r in emu.ground_truth("refund")}
    seen = naive_sync(emu, "refund", limit=100)
    assert len(seen) == len(set(seen))
    assert 0 < len(truth - set(seen)) < 150  # the tied records that did not fit are lost


def test_inclusive_cursor_repeats_the_boundary_records(emulator_factory):
    emu = emulator_factory(cursor_mode="inclusive", records_per_entity=120, max_tie_size=1)
    truth = emu.ground_truth("refund")
    body = page(emu, "refund", limit=50)
    again = page(emu, "refund", limit=50, cursor=body["next_cursor"])
    assert again["data"][0] == body["data"][-1]  # >= repeats the last record
    assert len(truth) == 120


# -- auth ------------------------------------------------------------------------------------

def test_missing_and_unknown_keys_are_401_without_echoing_the_key(emulator):
    assert_error_envelope(emulator.get(f"{DATA}/order", key=""), 401, "unauthorized")
    bogus = "apx_live_not_a_real_key_123"
    response = emulator.get(f"{DATA}/order", key=bogus)
    assert_error_envelope(response, 401, "unauthorized")
    assert bogus not in response.text and "X-RateLimit-Limit" in response.headers


def test_missing_scope_is_403_naming_it(emulator):
    error = assert_error_envelope(emulator.get(f"{DATA}/order", key=NO_DATA_SCOPE), 403, "forbidden")
    assert "data:read" in error["message"]


def test_keys_file_replaces_the_built_in_keys(emulator_factory, tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text('[{"key": "apx_test_custom_1", "tenant": "initech", "scopes": ["data:read"]}]')
    emu = emulator_factory(keys_file=str(keys))
    assert emu.get(f"{DATA}/order", key="apx_test_custom_1").status_code == 200
    assert emu.get(f"{DATA}/order", key=DEFAULT_KEY).status_code == 401
    assert emu.ground_truth("order", tenant="initech", env="test")


# -- rate limits --------------------------------------------------------------------------------

def test_rate_limit_headers_and_429_with_retry_after(emulator_factory):
    emu = emulator_factory(read_limit=5)
    remaining = []
    for _ in range(5):
        response = emu.get(f"{DATA}/order", params={"limit": 1})
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
    assert remaining == [4, 3, 2, 1, 0]
    over = emu.get(f"{DATA}/order")
    assert_error_envelope(over, 429, "rate_limited")
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert emu.get(f"{DATA}/order", key=GLOBEX).status_code == 200  # per key


# -- errors -------------------------------------------------------------------------------------

def test_every_response_has_a_fresh_request_id(emulator):
    ids = {emulator.get(f"{DATA}/order", params={"limit": 1}).headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5 and all(i.startswith("req_") for i in ids)


def test_unknown_path_and_wrong_method_use_the_envelope(emulator):
    assert_error_envelope(emulator.get("/api/public/nothing/here"), 404, "not_found")
    response = emulator.http.delete(emulator.base_url + f"{DATA}/order",
                                    headers={"Authorization": f"Bearer {DEFAULT_KEY}"})
    assert_error_envelope(response, 405, "method_not_allowed")


def test_openapi_document_lists_the_data_routes(emulator):
    spec = emulator.http.get(emulator.base_url + "/openapi.json").json()
    assert f"{DATA}/{{entity}}" in spec["paths"]
    params = {p["name"] for p in spec["paths"][f"{DATA}/{{entity}}"]["get"]["parameters"]}
    assert {"limit", "cursor", "updated_since", "fields"} <= params


# -- control plane ------------------------------------------------------------------------------

def test_churn_touches_and_inserts_records_with_fresh_timestamps(emulator_factory):
    emu = emulator_factory()
    before = {r["canonical_id"]: r for r in emu.ground_truth("order")}
    result = emu.churn("order", updates=5, inserts=3, tie=True)
    after = {r["canonical_id"]: r for r in emu.ground_truth("order")}
    assert len(result["updated"]) == 5 and len(result["inserted"]) == 3
    assert set(after) - set(before) == set(result["inserted"])
    stamps = {after[i]["updated_at"] for i in result["updated"] + result["inserted"]}
    assert len(stamps) == 1 and stamps.pop() > max(r["updated_at"] for r in before.values())
    newest = page(emu, "order", limit=10, updated_since=result["updated_at"][0])
    assert {r["canonical_id"] for r in newest["data"]} == set(result["updated"] + result["inserted"])


def test_churn_can_add_a_field_the_schema_does_not_know(emulator_factory):
    emu = emulator_factory()
    result = emu.churn("customer", updates=2, set={"loyalty_tier": "gold"})
    record = emu.get(f"{DATA}/customer/{result['updated'][0]}").json()
    assert record["loyalty_tier"] == "gold"


def test_stats_count_requests_by_route_and_key_id_never_the_key(emulator_factory):
    emu = emulator_factory()
    emu.clear_stats()
    page(emu, "order", fields="status")
    emu.get(f"{DATA}/order", key="")
    stats = emu.stats()
    assert stats["by_route"]["data:order:list"] == 2
    assert {r["status"] for r in stats["requests"]} == {200, 401}
    assert stats["requests"][0]["params"]["fields"] == "status"
    assert DEFAULT_KEY not in str(stats)


def test_control_plane_validates_its_input(emulator):
    response = emulator.http.post(emulator.base_url + "/_emulator/faults", json={"error_500_rate": 2})
    assert response.status_code == 422
    response = emulator.http.post(emulator.base_url + "/_emulator/churn", json={"entity": "order", "updates": -1})
    assert response.status_code == 422


# -- faults -------------------------------------------------------------------------------------

@pytest.fixture()
def faulty(emulator_factory):
    return emulator_factory()


def only(emu: EmulatorProcess, kind: str, **extra) -> None:
    emu.faults(**{f"{kind}_rate": 1.0, "seed": 1, **extra})


def test_injected_500(faulty):
    only(faulty, "error_500")
    assert_error_envelope(faulty.get(f"{DATA}/order"), 500, "internal_error")


def test_injected_html_502(faulty):
    only(faulty, "html_502")
    response = faulty.get(f"{DATA}/order")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_injected_429_carries_retry_after(faulty):
    only(faulty, "rate_429", retry_after=7)
    response = faulty.get(f"{DATA}/order")
    assert_error_envelope(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "7"


def test_injected_reset_drops_the_connection(faulty):
    only(faulty, "reset")
    with pytest.raises(requests.ConnectionError):
        faulty.get(f"{DATA}/order")


def test_injected_truncation_cuts_the_body_short(faulty):
    only(faulty, "truncated")
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        faulty.get(f"{DATA}/order", params={"limit": 500}).json()


def test_injected_latency_and_clearing_faults(faulty):
    faulty.faults(latency_ms=300, jitter_ms=0)
    started = time.perf_counter()
    assert faulty.get(f"{DATA}/order", params={"limit": 1}).status_code == 200
    assert time.perf_counter() - started >= 0.3
    faulty.faults()
    only(faulty, "error_500")
    faulty.faults()
    assert faulty.get(f"{DATA}/order").status_code == 200


def test_fault_rates_mix_and_are_counted(faulty):
    faulty.faults(error_500_rate=0.5, seed=3)
    statuses = Counter(faulty.get(f"{DATA}/order", params={"limit": 1}).status_code for _ in range(60))
    assert statuses[500] > 10 and statuses[200] > 10
    assert faulty.control("GET", "/_emulator/faults")["injected"]["error_500"] == statuses[500]


def test_a_short_rate_window_for_quick_tests(emulator_factory):
    emu = emulator_factory(read_limit=2, rate_window_seconds=1)
    assert [emu.get(f"{DATA}/order", params={"limit": 1}).status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.1)
    assert emu.get(f"{DATA}/order", params={"limit": 1}).status_code == 200


def test_churn_at_a_past_instant_models_a_late_arriving_change(emulator_factory):
    emu = emulator_factory()
    truth = emu.ground_truth("order")
    past = truth[10]["updated_at"]
    result = emu.churn("order", inserts=1, at=past)
    record = emu.get(f"{DATA}/order/{result['inserted'][0]}").json()
    assert record["updated_at"] == past < truth[-1]["updated_at"]


# -- deletes and merges -------------------------------------------------------------------------

def listed_ids(emu: EmulatorProcess, entity: str) -> list[str]:
    """Every id the list route serves, paging on updated_since with ids already seen skipped."""
    ids: list[str] = []
    seen: set[str] = set()
    since = None
    while True:
        body = page(emu, entity, limit=1000, **({"updated_since": since} if since else {}))
        fresh = [r for r in body["data"] if r["canonical_id"] not in seen]
        ids += [r["canonical_id"] for r in fresh]
        seen.update(r["canonical_id"] for r in fresh)
        if body["next_cursor"] is None or not fresh:
            return ids
        since = body["data"][-1]["updated_at"]


def test_deleted_records_leave_the_list_and_answer_404(emulator_factory):
    emu = emulator_factory()
    before = {r["canonical_id"] for r in emu.ground_truth("customer")}
    result = emu.churn("customer", deletes=7)
    deleted = result["deleted"]
    assert len(deleted) == len(set(deleted)) == 7 and set(deleted) <= before
    assert result["updated"] == result["inserted"] == result["merged"] == [] and result["updated_at"] is None
    after = {r["canonical_id"] for r in emu.ground_truth("customer")}
    assert after == before - set(deleted)
    assert set(listed_ids(emu, "customer")) == after
    for cid in deleted:
        assert_error_envelope(emu.get(f"{DATA}/customer/{cid}"), 404, "not_found")
    gone = emu.gone("customer")
    assert {g["canonical_id"] for g in gone} == set(deleted)
    assert all(g["reason"] == "deleted" and g["merged_into"] is None and g["survivor"] is None for g in gone)


def test_a_merge_removes_the_loser_and_touches_the_survivor(emulator_factory):
    emu = emulator_factory()
    before = {r["canonical_id"]: r for r in emu.ground_truth("account")}
    newest = max(r["updated_at"] for r in before.values())
    result = emu.churn("account", merges=12)
    pairs = [(m["canonical_id"], m["merged_into"]) for m in result["merged"]]
    assert len(pairs) == 12 and len({i for pair in pairs for i in pair}) == 24
    after = {r["canonical_id"]: r for r in emu.ground_truth("account")}
    assert set(after) == set(before) - {loser for loser, _ in pairs}
    gained = 0
    for loser, survivor in pairs:
        assert_error_envelope(emu.get(f"{DATA}/account/{loser}"), 404, "not_found")
        record = emu.get(f"{DATA}/account/{survivor}").json()
        assert record == after[survivor] and record["updated_at"] > newest
        expected = {**before[loser]["external_ids"], **before[survivor]["external_ids"]}  # the survivor's own ids win
        assert record["external_ids"] == expected
        gained += len(expected) > len(before[survivor]["external_ids"])
        assert {k: v for k, v in record.items() if k not in ("updated_at", "last_source_update_at", "external_ids")} \
            == {k: v for k, v in before[survivor].items() if k not in ("updated_at", "last_source_update_at", "external_ids")}
    assert gained > 0  # some survivor took ids from a system it did not know
    changed = {r["canonical_id"] for r in page(emu, "account", limit=1000, updated_since=result["updated_at"][0])["data"]}
    assert changed == {survivor for _, survivor in pairs}
    gone = {g["canonical_id"]: g for g in emu.gone("account")}
    assert {(cid, g["reason"], g["merged_into"], g["survivor"]) for cid, g in gone.items()} == \
        {(loser, "merged", survivor, survivor) for loser, survivor in pairs}


def test_mixed_churn_changes_disjoint_records_and_counts_add_up(emulator_factory):
    emu = emulator_factory(timestamp_precision="us")
    before = {r["canonical_id"] for r in emu.ground_truth("order")}
    result = emu.churn("order", updates=5, inserts=4, deletes=3, merges=2, tie=True)
    survivors = [m["merged_into"] for m in result["merged"]]
    losers = [m["canonical_id"] for m in result["merged"]]
    touched = result["updated"] + survivors
    assert len(set(touched + result["deleted"] + losers)) == 5 + 2 + 3 + 2
    truth = emu.ground_truth("order")
    assert len(truth) == len(before) + 4 - 3 - 2
    assert {r["canonical_id"] for r in truth} == (before | set(result["inserted"])) - set(result["deleted"]) - set(losers)
    stamp = result["updated_at"][0]
    assert result["updated_at"] == [stamp, stamp] and stamp.endswith("+00:00")
    at_stamp = {r["canonical_id"] for r in truth if r["updated_at"] == stamp}
    assert at_stamp == set(touched + result["inserted"])
    assert {g["at"] for g in emu.gone("order")} == {stamp}


def test_deletes_and_merges_are_capped_by_what_exists(emulator_factory):
    emu = emulator_factory(records_for=["refund=40"])
    result = emu.churn("refund", deletes=30, merges=30)
    assert len(result["deleted"]) == 30 and len(result["merged"]) == 5
    assert len(emu.ground_truth("refund")) == 40 - 30 - 5
    result = emu.churn("refund", deletes=100)
    assert len(result["deleted"]) == 5 and emu.ground_truth("refund") == []
    assert page(emu, "refund")["data"] == [] and len(emu.gone("refund")) == 40
    assert emu.churn("order", inserts=3)["inserted"]  # new records still generate (their refs are live ids)


@pytest.mark.parametrize("body", [{"deletes": -1}, {"merges": "3"}, {"deletes": True}, {"merges": 2.5}])
def test_churn_refuses_bad_delete_and_merge_counts(emulator, body):
    response = emulator.http.post(emulator.base_url + "/_emulator/churn", json={"entity": "order", **body}, timeout=10)
    error = assert_error_envelope(response, 422, "validation_error")
    assert next(iter(body)) in error["message"]


def test_a_chain_of_merges_resolves_to_the_live_survivor():
    from apixx_emulator.models.datasets import Table

    table = Table("customer")
    table.gone = {"a": {"canonical_id": "a", "reason": "merged", "merged_into": "b", "at": "1"},
                  "b": {"canonical_id": "b", "reason": "merged", "merged_into": "c", "at": "2"},
                  "d": {"canonical_id": "d", "reason": "merged", "merged_into": "e", "at": "3"},
                  "e": {"canonical_id": "e", "reason": "deleted", "merged_into": None, "at": "4"}}
    view = {g["canonical_id"]: g["survivor"] for g in table.gone_view()}
    assert view == {"a": "c", "b": "c", "d": None, "e": None}


# -- dates: the recent months, then churn -------------------------------------------------------

def test_history_is_the_recent_months_and_churn_comes_after_it(emulator_factory):
    from datetime import datetime, timedelta, timezone

    from apixx_emulator.models.datasets import DAY_MS, HISTORY_DAYS
    from apixx_emulator.timestamps import parse_us

    emu = emulator_factory(records_per_entity=200)
    end_ms = emu.control("GET", "/_emulator/health")["settings"]["history_end_ms"]
    assert end_ms % DAY_MS == 0 and end_ms <= time.time() * 1000 < end_ms + 2 * DAY_MS  # today's midnight
    start_us, end_us = (end_ms - HISTORY_DAYS * DAY_MS) * 1000, end_ms * 1000
    newest = 0
    for entity in ENTITY_NAMES:
        stamps = [parse_us(r["updated_at"]) for r in emu.ground_truth(entity)]
        assert start_us <= min(stamps) and max(stamps) < end_us, entity
        assert max(stamps) - min(stamps) > (HISTORY_DAYS - 5) * DAY_MS * 1000, entity  # all of it
        newest = max(newest, *stamps)
    orders = emu.ground_truth("order")
    for order in orders:  # placed the same day or so, not weeks before its last change
        lag = parse_us(order["updated_at"]) - parse_us(order["placed_at"])
        assert 0 <= lag <= 6 * 3600 * 10**6 + 10**6, order
    per_day = Counter(o["placed_at"][:10] for o in orders)
    assert len(per_day) > HISTORY_DAYS * 0.6  # orders on most days, not bunched
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    churn = emu.churn("order", updates=3, inserts=3)
    after = datetime.now(timezone.utc) + timedelta(seconds=1)
    first, last = (parse_us(s) for s in churn["updated_at"])
    assert newest < first <= last  # changed after everything generated, never in between
    assert before.timestamp() * 10**6 <= first and last <= after.timestamp() * 10**6  # dated now
