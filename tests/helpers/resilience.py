"""Shared by the resilience suites: CI/soak profiles, the secret scan, figures, a killable tap."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from apixx_emulator.testing import DEFAULT_KEY
from tests.helpers import ROOT
from tests.helpers.tap import TAP, catalog_for, update_json_file

FIGURES = Path(os.environ.get("APIXX_FIGURES", ROOT / "output" / "resilience-figures.json"))
SUMMARY = re.compile(
    r"Finished '(\w+)': (\d+) records, (\d+) requests, (\d+) retries, (\d+) rate-limited"
)


def profiles(**values: t.Any) -> list[t.Any]:
    """Params `ci` (default run) and `soak` (only `make soak`) for the same test code.

    `values` maps each profile name to its sizes, e.g. `profiles(ci=CI, soak=SOAK)`.
    """
    return [
        pytest.param(values["ci"], id="ci"),
        pytest.param(values["soak"], id="soak", marks=pytest.mark.soak),
    ]


# The secret scan: every captured text of a resilience test passes through `watch`.

@dataclass
class SecretScan:
    """Texts captured during one test, checked at its end for any API key in play."""

    secrets: set[str] = field(default_factory=lambda: {DEFAULT_KEY})
    hits: list[str] = field(default_factory=list)
    scanned: int = 0

    def watch(self, where: str, text: t.Any) -> t.Any:
        """Scan `text` (str, bytes or anything JSON-able) now; return it unchanged.

        Every form of each key counts: raw, stripped of stray whitespace and control
        characters, escaped (repr, JSON), URL-quoted, and inside bytes (any of these encoded).
        """
        blobs = [text] if isinstance(text, str) else _as_texts(text)
        self.scanned += 1
        for secret in self.secrets:
            if any(form in blob for form in secret_forms(secret) for blob in blobs):
                self.hits.append(f"{where}: contains the key {secret[:8]!r}… (in some form)")
        return text


SCAN = SecretScan()


MIN_FORM = 12  # shorter fragments of a key (a bare prefix) are not a leak on their own


def secret_forms(secret: str) -> set[str]:
    """The forms a key can take in text: raw, trimmed, escaped, repr'd, quoted."""
    core = "".join(c for c in secret if c.isprintable() and not c.isspace())
    forms = {secret, secret.strip(), core, repr(secret)[1:-1], json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1], quote(secret, safe=""),
             quote_plus(secret), repr(secret.encode("utf-8", "backslashreplace"))[2:-1]}
    return {form for form in forms if len(form) >= MIN_FORM}


def _as_texts(value: t.Any) -> list[str]:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        return [raw.decode("utf-8", "replace"), raw.decode("latin-1"), repr(raw)]
    return [json.dumps(value, default=str), json.dumps(value, default=str, ensure_ascii=False)]


def watch(where: str, text: t.Any) -> t.Any:
    return SCAN.watch(where, text)


def also_secret(key: str) -> None:
    """Another key this test uses (a rotated or wrong one): never to be printed either."""
    SCAN.secrets.add(key)


@pytest.fixture(autouse=True)
def no_secrets_anywhere() -> t.Iterator[SecretScan]:
    """Import this fixture into every resilience module: a key in any captured text fails."""
    global SCAN
    SCAN = SecretScan()
    yield SCAN
    assert not SCAN.hits, "\n".join(SCAN.hits)


# Figures for docs/reliability.md: output/resilience-figures.json, {profile: {section: figures}}.

def record_figures(profile: str, section: str, figures: t.Any) -> None:
    def change(data: dict) -> None:
        data.setdefault(profile, {})[section] = figures
        data[profile]["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    update_json_file(FIGURES, change)  # workers side by side write it too
    print(f"\n[{profile}] {section}: {json.dumps(figures, sort_keys=True)}")


def summaries(stderr: str) -> dict[str, dict[str, int]]:
    """The tap's per-stream summary lines: records, requests, retries and 429s."""
    names = ("records", "requests", "retries", "throttled")
    return {m[1]: dict(zip(names, map(int, m.groups()[1:]))) for m in SUMMARY.finditer(stderr)}


# The tap as a child process, its stdout read as it goes.

class TapProcess:
    """`tap-apixx` with a config, a catalog of `streams` and a state, started in its own group."""

    def __init__(self, workdir: Path, config: dict, streams: t.Iterable[str],
                 state: dict | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        files = {"config": config, "catalog": catalog_for(streams), "state": state}
        self.argv = [TAP]
        for name, content in files.items():
            if content is not None:
                path = workdir / f"{name}.json"
                path.write_text(json.dumps(content))
                self.argv += [f"--{name}", str(path)]
        self.stderr_path = workdir / "stderr.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> TapProcess:  # noqa: PYI034
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=err, text=True,
                                         start_new_session=True)
        return self

    def messages(self) -> t.Iterator[dict]:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            watch("tap stdout", line)
            yield json.loads(line)

    def kill(self) -> bool:
        """SIGKILL the tap; True if it was still running."""
        assert self.proc
        alive = self.proc.poll() is None
        if alive:
            os.killpg(self.proc.pid, signal.SIGKILL)
        return alive

    def __exit__(self, *exc: object) -> None:
        assert self.proc
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        if self.proc.stdout:
            self.proc.stdout.close()
        watch("tap stderr", self.stderr_text)

    @property
    def stderr_text(self) -> str:
        return self.stderr_path.read_text()


def run_cli_scanned(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command, scanning its stdout and stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    watch("stdout", proc.stdout)
    watch("stderr", proc.stderr)
    return proc


def tap_argv(workdir: Path, config: dict, streams: t.Iterable[str] | None = None) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config))
    argv = [TAP, "--config", str(workdir / "config.json")]
    if streams is not None:
        (workdir / "catalog.json").write_text(json.dumps(catalog_for(streams)))
        argv += ["--catalog", str(workdir / "catalog.json")]
    return argv


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tap-apixx: error:")]
