"""The tap's own commands without a server: --discover and --about need no config and say so."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.helpers.tap import TAP


def run_tap(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_APIXX_")}
    return subprocess.run([TAP, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def discovered_streams() -> list[str]:
    proc = run_tap("--discover")
    assert proc.returncode == 0, proc.stderr
    return [entry["tap_stream_id"] for entry in json.loads(proc.stdout)["streams"]]


def test_discover_without_config_warns_of_nothing() -> None:
    proc = run_tap("--discover")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["streams"]) > 0
    assert "validation" not in proc.stderr.lower(), proc.stderr
    assert not re.search(r"\b(WARNING|ERROR)\b", proc.stderr), proc.stderr


def test_a_bad_config_is_one_clear_line_not_a_warning_too(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{}")
    proc = run_tap("--config", str(config))
    assert proc.returncode != 0
    assert "tap-apixx: error: config: api_key: is required" in proc.stderr
    assert "Config validation failed" not in proc.stderr, proc.stderr


def test_about_names_every_stream_canonical_and_ops() -> None:
    streams = discovered_streams()
    assert {"flows", "runs", "connectors"} < set(streams)
    about = json.loads(run_tap("--about", "--format=json").stdout)
    named = set(re.findall(r"[a-z_]+", about["description"]))
    assert set(streams) <= named, set(streams) - named
    text = run_tap("--about").stdout
    [line] = [line for line in text.splitlines() if line.startswith("Description:")]
    assert all(re.search(rf"\b{s}\b", line) for s in streams), line
