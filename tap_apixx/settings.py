"""Validation of the settings (one clear line per problem), URL checks and key redaction."""

from __future__ import annotations

import ipaddress
import json
import logging
import typing as t
from datetime import datetime, timezone
from urllib.parse import quote, quote_plus, urlsplit

from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.plugin_base import PluginBase

from tap_apixx.http_guard import DEFAULT_PORTS, Origin, origin_of
from tap_apixx.inputs import did_you_mean, instant_problem, kind_of

KEY_PREFIXES = ("apx_live_", "apx_test_", "apixx_")
DEFAULT_DATA_URL = "https://app.apixx.ai/api/public/data"
DEFAULT_API_URL = "https://api.apixx.io/v1"
DEFAULT_LOOKBACK_MINUTES = 5
DEFAULT_REQUEST_TIMEOUT = 60
DEFAULT_MAX_RATE_LIMIT_WAIT = 900  # 15 min: the longest single wait a rate limit may impose
MAX_LOOKBACK_MINUTES = 7 * 24 * 60  # a week; more is a full re-sync in disguise
MAX_RUNS_LOOKBACK_HOURS = 90 * 24  # 90 days of runs re-read on every sync is already a lot
MAX_REQUEST_TIMEOUT = 3600
MAX_RATE_LIMIT_WAIT = 24 * 3600
SERVER_READ_LIMIT = 600  # documented GET requests per minute per key
URL_SETTINGS = ("data_url", "api_url")
TEXT_SETTINGS = ("api_key", "data_url", "api_url", "start_date", "user_agent")
REDACTED = "[redacted]"
NO_BATCH = (
    "batch_config: BATCH messages are not supported: a page's STATE would reach the target "
    "before the batch file holding its records, so a crash between the two could lose them; "
    "remove batch_config (records are sent as RECORD messages, each page before its STATE)"
)
MIN_SECRET_FORM = 8  # a shorter fragment of a key (an empty or tiny key) is not worth hiding


# Redaction: the one helper every message, log line and error goes through.


def secret_forms(key: str) -> list[str]:
    """Every form the key can take in text: raw, trimmed, escaped (repr, JSON), URL-quoted.

    Longest first, so that replacing one form never leaves a piece of a longer one behind.
    """
    core = "".join(c for c in key if c.isprintable() and not c.isspace())
    forms = {
        key,
        key.strip(),
        core,
        repr(key)[1:-1],
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        quote(key, safe=""),
        quote_plus(key),
        repr(key.encode("utf-8", "backslashreplace"))[2:-1],
    }
    return sorted((f for f in forms if len(f) >= MIN_SECRET_FORM), key=len, reverse=True)


@t.overload
def redact(text: str, api_key: t.Any) -> str: ...
@t.overload
def redact(text: bytes, api_key: t.Any) -> bytes: ...
def redact(text: str | bytes, api_key: t.Any) -> str | bytes:
    """`text` (or bytes) without the API key in any of its forms: for anything shown or logged."""
    if not isinstance(api_key, str) or not api_key:
        return text
    for form in secret_forms(api_key):
        if isinstance(text, bytes):
            for raw in {
                form.encode("utf-8", "backslashreplace"),
                form.encode("latin-1", "replace"),
            }:
                text = text.replace(raw, REDACTED.encode())
        else:
            text = text.replace(form, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """On every log handler: each line (message, arguments, traceback) without any key in play."""

    def __init__(self) -> None:
        super().__init__("")
        self.keys: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.keys:
            return True
        message = record.getMessage()
        clean = self._clean(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self._clean(record.exc_text)
        return True

    def _clean(self, text: str) -> str:
        for key in self.keys:
            text = redact(text, key)
        return text


LOG_FILTER = RedactingFilter()


def redact_logs(api_key: t.Any) -> None:
    """Keep `api_key` (the key of the tap being run) out of every log line, whoever writes it."""
    if isinstance(api_key, str) and api_key:
        LOG_FILTER.keys = {api_key}
    for logger in (
        logging.getLogger(),
        *(logging.getLogger(n) for n in logging.root.manager.loggerDict),
    ):
        for handler in getattr(logger, "handlers", ()):
            if LOG_FILTER not in handler.filters:
                handler.addFilter(LOG_FILTER)


# The checks


def config_problems(config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]) -> list[str]:
    """Checks JSON Schema cannot express (or says less clearly); each is `<setting>: <why>`.

    The integer ranges are read from `schema` (the tap's config schema), so they are stated once.
    No problem shows the value of a setting that could hold the key (or be mistaken for it).
    """
    problems = [NO_BATCH] if config.get("batch_config") is not None else []
    problems += [f"{name}: {why}" for name, why in _text_problems(config)]
    reported = {p.split(":", 1)[0] for p in problems}
    key = config.get("api_key")
    if "api_key" not in reported and isinstance(key, str) and not key.startswith(KEY_PREFIXES):
        problems.append(f"api_key: does not start with a known prefix ({', '.join(KEY_PREFIXES)})")
    start = config.get("start_date")
    if (
        "start_date" not in reported
        and start is not None
        and (why := instant_problem(start, _now()))
    ):
        problems.append(f"start_date: {start!r} {why}")
    for setting in URL_SETTINGS:
        url = config.get(setting)
        if setting not in reported and url is not None and (why := url_problem(url)):
            problems.append(f"{setting}: {why}")
    for setting, (low, high) in integer_ranges(schema).items():
        value = config.get(setting)
        if value is not None and (not _is_int(value) or not low <= value <= high):
            problems.append(f"{setting}: {_show(value)} is not an integer in {low}..{high}")
    known = list(schema.get("properties", {}))
    for name in config:
        if name not in known and name not in reported and (hint := did_you_mean(name, known)):
            problems.append(f"{name}: unknown setting{hint}")
    return problems


def config_warnings(config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]) -> list[str]:
    """Settings the tap ignores, with no known setting close enough to be a typo."""
    known = list(schema.get("properties", {}))
    return [
        f"config: ignoring unknown setting {name!r}"
        for name in config
        if name not in known and name != "batch_config" and not did_you_mean(name, known)
    ]


def _text_problems(config: t.Mapping[str, t.Any]) -> t.Iterator[tuple[str, str]]:
    """Text settings of the wrong type, or with a stray character; never shows the value."""
    for name in TEXT_SETTINGS:
        value = config.get(name)
        if value is None and name != "api_key":
            continue  # absent or null: the default
        if value is None:
            if name in config:  # absent: the schema's "required" says so
                yield name, "is a JSON null, not a string"
        elif not isinstance(value, str):
            yield name, f"is a JSON {kind_of(value)}, not a string"
        elif why := text_problem(value, spaces_inside=name in ("user_agent", "start_date")):
            yield name, why


def text_problem(value: str, *, spaces_inside: bool = False) -> str | None:
    """What makes `value` unusable in a header or URL as it stands, or None."""
    if not value:
        return "is empty"
    if value != value.strip():
        return "has leading or trailing whitespace (a stray newline or space from copy-paste?)"
    if not all(c.isprintable() for c in value):
        return "contains a control or invisible character (a line break, tab, NUL, BOM …)"
    if not value.isascii():
        return "contains non-ASCII characters, which cannot be sent in an HTTP header or URL"
    if " " in value and not spaces_inside:
        return "contains a space"
    return None


def integer_ranges(schema: t.Mapping[str, t.Any]) -> dict[str, tuple[int, int]]:
    """setting -> (minimum, maximum) of every bounded integer setting of a config schema."""
    ranges = {}
    for name, prop in schema.get("properties", {}).items():
        kinds = prop.get("type", [])
        if "integer" in kinds and "minimum" in prop and "maximum" in prop:
            ranges[name] = (prop["minimum"], prop["maximum"])
    return ranges


def url_problem(url: t.Any) -> str | None:
    """Why `url` is unfit to receive the key, or None.

    Read with urllib3's parser, the one `requests` connects with, and with the standard
    library's; both must see the same scheme, host and port. Anything one of them could read
    another way is refused: user-info, backslashes, control characters, a query or fragment.
    """
    if not isinstance(url, str):
        return f"is a JSON {kind_of(url)}, not a URL"
    if why := text_problem(url):
        return why
    shown = repr(url)
    if "\\" in url:
        return f"{shown} contains a backslash, which URL parsers read differently"
    try:
        std = urlsplit(url)
        std_port = std.port
    except ValueError:
        return f"{shown} is not a valid URL"
    if std.scheme.lower() not in ("http", "https") or not std.netloc:
        return f"{shown} is not an http(s) URL"
    if "@" in std.netloc or "@" in url.split("?", 1)[0].split("#", 1)[0]:
        return "contains user-info (user@host) or an '@'; only api_key may hold credentials"
    if std.query or std.fragment or "?" in url or "#" in url:
        return f"{shown} has a query or fragment; a base URL has neither"
    origin = origin_of(url)
    std_origin = (
        std.scheme.lower(),
        (std.hostname or "").lower(),
        std_port or DEFAULT_PORTS.get(std.scheme.lower(), 0),
    )
    if origin is None or origin[1].strip("[]") != std_origin[1] or origin[2] != std_origin[2]:
        return f"{shown} is read differently by different URL parsers; write it plainly"
    if origin[0] == "http" and not is_loopback(std_origin[1]):
        return f"{shown} is plain http to a remote host; use https so the key is not sent in clear"
    return None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where plain http is allowed)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_origins(config: t.Mapping[str, t.Any]) -> frozenset[Origin]:
    """The (scheme, host, port) of data_url and api_url: the only places the key may go."""
    urls = (config.get("data_url") or DEFAULT_DATA_URL, config.get("api_url") or DEFAULT_API_URL)
    return frozenset(o for u in urls if isinstance(u, str) and (o := origin_of(u)))


def _show(value: t.Any) -> str:
    """A value for a message: short scalars as they are, anything else by its JSON type."""
    if isinstance(value, (int, float, bool)) or value is None:
        text = repr(value)
        return text if len(text) <= 24 else f"a {len(text)}-digit number"
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return f"a JSON {kind_of(value)}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_int(value: t.Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def schema_problems(config: t.Mapping[str, t.Any], schema: t.Mapping[str, t.Any]) -> list[str]:
    """JSON Schema validation, each error as `<setting>: <why>`, never echoing a value."""
    validator = validator_for(schema)(schema)
    problems = []
    for error in validator.iter_errors(dict(config)):
        if error.validator == "required" and not error.absolute_path:
            problems += [
                f"{name}: is required" for name in error.validator_value if name not in config
            ]
            continue
        path = [str(p) for p in error.absolute_path]
        name = path[0] if path else "config"
        where = f" at {'/'.join(map(repr, path[1:]))}" if len(path) > 1 else ""
        problems.append(f"{name}:{where} {_why(error)}")
    return problems


def _why(error: t.Any) -> str:
    rule, expected = error.validator, error.validator_value
    if rule == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        return f"is a JSON {kind_of(error.instance)}, not {' or '.join(kinds)}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if rule in bounds:
        return f"must be {bounds[rule]} {expected}"
    if rule == "enum":
        return f"must be one of {', '.join(map(repr, expected))}"
    return f"does not satisfy the schema's '{rule}' rule"


class CheckedSettings(PluginBase):
    """Plugin mixin (an SDK seam: `_validate_config` is private): one clear line per problem.

    Replaces the SDK's validation (same schema, builtin settings appended the same way) so
    that no line echoes a value, which could be the key. tests/unit/test_unit_sdk_seams.py pins
    the SDK method.
    """

    own_settings: t.ClassVar[frozenset[str]] = frozenset()  # the tap's settings, not the SDK's

    def extra_config_problems(self) -> list[str]:
        """More `<setting>: <why>` lines, from other mixins (lifecycle.py)."""
        return []

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings before any request; one clear line per problem.

        A setting given as null means its default (as if absent), except the required key;
        the defaults of the tap's own settings are filled in (the SDK leaves them out).
        """
        own = {
            name: prop
            for name, prop in self.config_jsonschema.get("properties", {}).items()
            if name in self.own_settings
        }
        given = {
            k: v for k, v in self._config.items() if v is not None or k == "api_key" or k not in own
        }
        defaults = {name: prop["default"] for name, prop in own.items() if "default" in prop}
        self._config = {**defaults, **given}
        key = self.config.get("api_key")
        redact_logs(key)
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        errors = config_problems(self.config, schema) + self.extra_config_problems()
        reported = {e.split(":", 1)[0] for e in errors}
        for problem in schema_problems(self.config, schema):
            if (name := problem.split(":", 1)[0]) not in reported:  # one line per setting
                reported.add(name)
                errors.append(problem)
        errors = [redact(" ".join(e.split()), key) for e in errors]
        for warning in config_warnings(self.config, schema):
            self.logger.warning("%s", warning)
        if errors and raise_errors:
            msg = f"Invalid {self.name} configuration"
            raise ConfigValidationError(msg, errors=errors, schema=schema)
        return errors
