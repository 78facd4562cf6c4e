"""The README's "Use it in your own Meltano project", run as written: a fresh Meltano project
adds the tap from its plugin definition file (no Hub), installs it, syncs an emulator, and gets
exactly the emulator's records."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from apixx_emulator.testing import DEFAULT_KEY, EmulatorProcess
from tests.helpers.packaging import DEV_BIN, ROOT, copy_sources
from tests.helpers.tap import latest, truth

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not (DEV_BIN / "meltano").exists(), reason="Meltano is not installed: run `make install`")]
README_PORT = "127.0.0.1:8765"  # where the README's block expects the emulator


def readme_block(heading: str) -> str:
    """The first ```bash block of the README section `heading`."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, f"no bash block under '## {heading}'"
    return match.group(1)


def user_env(home: Path) -> dict[str, str]:
    """A shell as a user has it: Meltano on PATH, nothing of this repository's own setup."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MELTANO_", "TAP_APIXX", "TARGET_"))}
    caches = env.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))  # keep uv's and pip's
    env |= {"PATH": f"{DEV_BIN}:{env.get('PATH', '')}", "HOME": str(home),
            "XDG_CACHE_HOME": caches, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
    return env


def test_the_readme_steps_add_install_and_sync_the_tap(tmp_path: Path) -> None:
    block = readme_block("Use it in your own Meltano project")
    assert "meltano add" in block and "--from-ref" in block and README_PORT in block
    copy_sources(tmp_path / "src" / "tap-apixx")  # $HOME/src/tap-apixx, as written
    with EmulatorProcess(records_per_entity=60, read_limit=100000) as emu:
        script = block.replace(README_PORT, emu.base_url.removeprefix("http://"))
        ran = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path,
                             env=user_env(tmp_path), capture_output=True, text=True,
                             timeout=1200, check=False)
        expected = truth(emu, "order")
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
    project = tmp_path / "my-project"
    messages = [json.loads(line) for line in
                (project / "order.singer.jsonl").read_text().splitlines() if line.strip()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert {m["stream"] for m in messages if m["type"] == "RECORD"} == {"order"}
    assert len(records) == len(expected) and latest(records) == expected
    # installed from the checkout into the project's own plugin venv, not from an index
    tap = project / ".meltano" / "extractors" / "tap-apixx" / "venv" / "bin" / "tap-apixx"
    assert tap.exists()
    assert DEFAULT_KEY in block  # the demo key the README sets ...
    assert DEFAULT_KEY not in (project / "meltano.yml").read_text()  # ... went to .env
    assert DEFAULT_KEY in (project / ".env").read_text()
    assert "Traceback" not in ran.stderr
