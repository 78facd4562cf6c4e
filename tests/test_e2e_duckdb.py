"""End to end: `meltano run tap-apixx target-duckdb` against the emulator, checked against ground truth."""

from __future__ import annotations

import random
from collections import defaultdict

import duckdb
import pytest
from e2e_helpers import CANONICAL, MeltanoProject, compare_record, latest_by_id, meltano_available, normalise

from apixx_emulator.testing import EmulatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]
STATE_ID = "emulator:tap-apixx-to-target-duckdb"
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
    con = duckdb.connect(str(project.workdir / "warehouse.duckdb"), read_only=True)
    try:
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        con.close()


def table(project: MeltanoProject, entity: str) -> dict[str, dict]:
    return {r["canonical_id"]: r for r in rows(project, f'SELECT * FROM {SCHEMA}."{entity}"')}


def test_every_table_equals_the_ground_truth(project, emu):
    for entity in CANONICAL:
        truth = latest_by_id(emu.ground_truth(entity))
        loaded = table(project, entity)
        assert set(loaded) == set(truth), f"{entity}: {len(loaded)} rows loaded, {len(truth)} in the API"
        for cid, record in truth.items():
            assert normalise(loaded[cid]["updated_at"]) == normalise(record["updated_at"]), entity


def test_random_records_match_the_api_field_by_field(project, emu):
    rng = random.Random(5)
    loaded = {entity: table(project, entity) for entity in CANONICAL}
    picks = [(entity, cid) for entity in CANONICAL for cid in loaded[entity]]
    problems = []
    for entity, cid in rng.sample(picks, 100):
        api = emu.get(f"/api/public/data/{entity}/{cid}").json()
        problems += [f"{entity} {cid} {p}" for p in compare_record(api, loaded[entity][cid])]
    assert not problems, "\n".join(problems[:20])


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


def test_second_run_after_churn_updates_adds_and_advances_state(project, emu):
    before = project.state(STATE_ID)["singer_state"]["bookmarks"]["order"]["replication_key_value"]
    churn = emu.churn("order", updates=12, inserts=7)
    project.run("run", "tap-apixx", "target-duckdb")
    truth = latest_by_id(emu.ground_truth("order"))
    loaded = table(project, "order")
    assert set(loaded) == set(truth)
    for cid in churn["updated"] + churn["inserted"]:
        assert normalise(loaded[cid]["updated_at"]) == normalise(truth[cid]["updated_at"])
    after = project.state(STATE_ID)["singer_state"]["bookmarks"]["order"]["replication_key_value"]
    assert normalise(after) == normalise(churn["updated_at"][-1]) and after > before


def test_a_wrong_key_fails_the_run_with_the_taps_message(emu, tmp_path):
    bad_key = "apx_live_acme_wrongwrongwrong"
    project = MeltanoProject(tmp_path, emu, api_key=bad_key)
    proc = project.run("run", "tap-apixx", "target-duckdb", check=False)
    assert proc.returncode != 0
    assert "401" in proc.stdout and "api_key" in proc.stdout
    assert bad_key not in proc.stdout
