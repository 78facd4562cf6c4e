"""Kill and resume: SIGKILL the tap (and a meltano run) at random points; nothing is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
import yaml

from apixx_emulator.testing import EmulatorProcess
from tap_apixx.pagination import MAX_PAGE_SIZE
from tests.helpers.e2e import MELTANO, ROOT, MeltanoProject, meltano_available, normalise
from tests.helpers.resilience import (
    TapProcess,
    no_secrets_anywhere,  # noqa: F401  (autouse: every test here is scanned for the key)
    profiles,
    record_figures,
    summaries,
    watch,
)
from tests.helpers.tap import config_for, truth

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@dataclass(frozen=True)
class KillProfile:
    name: str
    records_per_entity: int
    streams: tuple[str, ...]
    kills: int
    meltano_kills: int
    page_size: int = 250
    batch_rows: int = 1000  # target-duckdb confirms (emits STATE) every this many rows
    seed: int = 7


CI = KillProfile("ci", 7000, ("order", "payment", "customer"), kills=5, meltano_kills=5)
SOAK = KillProfile(
    "soak", 20000,
    ("order", "payment", "customer", "invoice", "refund", "lead", "contact", "account",
     "shipment", "product"),
    kills=int(os.environ.get("APIXX_SOAK_KILLS", "50")),
    meltano_kills=int(os.environ.get("APIXX_SOAK_MELTANO_KILLS", "20")),
    batch_rows=5000,
)


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[[KillProfile], EmulatorProcess]]:
    """One emulator per profile, started on first use."""
    started: dict[str, EmulatorProcess] = {}

    def get(profile: KillProfile) -> EmulatorProcess:
        if profile.name not in started:
            started[profile.name] = EmulatorProcess(
                records_per_entity=profile.records_per_entity, read_limit=10**6).start()
        return started[profile.name]

    yield get
    for emu in started.values():
        emu.stop()


# The tap alone

@dataclass
class Run:
    records: int = 0
    repeated: int = 0  # records this run emitted that an earlier run had already emitted
    killed: bool = False


class KilledSync:
    """Runs the tap, SIGKILLs it when the distinct records seen reach each kill point, and
    restarts it from the last STATE it printed, until a run ends by itself."""

    def __init__(self, workdir: Path, config: dict, streams: t.Sequence[str], points: list[int]):
        self.workdir, self.config, self.streams = workdir, config, streams
        self.points = sorted(points)
        self.emitted: dict[str, dict[str, str]] = {s: {} for s in streams}
        self.distinct = 0
        self.state: dict | None = None
        self.runs: list[Run] = []
        self.stderr = ""

    def run_all(self) -> None:
        while not self.runs or self.runs[-1].killed:
            self.runs.append(self._one_run())

    def _one_run(self) -> Run:
        run = Run()
        workdir = self.workdir / f"run{len(self.runs)}"
        with TapProcess(workdir, self.config, self.streams, self.state) as tap:
            for message in tap.messages():
                if message["type"] == "STATE":
                    self.state = message["value"]
                elif message["type"] == "RECORD" and self._take(message, run):
                    run.killed = tap.kill()
                    break
        self.stderr = tap.stderr_text  # the last run's
        if not run.killed:
            assert tap.proc.returncode == 0, tap.stderr_text[-2000:]
        return run

    def _take(self, message: dict, run: Run) -> bool:
        """Count one record; True when it reaches the next kill point."""
        record, known = message["record"], self.emitted[message["stream"]]
        cid = record["canonical_id"]
        run.records += 1
        if cid in known:
            run.repeated += 1
        else:
            self.distinct += 1
        known[cid] = max(known.get(cid, ""), record["updated_at"])
        if self.points and self.distinct >= self.points[0]:
            self.points.pop(0)
            return True
        return False


@pytest.mark.parametrize("profile", profiles(ci=CI, soak=SOAK))
def test_tap_killed_at_random_points_resumes_from_its_last_state(servers, profile, tmp_path):
    emu = servers(profile)
    expected = {s: truth(emu, s) for s in profile.streams}
    total = sum(map(len, expected.values()))
    rng = random.Random(profile.seed)
    points = rng.sample(range(1, total - 2 * MAX_PAGE_SIZE), profile.kills)  # all mid-sync
    config = config_for(emu, page_size=profile.page_size)
    started = time.perf_counter()
    sync = KilledSync(tmp_path, config, profile.streams, points)
    sync.run_all()
    seconds = time.perf_counter() - started

    assert total >= (20000 if profile.name == "ci" else 200000)
    assert sum(r.killed for r in sync.runs) == profile.kills  # each kill hit a running tap
    for stream in profile.streams:
        assert sync.emitted[stream] == expected[stream], f"{stream}: records lost or stale"
    dups = [r.repeated for r in sync.runs[1:]]  # what each restart re-emitted
    assert max(dups) <= MAX_PAGE_SIZE  # at worst one (widened) page per kill
    emitted = sum(r.records for r in sync.runs)
    assert emitted == total + sum(dups)
    record_figures(profile.name, "tap_kill_resume", {
        "records": total, "streams": len(profile.streams), "page_size": profile.page_size,
        "kills": profile.kills, "records_emitted": emitted, "records_lost": 0,
        "duplicates_per_kill_mean": round(sum(dups) / len(dups), 1),
        "duplicates_per_kill_max": max(dups), "duplicate_overhead_pct": round(
            100 * sum(dups) / total, 3), "seconds": round(seconds, 1),
        "last_run_summaries": summaries(sync.stderr),
    })


# The same through `meltano run tap-apixx target-duckdb`, killing meltano or the target

def meltano_project(workdir: Path, emu: EmulatorProcess, profile: KillProfile) -> dict[str, str]:
    """A copy of meltano.yml whose target confirms every `batch_rows` rows; returns the env."""
    spec = yaml.safe_load((ROOT / "meltano.yml").read_text())
    for loader in spec["plugins"]["loaders"]:
        if loader["name"] == "target-duckdb":
            loader.setdefault("config", {})["batch_size_rows"] = profile.batch_rows
    (workdir / "meltano.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (workdir / ".meltano").mkdir()  # its own run/ and logs/: a catalog cache that another
    for kind in ("extractors", "loaders"):  # meltano rewrites meanwhile reads back empty
        (workdir / ".meltano" / kind).symlink_to(ROOT / ".meltano" / kind)  # installed plugins
    env = MeltanoProject(workdir, emu).env
    env["TAP_APIXX__SELECT"] = watch("select", str([f"{s}.*" for s in profile.streams]).replace(
        "'", '"'))
    env["TAP_APIXX_PAGE_SIZE"] = str(profile.page_size)
    return env


class MeltanoRun:
    """`meltano run` in its own process group; its log read by a thread that counts the
    moments meltano saved state."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        argv = [str(MELTANO), "--cwd", str(workdir), "run", "--force", "tap-apixx", "target-duckdb"]
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.saves = 0
        self.started_tap = threading.Event()
        self.log: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.log.append(line)
            if "tap-apixx" in line and "Syncing" in line:
                self.started_tap.set()
            if "Incremental state has been updated" in line:
                self.saves += 1

    def kill_after(self, saves: int, delay: float, whole_group: bool) -> bool:
        """Kill once `saves` state saves happened, plus `delay`; False if it ended first."""
        while self.proc.poll() is None and (not self.started_tap.is_set() or self.saves < saves):
            time.sleep(0.02)
        time.sleep(delay)
        if self.proc.poll() is not None:
            return False
        target = None if whole_group else self._target_pid()
        os.kill(target, signal.SIGKILL) if target else os.killpg(self.proc.pid, signal.SIGKILL)
        return True

    def _target_pid(self) -> int | None:
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.getpgid(int(proc.name)) == self.proc.pid and \
                        b"target-duckdb" in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
        return None

    def finish(self) -> int:
        try:
            code = self.proc.wait(120)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # any straggler of the group
            except ProcessLookupError:
                pass
        self.reader.join(10)
        watch("meltano log", "".join(self.log))
        return code


def warehouse(path: Path, streams: t.Iterable[str]) -> dict[str, dict[str, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {s: {str(cid): normalise(ts) for cid, ts in con.execute(
            f'SELECT canonical_id, updated_at FROM apixx."{s}"').fetchall()} for s in streams}
    finally:
        con.close()


@pytest.mark.e2e
@pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))
@pytest.mark.parametrize("profile", profiles(ci=CI, soak=SOAK))
def test_meltano_run_killed_at_random_points_loads_the_ground_truth(servers, profile, tmp_path):
    emu = servers(profile)
    env = meltano_project(tmp_path, emu, profile)
    rng = random.Random(profile.seed)
    saves_between = max(1, len(profile.streams) * profile.records_per_entity
                        // profile.batch_rows // (profile.meltano_kills + 1))
    kills = {"meltano_group": 0, "target_only": 0}
    started, runs = time.perf_counter(), 0
    while sum(kills.values()) < profile.meltano_kills:
        run, runs = MeltanoRun(tmp_path, env), runs + 1
        whole_group = rng.random() < 0.5
        killed = run.kill_after(rng.randrange(saves_between), rng.uniform(0, 0.5), whole_group)
        code = run.finish()
        kills["meltano_group" if whole_group else "target_only"] += killed
        assert killed or code == 0, "".join(run.log)[-3000:]
        if not killed:  # finished before the kill: change some data so there is more to load
            for stream in profile.streams:
                emu.churn(stream, updates=50, inserts=50)
    final = MeltanoRun(tmp_path, env)
    assert final.finish() == 0, "".join(final.log)[-3000:]
    seconds = time.perf_counter() - started

    loaded = warehouse(tmp_path / "warehouse.duckdb", profile.streams)
    for stream in profile.streams:
        expected = {cid: normalise(ts) for cid, ts in truth(emu, stream).items()}
        assert loaded[stream] == expected, f"{stream}: the table differs from the ground truth"
    record_figures(profile.name, "meltano_kill_resume", {
        "records": sum(len(v) for v in loaded.values()), "kills": kills, "runs": runs + 1,
        "target_batch_rows": profile.batch_rows, "rows_lost": 0, "seconds": round(seconds, 1),
    })
