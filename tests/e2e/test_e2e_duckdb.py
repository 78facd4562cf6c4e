"""End to end: `meltano run tap-apixx target-duckdb` against the emulator, checked against ground truth."""

from __future__ import annotations

from collections import defaultdict

import pytest

from apixx_emulator.testing import EmulatorProcess
from tests.helpers.e2e import (
    MeltanoProject,
    assert_random_records_match,
    assert_second_run_merges_churn,
    assert_tables_equal_ground_truth,
    by_key,
    duckdb_rows,
    meltano_available,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]
SCHEMA = "apixx"


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=250, read_limit=100000) as server:
        yield server


@pytest.fixture(scope="module")
def project(emu, tmp_path_factory):
    project = MeltanoProject(tmp_path_factory.mktemp("duckdb"), emu)
    project.run("run", "tap-apixx", "target-duckdb")
    return project


def rows(project: MeltanoProject, sql: str) -> list[dict]:
    return duckdb_rows(project.workdir / "warehouse.duckdb", sql)


@pytest.fixture()
def table(project):
    return lambda entity: by_key(rows(project, f'SELECT * FROM {SCHEMA}."{entity}"'))


def test_every_table_equals_the_ground_truth(emu, table):
    assert_tables_equal_ground_truth(emu, table)


def test_random_records_match_the_api_field_by_field(emu, table):
    assert_random_records_match(emu, table, seed=5)


def test_order_table_answers_an_analyst_query(project, emu):
    result = rows(project, f"""
        SELECT CAST(placed_at AS DATE) AS day, sum(total_cents) AS cents, count(*) AS orders
        FROM {SCHEMA}."order" WHERE status = 'paid' GROUP BY 1""")
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in emu.ground_truth("order"):
        if record["status"] == "paid":
            expected[record["placed_at"][:10]][0] += record["total_cents"]
            expected[record["placed_at"][:10]][1] += 1
    assert {str(r["day"]): [int(r["cents"]), r["orders"]] for r in result} == dict(expected)


def test_second_run_after_churn_updates_adds_and_advances_state(project, emu, table):
    assert_second_run_merges_churn(project, emu, table, "target-duckdb", "order")


def test_a_wrong_key_fails_the_run_with_the_taps_message(emu, tmp_path):
    bad_key = "apx_live_acme_wrongwrongwrong"
    project = MeltanoProject(tmp_path, emu, api_key=bad_key)
    proc = project.run("run", "tap-apixx", "target-duckdb", check=False)
    assert proc.returncode != 0
    assert "401" in proc.stdout and "api_key" in proc.stdout
    assert bad_key not in proc.stdout
