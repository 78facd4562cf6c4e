"""The README stays true: its settings table is the tap's own, and its commands exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from settings_table import settings_table

README = (ROOT / "README.md").read_text()


def test_settings_table_is_the_taps_about_output():
    assert settings_table() in README, "README settings table drifted: paste `python scripts/settings_table.py`"


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    named = set(re.findall(r"`make ([a-z][a-z-]+)`", README)) | set(re.findall(r"^make ([a-z][a-z-]+)", README, re.MULTILINE))
    assert {"demo", "test"} <= named
    assert named <= targets, f"README names make targets the Makefile lacks: {named - targets}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
