"""Schemathesis against the emulator's own /openapi.json: no 5xx, and every error in the envelope."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess

EXAMPLES = int(os.environ.get("APIXX_FUZZ_EXAMPLES", "25"))  # `make soak` raises it


@pytest.fixture(scope="module")
def fuzz_server():
    # no injected faults: any 5xx here is a bug
    with EmulatorProcess(records_per_entity=50, read_limit=10**9, write_limit=10**9, trigger_limit=10**9) as emu:
        yield emu


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.base_url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def check_envelope(response) -> None:
    request_id = response.headers.get("x-request-id", [""])
    request_id = request_id[0] if isinstance(request_id, list) else request_id
    assert request_id.startswith("req_"), "every response carries X-Request-Id"
    assert response.status_code < 500, f"server error {response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["request_id"] == request_id and error["code"] and error["message"]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_every_documented_route(case, fuzz_server):
    response = case.call(base_url=fuzz_server.base_url, headers={"Authorization": f"Bearer {DEFAULT_KEY}"}, timeout=30)
    check_envelope(response)


def test_fuzz_covers_the_data_routes(api_schema):
    paths = set(api_schema.raw_schema["paths"])
    assert "/api/public/data/{entity}" in paths and "/api/public/data/{entity}/{canonical_id}" in paths
