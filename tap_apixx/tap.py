"""TapApixx: the settings schema and the list of streams."""

from __future__ import annotations

import typing as t
from functools import cached_property

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities

from tap_apixx.cli import OneLineErrors
from tap_apixx.http_guard import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE,
    MAX_REQUEST_DEADLINE,
    MAX_RESPONSE_BYTES,
    MIN_RESPONSE_BYTES,
)
from tap_apixx.inputs import CheckedInputs, StreamKeys
from tap_apixx.lifecycle import Lifecycle
from tap_apixx.new_fields import DEFAULT_NEW_FIELDS, NEW_FIELDS_POLICIES
from tap_apixx.ops_streams import DEFAULT_RUNS_LOOKBACK_HOURS, OPS_STREAMS, ops_streams
from tap_apixx.output import SerialOutput
from tap_apixx.pacing import RatePacer
from tap_apixx.pagination import MAX_PAGE_SIZE
from tap_apixx.parallel import DEFAULT_MAX_PARALLEL_STREAMS, ParallelSync
from tap_apixx.probe import log_server_semantics
from tap_apixx.schema_drift import DEFAULT_TYPE_ERRORS, TYPE_ERRORS
from tap_apixx.settings import (
    DEFAULT_API_URL,
    DEFAULT_DATA_URL,
    DEFAULT_LOOKBACK_MINUTES,
    DEFAULT_MAX_RATE_LIMIT_WAIT,
    DEFAULT_REQUEST_TIMEOUT,
    MAX_LOOKBACK_MINUTES,
    MAX_RATE_LIMIT_WAIT,
    MAX_REQUEST_TIMEOUT,
    MAX_RUNS_LOOKBACK_HOURS,
    SERVER_READ_LIMIT,
    CheckedSettings,
)
from tap_apixx.streams import CANONICAL_ENTITIES, canonical_streams

if t.TYPE_CHECKING:
    from singer_sdk import Stream

MAX_PARALLEL_STREAMS = len(CANONICAL_ENTITIES) + len(OPS_STREAMS)  # one thread per stream


def _own_str(cls: type, attribute: str) -> str | None:
    """A class attribute that is a string (not an SDK property), else None."""
    value = getattr(cls, attribute, None)
    return value if isinstance(value, str) else None


class TapApixx(
    OneLineErrors, Lifecycle, CheckedSettings, CheckedInputs, ParallelSync, SerialOutput, Tap
):
    """Singer tap for the APIXX canonical data layer and its ops API."""

    name = "tap-apixx"
    # No `batch`: the SDK would write a page's STATE before the BATCH message holding its
    # records, so a crash between the two loses them. settings.py refuses batch_config.
    capabilities: t.ClassVar[list[CapabilitiesEnum]] = [
        c for c in Tap.capabilities if c is not PluginCapabilities.BATCH
    ]
    stream_keys: t.ClassVar[dict[str, StreamKeys]] = {
        **{entity: StreamKeys("updated_at", ("canonical_id",)) for entity in CANONICAL_ENTITIES},
        **{
            name: StreamKeys(_own_str(cls, "replication_key"), tuple(cls.primary_keys))
            for name, cls in OPS_STREAMS.items()
        },
    }

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
            "end_date",
            th.DateTimeType,
            title="End date",
            description="RFC 3339 timestamp, exclusive: records updated at or after it (runs "
            "started at or after it) are not synced and the bookmark never passes it. With "
            "start_date it makes a window; the state then records the window it covers. "
            "Absent: up to now, a normal incremental run.",
        ),
        th.Property(
            "rewind",
            th.ArrayType(
                th.ObjectType(
                    th.Property("stream", th.StringType, required=True),
                    th.Property("to", th.StringType, required=True),
                    th.Property("id", th.StringType, required=True),
                )
            ),
            title="Rewind",
            description='Re-sync chosen streams only: a list of {"stream", "to": RFC 3339 '
            'timestamp or "start", "id"}. Each moves that stream\'s bookmark back once; the '
            "state records the id, so later runs leave it alone. Other streams' state is "
            "untouched.",
        ),
        th.Property(
            "new_fields",
            th.StringType(allowed_values=list(NEW_FIELDS_POLICIES)),
            default=DEFAULT_NEW_FIELDS,
            title="New fields",
            description="A field the API sends that the schema lacks: warn (drop it, warn once), "
            "load (add it to the SCHEMA as a nullable column, type inferred, JSON text when "
            "mixed; canonical streams, the ops streams warn) or fail (stop with one line "
            "naming it).",
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
            description=f"Streams synced at the same time (1..{MAX_PARALLEL_STREAMS}), all under "
            "the key's one "
            "rate budget. 1 syncs them one after another. The default, 4, keeps a "
            "latency-bound API busy up to its rate limit.",
        ),
        th.Property(
            "request_timeout",
            th.IntegerType(minimum=1, maximum=MAX_REQUEST_TIMEOUT),
            default=DEFAULT_REQUEST_TIMEOUT,
            title="Request timeout (s)",
            description="Seconds without a byte from the server before a request is retried.",
        ),
        th.Property(
            "request_deadline",
            th.IntegerType(minimum=1, maximum=MAX_REQUEST_DEADLINE),
            default=DEFAULT_REQUEST_DEADLINE,
            title="Request deadline (s)",
            description="Seconds one request may take in all (connect, headers, body), however "
            "steadily the server trickles bytes; past it the request is retried.",
        ),
        th.Property(
            "max_response_bytes",
            th.IntegerType(minimum=MIN_RESPONSE_BYTES, maximum=MAX_RESPONSE_BYTES),
            default=DEFAULT_MAX_RESPONSE_BYTES,
            title="Max response size (bytes)",
            description="A response body larger than this (after decompression) stops the "
            "sync with a clear error. The default, 256 MiB, is far above any page the API sends.",
        ),
        th.Property(
            "max_rate_limit_wait",
            th.IntegerType(minimum=1, maximum=MAX_RATE_LIMIT_WAIT),
            default=DEFAULT_MAX_RATE_LIMIT_WAIT,
            title="Max rate-limit wait (s)",
            description="The longest single wait the rate-limit headers may impose: a longer "
            "Retry-After on a 429 stops the sync with a clear error; a longer X-RateLimit-Reset "
            "wait is cut to this, then the request is tried.",
        ),
        th.Property(
            "semantics_probe",
            th.BooleanType,
            default=True,
            title="Semantics probe",
            description="Start each sync with two or three small requests to the data API and "
            "log in one line how it pages (updated_since inclusive or exclusive, timestamp form, "
            "rate limit). false skips them. tap-apixx-check measures all of it.",
        ),
        th.Property(
            "type_errors",
            th.StringType(allowed_values=list(TYPE_ERRORS)),
            default=DEFAULT_TYPE_ERRORS,
            title="Type errors",
            description="A value of a type the schema does not allow: 'coerce' converts it when "
            'that loses nothing ("12" -> 12), else loads null with a warning naming the '
            "stream, field and id; 'fail' stops the sync instead of loading null.",
        ),
        th.Property(
            "user_agent",
            th.StringType,
            title="User-Agent",
            description="User-Agent header. Default: tap-apixx/<version>.",
        ),
    ).to_dict()
    own_settings: t.ClassVar[frozenset[str]] = frozenset(
        config_jsonschema["properties"]
    )  # before the SDK appends its own

    def discover_streams(self) -> list[Stream]:
        return [*canonical_streams(self), *ops_streams(self)]

    @cached_property
    def pacer(self) -> RatePacer:
        """One request budget for this tap's key, shared by all its streams."""
        ceiling = float(self.config.get("max_rate_limit_wait", DEFAULT_MAX_RATE_LIMIT_WAIT))
        cap = self.config.get("max_requests_per_minute")
        return RatePacer(cap, max_wait=ceiling, logger=self.logger)

    def before_sync(self) -> None:
        if self.config.get("semantics_probe", True):
            log_server_semantics(self)  # one line, two or three requests: see probe.py

    def before_parallel_sync(self) -> None:
        _ = self.pacer  # made once, before the threads that share it


# `--about` shows the class docstring as the description: name every stream, from the tables
TapApixx.__doc__ = (
    f"Singer tap for APIXX: {len(CANONICAL_ENTITIES)} canonical streams from the data API "
    f"({', '.join(CANONICAL_ENTITIES)}) and {len(OPS_STREAMS)} ops streams from the ops API "
    f"({', '.join(OPS_STREAMS)})."
)
