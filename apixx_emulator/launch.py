"""Entry point of `apixx-emulator`: one clear line, not a traceback, without the emulator extra."""

from __future__ import annotations

import importlib.util
import sys

# what the [emulator] extra of tap-apixx adds to a plain `pip install tap-apixx`
EXTRA_MODULES = ("fastapi", "uvicorn")
INSTALL_HINT = "pip install 'tap-apixx[emulator]'"


def missing_modules() -> list[str]:
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> None:
    missing = missing_modules()
    if missing:
        sys.exit(f"apixx-emulator: error: the emulator needs {' and '.join(missing)}, which "
                 f"this installation lacks; install the emulator extra: {INSTALL_HINT}")
    from apixx_emulator.cli import main as serve

    serve(argv)
