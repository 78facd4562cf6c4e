"""SDK seam: the tap's command line, the SDK's command but with one-line errors.

The SDK builds its click command itself and offers no way to pass a command class, so
`OneLineErrors.get_singer_command` swaps the class of the command it returns.
tests/unit/test_unit_sdk_seams.py pins what that relies on.
"""

from __future__ import annotations

import logging
import os
import sys
import typing as t

import click
from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.plugin_base import PluginBase, SingerCommand, _ConfigInput

from tap_apixx.errors import TapApixxError
from tap_apixx.inputs import json_object, parse_json, read_json
from tap_apixx.settings import LOG_FILTER, redact, redact_logs

ERROR_PREFIX = "tap-apixx: error: "
BUG = "(an unexpected error in tap-apixx; please report this line; --log-level=debug shows more)"


class ApixxCommand(SingerCommand):
    """The SDK's command, but a known failure ends as one `tap-apixx: error: ...` line."""

    def invoke(self, ctx: click.Context) -> t.Any:
        sys.excepthook = self.excepthook
        return click.Command.invoke(self, ctx)  # skip SingerCommand's multi-line config report

    def main(
        self,
        args: t.Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: t.Any,
    ) -> t.Any:
        """Click's main, but every way out is exit 0, or one error line and exit 1.

        Click's own usage errors (a missing --state file, an unknown option) too: click is
        run with standalone_mode off, so they come here instead of a multi-line usage text.
        """
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ConfigValidationError as exc:
            lines = [f"config: {e}" for e in exc.errors] or [str(exc)]
        except (TapApixxError, FatalAPIError) as exc:
            lines = [str(exc)]
        except click.ClickException as exc:
            lines = [exc.format_message()]
        except click.exceptions.Abort:
            lines = ["aborted"]
        except BrokenPipeError:
            _quiet_stdout()
            lines = ["stdout was closed before the sync finished (did the target stop?)"]
        except Exception as exc:
            logging.getLogger("tap-apixx").debug("Unexpected error", exc_info=True)
            lines = [f"{type(exc).__name__}: {exc} {BUG}"]
        else:
            if not standalone_mode:
                return result
            sys.exit(result if isinstance(result, int) else 0)
        for line in lines:
            click.echo(f"{ERROR_PREFIX}{one_line(line)}", err=True)
        sys.exit(1)


def one_line(text: str) -> str:
    """`text` on one line, without any key the process has seen."""
    text = " ".join(str(text).split())
    for key in LOG_FILTER.keys:
        text = redact(text, key)
    return text


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so that the exit's flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class OneLineErrors(Tap):
    """Tap mixin: its CLI command is an ApixxCommand, and its input files are read with care."""

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.__class__ = ApixxCommand  # same fields, only the methods above differ
        return command

    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> _ConfigInput:
        """PluginBase.cb_config, but each file is read and checked with a one-line error."""
        config: dict[str, t.Any] = {}
        parse_env = False
        for path in value:
            if path == "ENV":
                parse_env = True
                continue
            config |= json_object(read_json(path, "config"), "config", path)
        redact_logs(config.get("api_key"))
        return _ConfigInput(config=config, parse_env=parse_env)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        state: t.IO[str] | None = None,
        catalog: t.IO[str] | None = None,
    ) -> None:
        """Tap.invoke, but the state and catalog files are read with one-line errors."""
        PluginBase.invoke.__func__(cls, about=about, about_format=about_format)  # type: ignore[attr-defined]
        cls.print_version(print_fn=cls.logger.info)
        config = config or _ConfigInput()
        tap = cls(
            config=config.config,
            state=_read(state, "state"),
            catalog=_read(catalog, "catalog"),
            parse_env_config=config.parse_env,
            validate_config=True,
        )
        tap.sync_all()


def _read(file: t.IO[str] | None, what: str) -> dict[str, t.Any] | None:
    """The JSON object in a file click opened (as text: its bytes are read, any encoding)."""
    if file is None:
        return None
    buffer = getattr(file, "buffer", None)
    raw = buffer.read() if buffer is not None else file.read().encode()
    where = getattr(file, "name", what)
    return json_object(parse_json(raw, what, where), what, where)
