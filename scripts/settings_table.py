"""Print the tap's own settings table from `tap-apixx --about --format=markdown` (for the README)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SDK_SETTINGS = ("stream_maps", "stream_map_config", "faker_config", "flattening_", "batch_config")


def settings_table() -> str:
    about = subprocess.run([str(Path(sys.executable).parent / "tap-apixx"), "--about", "--format=markdown"],
                           capture_output=True, text=True, check=True).stdout
    lines = about[about.index("| Setting"):].splitlines()
    table = [line for line in lines if line.startswith("|")]
    return "\n".join(line for line in table if not line.startswith(tuple(f"| {s}" for s in SDK_SETTINGS)))


if __name__ == "__main__":
    print(settings_table())
