"""Shared by the hostile-input suites: the CLI run in-process, its invariants, and the tally.

Every hostile input ends in one of three outcomes: exit 0, exit 0 with a warning, or exit 1
with exactly one `tap-apixx: error:` line. Never a traceback, never a hang (pytest-timeout),
never a key (the secret scan of resilience_helpers, in every form: raw, escaped, repr, bytes).
The tally counts the generated inputs per class and outcome for docs/reliability.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import typing as t
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from tap_apixx.tap import TapApixx
from tests.helpers.resilience import FIGURES, watch
from tests.helpers.tap import update_json_file

ERROR = "tap-apixx: error: "

# Class number -> title, as in docs/reliability.md (issue 13's sections).
CLASSES = {
    1: "URLs that could send the key to another host",
    2: "settings with control characters or stray whitespace",
    3: "slow and oversized responses",
    4: "rate-limit headers",
    5: "paging that does not move forward",
    6: "objects gone between list and detail",
    7: "malformed config, state and catalog",
}


@dataclass
class Outcome:
    """What one in-process run of the CLI ended in."""

    code: int
    stdout: str
    stderr: str
    log: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(ERROR)]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.log.splitlines() if "WARNING" in line]

    @property
    def kind(self) -> str:
        if self.code:
            return "exit 1, one line"
        return "exit 0, warning" if self.warnings else "exit 0"

    def check(self) -> Outcome:
        """The invariants every hostile input must keep."""
        everything = self.stdout + self.stderr + self.log
        assert "Traceback" not in everything, everything[-3000:]
        assert self.code in (0, 1), (self.code, self.stderr[-2000:])
        if self.code == 1:
            assert len(self.errors) == 1, self.stderr[-2000:]
            assert self.stderr.strip() == self.errors[0].strip(), self.stderr[-2000:]
            assert "\n" not in self.errors[0]
        return self


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname} {record.getMessage()}"
        if record.exc_info:
            text += "\nTraceback (logged with exc_info)"
        self.lines.append(text)


def run_cli(argv: list[str], env: dict[str, str] | None = None) -> Outcome:
    """`tap-apixx <argv>` in this process: exit code, stdout, stderr and every log line."""
    command = TapApixx.get_singer_command()
    capture = _Capture()
    root = logging.getLogger()
    root.addHandler(capture)
    hook = sys.excepthook
    old_env = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        result = CliRunner().invoke(command, argv, catch_exceptions=True)
    finally:
        root.removeHandler(capture)
        sys.excepthook = hook
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    stderr = result.stderr
    log = "\n".join(capture.lines)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        log += f"\nTraceback (uncaught {type(result.exception).__name__}: {result.exception})"
    for where, text in (("stdout", result.stdout), ("stderr", stderr), ("log", log)):
        watch(f"in-process cli {where}", text)
    return Outcome(result.exit_code, result.stdout, stderr, log)


def write_inputs(workdir: Path, **files: t.Any) -> list[str]:
    """Write config/state/catalog files (dicts as JSON, str/bytes as-is); return the argv."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv: list[str] = []
    for name, content in files.items():
        if content is None:
            continue
        path = workdir / f"{name}.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content))
        argv += [f"--{name}", str(path)]
    return argv


# The tally: output/resilience-figures.json, section "hostile": {test: {class, outcomes}}.

class Tally:
    """Counts of one test's generated inputs, by outcome."""

    def __init__(self, klass: int, test: str) -> None:
        self.klass, self.test = klass, test
        self.counts: Counter[str] = Counter()

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1

    def save(self) -> None:
        if not self.counts:
            return
        entry = {"class": self.klass, "outcomes": dict(sorted(self.counts.items()))}

        def change(data: dict) -> None:
            data.setdefault("ci", {}).setdefault("hostile", {})[self.test] = entry

        update_json_file(FIGURES, change)  # workers side by side write it too


def tally_fixture(klass: int) -> t.Callable[..., t.Iterator[Tally]]:
    """A fixture factory: `tally = tally_fixture(3)` in a module gives each test its Tally."""

    @pytest.fixture()
    def tally(request: pytest.FixtureRequest) -> t.Iterator[Tally]:
        counter = Tally(klass, request.node.name)
        yield counter
        counter.save()

    return tally


def examples(default: int) -> int:
    """Examples per property test: `default`, scaled by APIXX_HOSTILE_SCALE (soak: e.g. 10)."""
    return max(1, int(default * float(os.environ.get("APIXX_HOSTILE_SCALE", "1"))))


def fuzz(default: int) -> settings:
    """Hypothesis settings of a hostile-input property: `default` examples (scaled), no deadline."""
    return settings(max_examples=examples(default), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
