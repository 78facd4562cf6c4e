"""Build and install tap-apixx as a user would: from a copy of the sources, into new venvs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

DEV_BIN = Path(sys.executable).parent
UV = DEV_BIN / "uv"  # installed with Meltano (its default venv backend); pip is the fallback


def copy_sources(target: Path) -> Path:
    """The files git would ship (tracked, or new and not ignored): no .venv, build/ or output.
    Building from a copy leaves the checkout untouched by build/ and egg-info folders."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def build_wheel(sources: Path, dist: Path) -> Path:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(sources)],
        capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = dist.glob("tap_apixx-*.whl")
    return wheel


def make_venv(path: Path, *requirements: str) -> Path:
    """A new venv with only `requirements` (and what they need) installed; returns its bin/."""
    if UV.exists():
        subprocess.run([str(UV), "venv", "-q", str(path)], check=True, timeout=300)
        install = [str(UV), "pip", "install", "-q", "--python", str(path / "bin" / "python")]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
        install = [str(path / "bin" / "python"), "-m", "pip", "install", "-q"]
    done = subprocess.run([*install, *requirements], capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return path / "bin"


def installed_distributions(python: Path) -> set[str]:
    """Normalised names of every distribution importable by `python`."""
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))")
    names = json.loads(subprocess.run([str(python), "-c", script], capture_output=True,
                                      text=True, check=True).stdout)
    return {name.lower().replace("_", "-") for name in names}
