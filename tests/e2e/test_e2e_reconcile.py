"""End to end: `meltano invoke tap-apixx:reconcile` on a warehouse loaded by `meltano run`, in DuckDB
and in PostgreSQL, against the emulator's ground truth after deletes, merges, inserts and updates."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from apixx_emulator.testing import EmulatorProcess, free_port
from tests.helpers.e2e import (
    MELTANO,
    ROOT,
    MeltanoProject,
    PostgresCluster,
    duckdb_rows,
    meltano_available,
    postgres_binaries,
    postgres_rows,
)

ENTITIES = ("customer", "order", "invoice")  # invoice is left alone: the clean control
SCHEMA = "apixx"
TARGET_DUCKDB_PYTHON = ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"
PLUGIN_RECONCILE = ROOT / ".meltano" / "extractors" / "tap-apixx" / "venv" / "bin" / "tap-apixx-reconcile"
BINARIES = postgres_binaries()
REQUIRE_POSTGRES = os.environ.get("APIXX_REQUIRE_POSTGRES") == "1"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]


class Warehouse:
    """One loader's warehouse: how to sync it, reconcile it, read it and damage it by hand."""

    def __init__(self, kind: str, project: MeltanoProject, postgres: PostgresCluster | None = None):
        self.kind, self.project, self.postgres = kind, project, postgres
        self.loader = "target-duckdb" if kind == "duckdb" else "target-postgres"
        self.command = "tap-apixx:reconcile" if kind == "duckdb" else "tap-apixx:reconcile-postgres"

    def sync(self) -> None:
        self.project.run("run", "tap-apixx", self.loader)

    def reconcile(self, *args: str, meltano: bool = False) -> tuple[int, str]:
        """Exit code and stdout of `meltano invoke tap-apixx:reconcile ...` (the loader's settings
        resolved by Meltano), or of the same command run directly from the plugin's venv, with the
        warehouse named (quicker: no Meltano start-ups)."""
        if meltano:
            command = [str(MELTANO), "invoke", self.command, *args]
        else:
            where = (["--duckdb", str(self.project.workdir / "warehouse.duckdb")] if self.kind == "duckdb"
                     else ["--postgres-url", f"postgresql://postgres@127.0.0.1:{self.postgres.port}/postgres"])
            command = [str(PLUGIN_RECONCILE), *where, *args]
        proc = subprocess.run(command, cwd=ROOT, env=self.project.env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode in (0, 1), f"reconcile exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr
        return proc.returncode, proc.stdout

    def report(self, *args: str, meltano: bool = False) -> tuple[int, dict]:
        code, out = self.reconcile("--json", *args, meltano=meltano)
        return code, json.loads(out)

    def rows(self, sql: str) -> list[dict]:
        if self.kind == "duckdb":
            return duckdb_rows(self.project.workdir / "warehouse.duckdb", sql)
        return postgres_rows(self.postgres.dsn, sql)

    def ids(self, entity: str, live: bool = False) -> set[str]:
        where = " WHERE _sdc_deleted_at IS NULL" if live else ""
        return {str(r["canonical_id"]) for r in self.rows(f'SELECT canonical_id FROM {SCHEMA}."{entity}"{where}')}

    def damage(self, removed: tuple[str, str], staled: tuple[str, str]) -> None:
        """Delete one row and move another's updated_at a second back, as a person might."""
        statements = [(f'DELETE FROM {SCHEMA}."{removed[0]}" WHERE canonical_id = \'{removed[1]}\''),
                      (f'UPDATE {SCHEMA}."{staled[0]}" SET updated_at = updated_at - INTERVAL \'1 second\' '
                       f"WHERE canonical_id = '{staled[1]}'")]
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(self.postgres.dsn) as con:
                for sql in statements:
                    assert con.execute(sql).rowcount == 1
            return
        # with the target's own DuckDB (1.2.2), as any write to its file should be
        script = ("import duckdb, sys; con = duckdb.connect(sys.argv[1])\n"
                  "for sql in sys.argv[2:]: assert con.execute(sql).fetchone()[0] == 1\ncon.close()")
        subprocess.run([str(TARGET_DUCKDB_PYTHON), "-c", script, str(self.project.workdir / "warehouse.duckdb"),
                        *statements], check=True, timeout=120)


@pytest.fixture(scope="module")
def postgres():
    if BINARIES is None:
        if REQUIRE_POSTGRES:
            pytest.fail("no PostgreSQL server binaries (initdb, pg_ctl), and CI requires them")
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    # not under pytest's basetemp: any pytest session starting meanwhile makes that folder 0700
    # again, and the server (run as the postgres user) could then no longer reach its data
    workdir = Path(tempfile.mkdtemp(prefix="apixx-reconcile-pg-"))
    workdir.chmod(0o755)
    cluster = PostgresCluster(BINARIES, workdir, free_port()).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def setup(request, tmp_path_factory):
    """A synced warehouse, then deletes, merges, inserts and updates in the emulator."""
    with EmulatorProcess(records_per_entity=250, read_limit=100000) as emu:
        project = MeltanoProject(tmp_path_factory.mktemp(f"reconcile-{request.param}"), emu)
        project.env["TAP_APIXX__SELECT"] = json.dumps([f"{e}.*" for e in ENTITIES])
        pg = None
        if request.param == "postgres":
            pg = request.getfixturevalue("postgres")
            project.env.update({"TARGET_POSTGRES_HOST": "127.0.0.1", "TARGET_POSTGRES_PORT": str(pg.port),
                                "TARGET_POSTGRES_USER": "postgres", "TARGET_POSTGRES_PASSWORD": "unused-with-trust",
                                "TARGET_POSTGRES_DATABASE": "postgres"})
        warehouse = Warehouse(request.param, project, pg)
        warehouse.sync()
        before = {e: {r["canonical_id"]: r["updated_at"] for r in emu.ground_truth(e)} for e in ENTITIES}
        emu.churn("customer", updates=7, inserts=5, deletes=4, merges=3)
        emu.churn("order", updates=3, deletes=2, merges=1)
        yield emu, warehouse, before


def truth(emu, entity: str) -> dict[str, str]:
    return {r["canonical_id"]: r["updated_at"] for r in emu.ground_truth(entity)}


def test_reconcile_reports_exactly_what_the_ground_truth_implies(setup):
    emu, warehouse, before = setup
    code, body = warehouse.report(meltano=True)
    assert code == 1 and set(body["entities"]) == set(ENTITIES)
    for entity in ENTITIES:
        after = truth(emu, entity)
        expected = {"gone_ids": set(before[entity]) - set(after),  # deleted and merged losers
                    "missing_ids": set(after) - set(before[entity]),  # inserted
                    "stale_ids": {c for c in after if c in before[entity] and after[c] != before[entity][c]}}
        got = body["entities"][entity]
        assert {k: set(got[k]) for k in expected} == expected, entity
        assert (got["gone"], got["missing"], got["stale"]) == tuple(len(v) for v in expected.values())
        assert got["changed_during_sweep"] == 0 and got["ahead"] == 0 and got["revived"] == 0
    assert len(emu.gone("customer")) == 7 and body["entities"]["customer"]["gone"] == 7
    assert body["requests"]["sweep"] == len(ENTITIES)  # 250 records a page each


def test_after_mark_deleted_and_the_next_sync_live_rows_equal_the_ground_truth(setup):
    emu, warehouse, _ = setup
    code, body = warehouse.report("--mark-deleted")
    assert code == 1  # the inserts and updates are still to sync: reconcile says so
    assert body["entities"]["customer"]["acted"]["marked"] == 7 and body["entities"]["order"]["acted"]["marked"] == 3
    assert body["requests"]["confirm"] == 7 + 3  # each gone row confirmed by a 404 first
    assert body["remaining_drift"] == sum(body["entities"][e]["missing"] + body["entities"][e]["stale"] for e in ENTITIES)
    warehouse.sync()  # the loader (for DuckDB: target-duckdb's DuckDB 1.2.2) goes on with the marked tables
    for entity in ENTITIES:
        assert warehouse.ids(entity, live=True) == set(truth(emu, entity)), entity
    gone = {g["canonical_id"] for e in ("customer", "order") for g in emu.gone(e)}
    assert gone <= warehouse.ids("customer") | warehouse.ids("order")  # marked, not deleted
    code, out = warehouse.reconcile()
    assert code == 0 and "No drift" in out, out


def test_a_damaged_warehouse_is_reported_exactly_and_the_printed_command_repairs_it(setup):
    emu, warehouse, _ = setup
    live = sorted(warehouse.ids("customer", live=True))
    removed, staled = live[3], live[5]
    warehouse.damage(("customer", removed), ("customer", staled))
    code, body = warehouse.report()
    assert code == 1
    got = {e: (body["entities"][e]["gone_ids"], body["entities"][e]["missing_ids"], body["entities"][e]["stale_ids"])
           for e in ENTITIES}
    assert got == {"customer": ([], [removed], [staled]), "order": ([], [], []), "invoice": ([], [], [])}
    assert body["entities"]["customer"]["marked_earlier"] == 7  # the marked rows are not drift
    command = body["entities"]["customer"]["resync"]["command"]
    assert command.startswith("TAP_APIXX_START_DATE=") and body["entities"]["order"]["resync"] is None
    proc = subprocess.run(command.replace("meltano", shlex.quote(str(MELTANO)), 1), shell=True, cwd=ROOT,
                          env=warehouse.project.env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, body = warehouse.report()
    assert code == 0 and body["remaining_drift"] == 0
    assert warehouse.ids("customer", live=True) == set(truth(emu, "customer"))
