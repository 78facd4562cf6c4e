"""Validation of the settings (one clear line per problem), URL checks and key redaction."""

from __future__ import annotations

import ipaddress
import logging
import typing as t
from urllib.parse import urlparse

from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.plugin_base import PluginBase

from tap_apixx.bookmarks import parse_ts

KEY_PREFIXES = ("apx_live_", "apx_test_", "apixx_")
DEFAULT_DATA_URL = "https://app.apixx.ai/api/public/data"
DEFAULT_API_URL = "https://api.apixx.io/v1"
DEFAULT_LOOKBACK_MINUTES = 5
DEFAULT_REQUEST_TIMEOUT = 60
MAX_LOOKBACK_MINUTES = 7 * 24 * 60  # a week; more is a full re-sync in disguise
MAX_RUNS_LOOKBACK_HOURS = 90 * 24  # 90 days of runs re-read on every sync is already a lot
MAX_REQUEST_TIMEOUT = 3600
SERVER_READ_LIMIT = 600  # documented GET requests per minute per key
URL_SETTINGS = ("data_url", "api_url")
REDACTED = "[redacted]"
NO_BATCH = (
    "batch_config: BATCH messages are not supported: a page's STATE would reach the target "
    "before the batch file holding its records, so a crash between the two could lose them; "
    "remove batch_config (records are sent as RECORD messages, each page before its STATE)"
)


def redact(text: str, api_key: t.Any) -> str:
    """`text` without the API key: for anything that may be shown or logged."""
    return text.replace(api_key, REDACTED) if isinstance(api_key, str) and api_key else text


def config_problems(config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]) -> list[str]:
    """Checks JSON Schema cannot express (or says less clearly); each is `<setting>: <why>`.

    The integer ranges are read from `schema` (the tap's config schema), so they are stated once.
    """
    problems: list[str] = [NO_BATCH] if config.get("batch_config") is not None else []
    key = config.get("api_key")
    if isinstance(key, str) and not key.startswith(KEY_PREFIXES):
        problems.append(f"api_key: does not start with a known prefix ({', '.join(KEY_PREFIXES)})")
    if (start := config.get("start_date")) is not None and not _parses(start):
        problems.append(f"start_date: {start!r} is not an RFC 3339 timestamp")
    for setting in URL_SETTINGS:
        if (url := config.get(setting)) is not None and (why := url_problem(url)):
            problems.append(f"{setting}: {why}")
    for setting, (low, high) in integer_ranges(schema).items():
        value = config.get(setting)
        if value is not None and (not _is_int(value) or not low <= value <= high):
            problems.append(f"{setting}: {value!r} is not an integer in {low}..{high}")
    return problems


def integer_ranges(schema: t.Mapping[str, t.Any]) -> dict[str, tuple[int, int]]:
    """setting -> (minimum, maximum) of every bounded integer setting of a config schema."""
    ranges = {}
    for name, prop in schema.get("properties", {}).items():
        kinds = prop.get("type", [])
        if "integer" in kinds and "minimum" in prop and "maximum" in prop:
            ranges[name] = (prop["minimum"], prop["maximum"])
    return ranges


def url_problem(url: t.Any) -> str | None:
    """Why `url` is unfit for the key (not http(s), or clear text to a remote host), or None."""
    parsed = urlparse(str(url))
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        return f"{url!r} is not an http(s) URL"
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return f"{url!r} is plain http to a remote host; use https so the key is not sent in clear"
    return None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where plain http is allowed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parses(value: t.Any) -> bool:
    try:
        parse_ts(str(value))
    except ValueError:
        return False
    return True


def _is_int(value: t.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class CheckedSettings(PluginBase):
    """Plugin mixin (an SDK seam: `_validate_config` is private): the checks above first.

    A setting config_problems reports is not reported again by the SDK's schema validation,
    and no line shows the API key. tests/unit/test_unit_sdk_seams.py pins the SDK method.
    """

    def extra_config_problems(self) -> list[str]:
        """More `<setting>: <why>` lines, from other mixins (lifecycle.py)."""
        return []

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings before any request; one clear line per problem."""
        errors = config_problems(self.config, self.config_jsonschema) + self.extra_config_problems()
        reported = {e.split(":", 1)[0] for e in errors}
        # the SDK logs "Config validation failed" whenever its schema check finds anything, even
        # for --discover and --about, which need no config; the caller decides what is a failure
        quiet = _DropRecord("Config validation failed")
        self.logger.addFilter(quiet)
        try:
            schema_errors = super()._validate_config(raise_errors=False)
        finally:
            self.logger.removeFilter(quiet)
        errors += [e for e in schema_errors if not any(f"'{k}'" in e for k in reported)]
        errors = [redact(e, self.config.get("api_key")) for e in errors]
        if errors and raise_errors:
            msg = f"Invalid {self.name} configuration"
            raise ConfigValidationError(msg, errors=errors, schema=self.config_jsonschema)
        return errors


class _DropRecord(logging.Filter):
    """Drops the log records whose message is exactly `message`."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message
