"""`apixx-emulator`: serve the local APIXX on a port, with every behaviour set by flags."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from .entities import ENTITY_NAMES
from .models import Settings
from .models.datasets import HISTORY_DAYS, MAX_RECORDS_PER_ENTITY
from .models.keys import DEFAULT_KEYS
from .models.ratelimit import MAX_RATE_LIMIT
from .timestamps import CURSOR_MODES, PRECISIONS, SINCE_MODES

SHUTDOWN_GRACE_SECONDS = 2  # on SIGTERM, requests still running after this are cancelled
EPILOG = """built-in keys (used when --keys-file is not given):
""" + "\n".join(f"  {k['key']:<32} tenant={k['tenant']:<7} scopes={' '.join(k['scopes'])}" for k in DEFAULT_KEYS) + """

control plane (no key, loopback only; see docs/emulator.md):
  data:     POST /_emulator/reset (also switches cursor_mode, since_mode, timestamp_precision), POST /_emulator/churn, GET /_emulator/records/{entity}?tenant=&env=
  faults:   POST|GET|DELETE /_emulator/faults, POST|GET|DELETE /_emulator/bad-data, POST /_emulator/limits
  requests: GET|DELETE /_emulator/stats, GET /_emulator/health
  ops:      GET /_emulator/time, POST /_emulator/time/advance, GET /_emulator/ops/{flows|runs|connectors},
            POST /_emulator/ops/connectors/{id}/degrade|restore, POST /_emulator/ops/next-run
  webhooks: POST|GET /_emulator/webhooks, DELETE /_emulator/webhooks/{id},
            GET /_emulator/webhooks/deliveries, POST /_emulator/webhooks/flush, POST /_emulator/webhooks/test
"""


def bounded(lo: float, hi: float, kind: type = int) -> Callable[[str], Any]:
    """An argparse type: a finite `kind` within lo..hi, or one clear usage error."""

    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or not lo <= number <= hi:
            what, span = ("an integer", f"{lo:,}..{hi:,}") if kind is int else ("a number", f"{lo:g}..{hi:g}")
            raise argparse.ArgumentTypeError(f"must be {what} within {span}, got {value!r}")
        return number

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


positive = bounded(1, MAX_RATE_LIMIT)
records = bounded(1, MAX_RECORDS_PER_ENTITY)


def iso_date(value: str) -> int:
    """An argparse type: YYYY-MM-DD as milliseconds since the epoch at midnight UTC."""
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp() * 1000)


def entity_count(value: str) -> tuple[str, int]:
    entity, sep, count = value.partition("=")
    if not sep or entity not in ENTITY_NAMES:
        raise argparse.ArgumentTypeError(f"expected ENTITY=N with a canonical entity, got {value!r}")
    return entity, records(count)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="apixx-emulator", description="A faithful local APIXX API for tests and demos.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=bounded(0, 65535), default=8765, help="port to listen on (default: 8765; 0 picks a free one)")
    p.add_argument("--seed", type=bounded(-(2**63), 2**63 - 1), default=42, help="seed for the generated data (default: 42)")
    p.add_argument("--records-per-entity", type=records, default=2000,
                   help=f"records generated per entity, tenant and environment (default: 2000, at most {MAX_RECORDS_PER_ENTITY:,})")
    p.add_argument("--records-for", action="append", default=[], type=entity_count, metavar="ENTITY=N",
                   help="generate N records of ENTITY instead of --records-per-entity (repeatable)")
    p.add_argument("--cursor-mode", choices=CURSOR_MODES, default="exclusive",
                   help="how `cursor` compares with updated_at: exclusive '>' (default) or inclusive '>='")
    p.add_argument("--since-mode", choices=SINCE_MODES, default="inclusive",
                   help="how `updated_since` compares with updated_at: inclusive '>=' (default) or exclusive '>'")
    p.add_argument("--timestamp-precision", choices=tuple(PRECISIONS), default="ms",
                   help="updated_at in milliseconds with a Z, e.g. 2026-07-18T10:00:00.123Z (ms, default), "
                        "or in microseconds with an offset, e.g. 2026-07-18T10:00:00.123456+00:00 (us)")
    p.add_argument("--history-days", type=bounded(1, 3650), default=HISTORY_DAYS,
                   help=f"days of generated history, up to midnight UTC today (default: {HISTORY_DAYS})")
    p.add_argument("--history-start", type=iso_date, metavar="YYYY-MM-DD",
                   help="start the generated history on this day instead, gaps unscaled (as emulators did "
                        "before the history moved with the day; for old fixtures)")
    p.add_argument("--max-tie-size", type=records, default=1000,
                   help="largest group of records generated with one shared updated_at (default: 1000)")
    p.add_argument("--keys-file", help='JSON list of {"key", "tenant", "scopes"} replacing the built-in keys')
    p.add_argument("--read-limit", type=positive, default=600, help="GET requests per key per minute (default: 600)")
    p.add_argument("--write-limit", type=positive, default=120, help="POST/PATCH/DELETE per key per minute (default: 120)")
    p.add_argument("--trigger-limit", type=positive, default=60, help="POST /flows/{id}/trigger per key per minute (default: 60)")
    p.add_argument("--rate-window-seconds", type=bounded(0.01, 86400, float), default=60.0,
                   help="length of the sliding rate-limit window (default: 60, as documented; shorter for quick tests)")
    p.add_argument("--webhook", action="append", default=[], metavar="URL=SECRET",
                   help="subscribe URL to every event, signing with SECRET (repeatable)")
    p.add_argument("--preload", action="append", default=None, metavar="TENANT/ENV",
                   help="generate this dataset before serving (repeatable; default: acme/live)")
    p.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")
    return p


def load_keys(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            keys = json.load(fh)
    except (OSError, ValueError) as err:
        raise SystemExit(f"apixx-emulator: error: cannot read --keys-file {path}: {err}") from None
    if not isinstance(keys, list) or not all(isinstance(k, dict) and "key" in k and "tenant" in k for k in keys):
        raise SystemExit(f'apixx-emulator: error: --keys-file {path} must be a JSON list of {{"key", "tenant", "scopes"}}')
    return keys


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings(seed=args.seed, records_per_entity=args.records_per_entity, cursor_mode=args.cursor_mode,
                        since_mode=args.since_mode, timestamp_precision=args.timestamp_precision,
                        max_tie_size=args.max_tie_size, read_limit=args.read_limit, write_limit=args.write_limit,
                        trigger_limit=args.trigger_limit, rate_window_seconds=args.rate_window_seconds,
                        records_for=dict(args.records_for), history_days=args.history_days,
                        history_start_ms=args.history_start)
    if args.keys_file:
        settings.keys = load_keys(args.keys_file)
    for spec in args.webhook:
        url, sep, secret = spec.rpartition("=")
        if not sep or not url.startswith(("http://", "https://")) or not secret:
            raise SystemExit(f"apixx-emulator: error: --webhook must look like URL=SECRET, got {spec!r}")
        settings.webhooks.append({"url": url, "secret": secret, "events": ["*"]})
    return settings


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        raise SystemExit(f"apixx-emulator: error: cannot listen on {host}:{port} ({err.strerror}); "
                         "is another emulator running? Pick another port with --port.") from None
    sock.listen(2048)
    return sock


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from .app import create_app

    args = parser().parse_args(argv)
    try:
        settings = settings_from(args)
        app = create_app(settings)
    except ValueError as err:
        raise SystemExit(f"apixx-emulator: error: {err}") from None
    sock = bind_socket(args.host, args.port)
    started = time.perf_counter()
    for spec in args.preload or ["acme/live"]:
        tenant, _, env = spec.partition("/")
        app.state.store.dataset(tenant, env or "live")
    host, port = sock.getsockname()[:2]
    print(f"apixx-emulator: serving on http://{host}:{port} (data ready in {time.perf_counter() - started:.1f}s; "
          f"data API /api/public/data, ops API /v1, control /_emulator)", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False, lifespan="on", timeout_keep_alive=30,
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
