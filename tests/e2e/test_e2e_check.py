"""End to end: `meltano invoke tap-apixx:check`, the plugin command, with Meltano's own settings."""

from __future__ import annotations

import json

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess, free_port
from tests.helpers.e2e import MeltanoProject, meltano_available

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(meltano_available() is not None, reason=str(meltano_available()))]


@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess(records_per_entity=50, read_limit=100000, cursor_mode="inclusive") as server:
        yield server


def test_meltano_invoke_check_reports_the_emulator(emu, tmp_path):
    project = MeltanoProject(tmp_path, emu)
    proc = project.run("invoke", "tap-apixx:check")
    assert f"tap-apixx check: data_url {emu.data_url}, api_url {emu.api_url}" in proc.stdout
    assert DEFAULT_KEY not in proc.stdout
    out = project.run("invoke", "tap-apixx:check", "--json").stdout  # Meltano's log lines too
    as_json = json.loads(out[out.index('{\n  "ok"'):out.rindex("}") + 1])
    assert as_json["ok"] is True
    assert as_json["measured"]["cursor_mode"] == "inclusive"  # how this emulator was started
    assert as_json["measured"]["since_mode"] == "inclusive"


def test_meltano_invoke_check_fails_on_a_refused_port(emu, tmp_path):
    project = MeltanoProject(tmp_path, emu)
    port = free_port()
    project.env["TAP_APIXX_DATA_URL"] = f"http://127.0.0.1:{port}/api/public/data"
    proc = project.run("invoke", "tap-apixx:check", check=False)
    assert proc.returncode != 0
    assert f"connection refused by 127.0.0.1:{port}" in proc.stdout
    assert f"apixx-emulator --port {port}" in proc.stdout
