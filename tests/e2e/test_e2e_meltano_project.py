"""The repository's meltano.yml loads cleanly in Meltano 4: no deprecation warning on any
command (a `version` key used to cause one on every run)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.packaging import DEV_BIN, ROOT

MELTANO = DEV_BIN / "meltano"
pytestmark = pytest.mark.skipif(not MELTANO.exists(), reason="Meltano is not installed: run `make install`")
DEPRECATION = re.compile(r"deprecat", re.IGNORECASE)


def test_meltano_yml_has_no_deprecated_keys() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    assert "version" not in project
    assert project.get("requires_meltano")


@pytest.mark.parametrize("command", [["config", "list", "tap-apixx"], ["schedule", "list"]])
def test_a_meltano_command_prints_no_deprecation_warning(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
           "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    ran = subprocess.run([str(MELTANO), *command], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    output = ran.stdout + ran.stderr
    assert "Meltano 4." in output  # the project loaded and Meltano logged as usual
    assert not DEPRECATION.search(output), [line for line in output.splitlines()
                                            if DEPRECATION.search(line)]
