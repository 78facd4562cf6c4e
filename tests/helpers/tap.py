"""Helpers for the tap's integration tests: run the tap in-process or as a CLI, read its output."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import typing as t
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from apixx_emulator.testing import DEFAULT_KEY
from tap_apixx.tap import TapApixx
from tests.helpers import ROOT

if t.TYPE_CHECKING:
    from apixx_emulator.testing import EmulatorProcess

CATALOG = ROOT / "catalog" / "catalog.json"
TAP = str(Path(sys.executable).with_name("tap-apixx"))


@dataclass
class SyncResult:
    """The Singer messages of one run."""

    messages: list[dict]

    def records(self, stream: str) -> list[dict]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def ids(self, stream: str) -> list[str]:
        return [r["canonical_id"] for r in self.records(stream)]

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict:
        return self.states[-1]


def config_for(emu: EmulatorProcess, **settings: t.Any) -> dict:
    return {"api_key": DEFAULT_KEY, "data_url": emu.data_url, "api_url": emu.api_url,
            "lookback_minutes": 0, **settings}


def catalog_for(streams: t.Iterable[str], deselect: dict[str, list[str]] | None = None) -> dict:
    """The committed catalog with only `streams` selected and `deselect` fields unselected."""
    catalog = json.loads(CATALOG.read_text())
    wanted, deselect = set(streams), deselect or {}
    for entry in catalog["streams"]:
        name = entry["tap_stream_id"]
        for md in entry["metadata"]:
            crumb = md["breadcrumb"]
            if not crumb:
                md["metadata"]["selected"] = name in wanted
            elif crumb[-1] in deselect.get(name, ()):
                md["metadata"]["selected"] = False
    return catalog


def parse_messages(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def run_tap(config: dict, state: dict | None = None, streams: t.Iterable[str] | None = None,
            deselect: dict[str, list[str]] | None = None) -> SyncResult:
    """Run a sync in this process and return its messages."""
    catalog = catalog_for(streams, deselect) if streams is not None else None
    out = io.StringIO()
    tap = TapApixx(config=config, state=state, catalog=catalog)
    with redirect_stdout(out):
        tap.sync_all()
    return SyncResult(parse_messages(out.getvalue()))


def run_cli(tmp_path: Path, config: dict, *args: str, streams: t.Iterable[str] | None = None,
            env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real `tap-apixx` console script with a config file (and catalog)."""
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config))
    argv = [TAP, "--config", str(config_file), *args]
    if streams is not None:
        catalog_file = tmp_path / "catalog.json"
        catalog_file.write_text(json.dumps(catalog_for(streams)))
        argv += ["--catalog", str(catalog_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, check=False)


def latest(records: t.Iterable[dict]) -> dict[str, str]:
    """canonical_id -> the latest updated_at among `records`."""
    result: dict[str, str] = {}
    for record in records:
        cid, ts = record["canonical_id"], record["updated_at"]
        if ts > result.get(cid, ""):
            result[cid] = ts
    return result


def truth(emu: EmulatorProcess, entity: str) -> dict[str, str]:
    """The emulator's ground truth for `entity`: canonical_id -> updated_at."""
    return latest(emu.ground_truth(entity))


def list_requests(emu: EmulatorProcess, entity: str) -> list[dict]:
    return [r for r in emu.stats()["requests"] if r["route"] == f"data:{entity}:list"]


def tie_sizes(records: t.Iterable[dict]) -> list[int]:
    sizes: dict[str, int] = {}
    for record in records:
        sizes[record["updated_at"]] = sizes.get(record["updated_at"], 0) + 1
    return sorted(sizes.values(), reverse=True)


def update_json_file(path: Path, change: t.Callable[[dict], None]) -> None:
    """Read-modify-write a JSON figures file that several test workers (pytest-xdist) may update
    at once: under an exclusive lock, written whole to a temporary file and renamed into place."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        change(data)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        partial.replace(path)
