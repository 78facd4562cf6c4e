"""What the tap's companion commands (tap-apixx-check, tap-apixx-reconcile) share: the tap built
from their config files exactly as a sync builds it, and their one-line errors."""

from __future__ import annotations

import json
import sys
import typing as t

import click

from tap_apixx.errors import TapApixxError

if t.TYPE_CHECKING:
    from tap_apixx.tap import TapApixx


def build_tap(configs: tuple[str, ...], error: type[Exception] = TapApixxError) -> TapApixx:
    """The tap itself, so settings, defaults and validation are the tap's own: the config files
    in order, then TAP_APIXX_* variables. A file that cannot be read raises `error`."""
    from tap_apixx.tap import TapApixx  # the SDK's import cost only for a command that needs it

    config: dict[str, t.Any] = {}
    for path in configs:
        if path == "ENV":  # the SDK's spelling of "from the environment": always read here
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise error(f"cannot read config file {path}: {exc}") from None
        if not isinstance(loaded, dict):
            kind = type(loaded).__name__
            raise error(f"config file {path} holds a JSON {kind}, not an object of settings")
        config.update(loaded)
    return TapApixx(config=config, parse_env_config=True)


def fail(name: str, code: int, *lines: str) -> t.NoReturn:
    """Each line as `<name>: error: ...` on stderr (whitespace folded), then exit with `code`."""
    for line in lines:
        click.echo(f"{name}: error: {' '.join(line.split())}", err=True)
    sys.exit(code)
