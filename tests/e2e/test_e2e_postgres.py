"""End to end: `meltano run tap-apixx target-postgres` into a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os

import pytest

from apixx_emulator.testing import EmulatorProcess, free_port
from tests.helpers.e2e import (
    MeltanoProject,
    PostgresCluster,
    assert_random_records_match,
    assert_second_run_merges_churn,
    assert_tables_equal_ground_truth,
    by_key,
    meltano_available,
    postgres_binaries,
    postgres_rows,
)

BINARIES = postgres_binaries()
REQUIRED = os.environ.get("APIXX_REQUIRE_POSTGRES") == "1"
WHY_SKIP = meltano_available() or (None if BINARIES else
                                   "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(WHY_SKIP is not None and not REQUIRED, reason=str(WHY_SKIP))]
SCHEMA = "apixx"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    assert BINARIES, WHY_SKIP  # only reached when CI requires these tests
    cluster = PostgresCluster(BINARIES, tmp_path_factory.mktemp("pg"), free_port()).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=250, read_limit=100000) as server:
        yield server


@pytest.fixture(scope="module")
def project(emu, postgres, tmp_path_factory):
    project = MeltanoProject(tmp_path_factory.mktemp("pgproject"), emu)
    project.env.update({"TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(postgres.port),
                        "TARGET_POSTGRES_USER": "postgres", "TARGET_POSTGRES_PASSWORD": "unused-with-trust-auth",
                        "TARGET_POSTGRES_DATABASE": "postgres"})
    project.run("run", "tap-apixx", "target-postgres")
    return project


def query(postgres: PostgresCluster, sql: str) -> list[dict]:
    return postgres_rows(postgres.dsn, sql)


@pytest.fixture()
def table(postgres):
    return lambda entity: by_key(query(postgres, f'SELECT * FROM {SCHEMA}."{entity}"'))


def test_every_table_equals_the_ground_truth(project, emu, table):
    assert_tables_equal_ground_truth(emu, table)


def test_random_records_match_the_api_field_by_field(project, emu, table):
    assert_random_records_match(emu, table, seed=9)


def test_order_table_answers_an_analyst_query(project, emu, postgres):
    result = query(postgres, f"""SELECT placed_at::date AS day, sum(total_cents) AS cents
                                 FROM {SCHEMA}."order" WHERE status = 'paid' GROUP BY 1""")
    expected: dict[str, int] = {}
    for record in emu.ground_truth("order"):
        if record["status"] == "paid":
            expected[record["placed_at"][:10]] = expected.get(record["placed_at"][:10], 0) + record["total_cents"]
    assert {str(r["day"]): int(r["cents"]) for r in result} == expected


def test_second_run_after_churn_updates_adds_and_advances_state(project, emu, table):
    assert_second_run_merges_churn(project, emu, table, "target-postgres", "invoice")
