"""End to end: `meltano run tap-apixx target-postgres` into a throwaway PostgreSQL cluster."""

from __future__ import annotations

import os
import random

import pytest
from e2e_helpers import (CANONICAL, MeltanoProject, PostgresCluster, compare_record, latest_by_id,
                         meltano_available, normalise, postgres_binaries)

from apixx_emulator.testing import EmulatorProcess, free_port

BINARIES = postgres_binaries()
REQUIRED = os.environ.get("APIXX_REQUIRE_POSTGRES") == "1"
WHY_SKIP = meltano_available() or (None if BINARIES else
                                   "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(WHY_SKIP is not None and not REQUIRED, reason=str(WHY_SKIP))]
STATE_ID = "emulator:tap-apixx-to-target-postgres"
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
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(postgres.dsn, row_factory=dict_row) as con:
        return con.execute(sql).fetchall()


def table(postgres: PostgresCluster, entity: str) -> dict[str, dict]:
    return {str(r["canonical_id"]): r for r in query(postgres, f'SELECT * FROM {SCHEMA}."{entity}"')}


def test_every_table_equals_the_ground_truth(project, emu, postgres):
    for entity in CANONICAL:
        truth = latest_by_id(emu.ground_truth(entity))
        loaded = table(postgres, entity)
        assert set(loaded) == set(truth), f"{entity}: {len(loaded)} rows loaded, {len(truth)} in the API"
        assert all(normalise(loaded[c]["updated_at"]) == normalise(r["updated_at"]) for c, r in truth.items())


def test_random_records_match_the_api_field_by_field(project, emu, postgres):
    rng = random.Random(9)
    loaded = {entity: table(postgres, entity) for entity in CANONICAL}
    picks = [(entity, cid) for entity in CANONICAL for cid in loaded[entity]]
    problems = []
    for entity, cid in rng.sample(picks, 100):
        api = emu.get(f"/api/public/data/{entity}/{cid}").json()
        problems += [f"{entity} {cid} {p}" for p in compare_record(api, loaded[entity][cid])]
    assert not problems, "\n".join(problems[:20])


def test_order_table_answers_an_analyst_query(project, emu, postgres):
    result = query(postgres, f"""SELECT placed_at::date AS day, sum(total_cents) AS cents
                                 FROM {SCHEMA}."order" WHERE status = 'paid' GROUP BY 1""")
    expected: dict[str, int] = {}
    for record in emu.ground_truth("order"):
        if record["status"] == "paid":
            expected[record["placed_at"][:10]] = expected.get(record["placed_at"][:10], 0) + record["total_cents"]
    assert {str(r["day"]): int(r["cents"]) for r in result} == expected


def test_second_run_after_churn_updates_adds_and_advances_state(project, emu, postgres):
    before = project.state(STATE_ID)["singer_state"]["bookmarks"]["invoice"]["replication_key_value"]
    churn = emu.churn("invoice", updates=9, inserts=4)
    project.run("run", "tap-apixx", "target-postgres")
    truth = latest_by_id(emu.ground_truth("invoice"))
    loaded = table(postgres, "invoice")
    assert set(loaded) == set(truth)
    for cid in churn["updated"] + churn["inserted"]:
        assert normalise(loaded[cid]["updated_at"]) == normalise(truth[cid]["updated_at"])
    after = project.state(STATE_ID)["singer_state"]["bookmarks"]["invoice"]["replication_key_value"]
    assert normalise(after) == normalise(churn["updated_at"][-1]) and after > before
