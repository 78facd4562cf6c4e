"""Shared by the test suites, imported as a package (`from tests.helpers.e2e import ...`)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
