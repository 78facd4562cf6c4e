"""SDK seam: the tap's command line, the SDK's command but with one-line errors.

The SDK builds its click command itself and offers no way to pass a command class, so
`OneLineErrors.get_singer_command` swaps the class of the command it returns.
tests/unit/test_unit_sdk_seams.py pins what that relies on.
"""

from __future__ import annotations

import sys
import typing as t

import click
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.plugin_base import PluginBase, SingerCommand

from tap_apixx.errors import TapApixxError

ERROR_PREFIX = "tap-apixx: error: "


class ApixxCommand(SingerCommand):
    """The SDK's command, but a known failure ends as one `tap-apixx: error: ...` line."""

    def invoke(self, ctx: click.Context) -> t.Any:
        sys.excepthook = self.excepthook
        return click.Command.invoke(self, ctx)  # skip SingerCommand's multi-line config report

    def main(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return super().main(*args, **kwargs)
        except ConfigValidationError as exc:
            lines = [f"config: {e}" for e in exc.errors] or [str(exc)]
        except (TapApixxError, FatalAPIError) as exc:
            lines = [" ".join(str(exc).split())]
        for line in lines:
            click.echo(f"{ERROR_PREFIX}{line}", err=True)
        sys.exit(1)


class OneLineErrors(PluginBase):
    """Plugin mixin: its CLI command is an ApixxCommand."""

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.__class__ = ApixxCommand  # same fields, only the methods above differ
        return command
