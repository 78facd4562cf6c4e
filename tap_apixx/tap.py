"""TapApixx: the settings, their validation, the list of streams and the one-line-error CLI."""

from __future__ import annotations

import ipaddress
import sys
import typing as t
from datetime import datetime
from functools import cached_property
from urllib.parse import urlparse

import click
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError
from singer_sdk.plugin_base import SingerCommand

from tap_apixx.concurrency import (
    DEFAULT_MAX_PARALLEL_STREAMS,
    MAX_PARALLEL_STREAMS,
    ConcurrentRatePacer,
    SerialSingerWriter,
    SerialStateWriter,
    streams_to_sync,
    sync_concurrently,
)
from tap_apixx.errors import TapApixxError
from tap_apixx.ops_streams import DEFAULT_RUNS_LOOKBACK_HOURS, OpsStream, ops_streams
from tap_apixx.pacing import RatePacer
from tap_apixx.pagination import MAX_PAGE_SIZE
from tap_apixx.streams import canonical_streams

if t.TYPE_CHECKING:
    from singer_sdk import Stream

KEY_PREFIXES = ("apx_live_", "apx_test_", "apixx_")
DEFAULT_DATA_URL = "https://app.apixx.ai/api/public/data"
DEFAULT_API_URL = "https://api.apixx.io/v1"
DEFAULT_LOOKBACK_MINUTES = 5
MAX_LOOKBACK_MINUTES = 7 * 24 * 60  # a week; more is a full re-sync in disguise
MAX_RUNS_LOOKBACK_HOURS = 90 * 24  # 90 days of runs re-read on every sync is already a lot
MAX_REQUEST_TIMEOUT = 3600
SERVER_READ_LIMIT = 600  # documented GET requests per minute per key
NUMERIC_RANGES: dict[str, tuple[int, int]] = {
    "page_size": (1, MAX_PAGE_SIZE),
    "lookback_minutes": (0, MAX_LOOKBACK_MINUTES),
    "runs_lookback_hours": (0, MAX_RUNS_LOOKBACK_HOURS),
    "max_requests_per_minute": (1, SERVER_READ_LIMIT),
    "request_timeout": (1, MAX_REQUEST_TIMEOUT),
    "max_parallel_streams": (1, MAX_PARALLEL_STREAMS),
}


class TapApixx(Tap):
    """Singer tap for the APIXX canonical data layer."""

    name = "tap-apixx"
    message_writer_class = SerialSingerWriter  # one lock, orjson: see concurrency.py

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType,
            required=True,
            secret=True,
            title="API key",
            description="APIXX API key (apx_live_…, apx_test_… or apixx_…) with scope "
            "data:read (and flows:read for the ops streams flows, runs, connectors). Never "
            "logged or written to state.",
        ),
        th.Property(
            "data_url",
            th.StringType,
            default=DEFAULT_DATA_URL,
            title="Data API URL",
            description="Base URL of the canonical data API. https only, except loopback.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default=DEFAULT_API_URL,
            title="Ops API URL",
            description="Base URL of the ops API (flows, runs, connectors). https only, "
            "except loopback.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType,
            title="Start date",
            description="RFC 3339 timestamp; records updated before it are not synced. "
            "Absent: the whole history.",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=MAX_PAGE_SIZE),
            default=MAX_PAGE_SIZE,
            title="Page size",
            description="Records per request (1..1000). A tie group larger than this is "
            "still read whole, with one 1000-record request. The ops lists (flows, runs, "
            "connectors) take at most 100.",
        ),
        th.Property(
            "lookback_minutes",
            th.IntegerType(minimum=0, maximum=MAX_LOOKBACK_MINUTES),
            default=DEFAULT_LOOKBACK_MINUTES,
            title="Lookback (minutes)",
            description="Each run re-reads this many minutes before the bookmark, to catch "
            "records that arrive late with an older updated_at. Those are emitted again.",
        ),
        th.Property(
            "runs_lookback_hours",
            th.IntegerType(minimum=0, maximum=MAX_RUNS_LOOKBACK_HOURS),
            default=DEFAULT_RUNS_LOOKBACK_HOURS,
            title="Runs lookback (hours)",
            description="The runs stream re-reads the runs started this many hours before its "
            "bookmark, because a run changes after it starts (status, finished_at, counts). "
            "Runs still queued or running are re-read however old they are.",
        ),
        th.Property(
            "max_requests_per_minute",
            th.IntegerType(minimum=1, maximum=SERVER_READ_LIMIT),
            title="Max requests per minute",
            description="Client-side cap below the server's 600/min, to share one key "
            "between jobs. Absent: paced from the server's rate-limit headers only.",
        ),
        th.Property(
            "max_parallel_streams",
            th.IntegerType(minimum=1, maximum=MAX_PARALLEL_STREAMS),
            default=DEFAULT_MAX_PARALLEL_STREAMS,
            title="Max parallel streams",
            description="Streams synced at the same time (1..18), all under the key's one "
            "rate budget. 1 syncs them one after another. The default, 4, keeps a "
            "latency-bound API busy up to its rate limit.",
        ),
        th.Property(
            "request_timeout",
            th.IntegerType(minimum=1, maximum=MAX_REQUEST_TIMEOUT),
            default=60,
            title="Request timeout (s)",
            description="Seconds to wait for a response before retrying the request.",
        ),
        th.Property(
            "user_agent",
            th.StringType,
            title="User-Agent",
            description="User-Agent header. Default: tap-apixx/<version>.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(self.message_writer, SerialSingerWriter):
            self._state_writer = SerialStateWriter(self.message_writer)

    def discover_streams(self) -> list[Stream]:
        return [*canonical_streams(self), *ops_streams(self)]

    def sync_all(self) -> None:
        """Sync the selected streams, up to `max_parallel_streams` at a time."""
        workers = int(self.config.get("max_parallel_streams", DEFAULT_MAX_PARALLEL_STREAMS))
        if workers <= 1:
            super().sync_all()
            return
        self._reset_state_progress_markers()
        self._set_compatible_replication_methods()
        if self.state:
            self._state_writer.write_state(self.state)
        _ = self.pacer  # made once, before the threads that share it
        streams = sorted(streams_to_sync(self), key=lambda s: isinstance(s, OpsStream))  # ops last
        sync_concurrently(self, streams, min(workers, max(len(streams), 1)))
        for stream in self.streams.values():
            stream.log_sync_costs()

    @cached_property
    def pacer(self) -> RatePacer:
        """One request budget for this tap's key, shared by all its streams."""
        cap = self.config.get("max_requests_per_minute")
        workers = int(self.config.get("max_parallel_streams", DEFAULT_MAX_PARALLEL_STREAMS))
        return ConcurrentRatePacer(cap) if workers > 1 else RatePacer(cap)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings before any request; one clear line per problem."""
        errors = config_problems(self.config)
        reported = {e.split(":", 1)[0] for e in errors}
        schema_errors = super()._validate_config(raise_errors=False)
        errors += [e for e in schema_errors if not any(f"'{k}'" in e for k in reported)]
        errors = [_redact(e, self.config.get("api_key")) for e in errors]
        if errors and raise_errors:
            msg = "Invalid tap-apixx configuration"
            raise ConfigValidationError(msg, errors=errors, schema=self.config_jsonschema)
        return errors

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.__class__ = ApixxCommand  # same command, one-line errors (see ApixxCommand)
        return command


def config_problems(config: t.Mapping[str, t.Any]) -> list[str]:
    """Semantic checks JSON Schema cannot express; each problem is `<setting>: <why>`."""
    problems: list[str] = []
    key = config.get("api_key")
    if isinstance(key, str) and not key.startswith(KEY_PREFIXES):
        problems.append(f"api_key: does not start with a known prefix ({', '.join(KEY_PREFIXES)})")
    if (start := config.get("start_date")) is not None and not _parses(start):
        problems.append(f"start_date: {start!r} is not an RFC 3339 timestamp")
    for setting in ("data_url", "api_url"):
        if (url := config.get(setting)) is not None and (why := _url_problem(url)):
            problems.append(f"{setting}: {why}")
    for setting, (low, high) in NUMERIC_RANGES.items():
        value = config.get(setting)
        if value is not None and (not _is_int(value) or not low <= value <= high):
            problems.append(f"{setting}: {value!r} is not an integer in {low}..{high}")
    return problems


def _parses(value: t.Any) -> bool:
    try:
        datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _url_problem(url: t.Any) -> str | None:
    parsed = urlparse(str(url))
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return f"{url!r} is not an http(s) URL"
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        return f"{url!r} is plain http to a remote host; use https so the key is not sent in clear"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_int(value: t.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _redact(text: str, key: t.Any) -> str:
    return text.replace(key, "[redacted]") if isinstance(key, str) and key else text


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
            click.echo(f"tap-apixx: error: {line}", err=True)
        sys.exit(1)
