"""The apixx-webhooks command: receive APIXX webhooks, list stored events, sign a test body."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from apixx_webhooks.server import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_DEADLINE,
    ReceiverConfig,
    WebhookServer,
)
from apixx_webhooks.store import (
    DEFAULT_DB_PATH,
    EventStore,
    StoredEvent,
    StoreError,
    parse_since,
)
from apixx_webhooks.sync_runner import DEFAULT_DEBOUNCE_SECONDS, KNOWN_EVENTS, SyncTrigger
from apixx_webhooks.verify import sign

log = logging.getLogger("apixx_webhooks")
DEFAULT_SECRET_ENV = "APIXX_WEBHOOK_SECRET"
TABLE_COLUMNS = ("received_at", "type", "delivery_id", "event_id")


class CliError(Exception):
    """A problem the user can fix, reported as one line without a traceback."""


def _read_secret(env_name: str) -> str:
    secret = os.environ.get(env_name, "")
    if not secret.strip():
        raise CliError(f"environment variable {env_name} (the webhook secret) is unset or empty")
    return secret


def _open_store(path: str, read_only: bool = False) -> EventStore:
    try:
        return EventStore(path, read_only=read_only)
    except StoreError as exc:
        raise CliError(str(exc)) from None


def _build_trigger(args: argparse.Namespace, store: EventStore) -> SyncTrigger | None:
    if not args.run:
        return None
    for event in sorted(set(args.on) - KNOWN_EVENTS - {"*"}):
        log.warning("--on %s is not a documented APIXX event; it will only match if sent", event)
    try:
        return SyncTrigger(args.run, args.on, debounce_seconds=args.debounce_seconds, pending=store)
    except ValueError as exc:
        raise CliError(f"--run {args.run!r}: {exc}") from None
    except StoreError as exc:
        raise CliError(str(exc)) from None


def _bind(host: str, port: int, config: ReceiverConfig) -> WebhookServer:
    try:
        return WebhookServer((host, port), config)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CliError(f"port {port} on {host} is already in use") from None
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM shuts down like Ctrl-C: finish, close, exit 0


def cmd_serve(args: argparse.Namespace) -> int:
    secret = _read_secret(args.secret_env)
    if bool(args.on) != bool(args.run):
        raise CliError("--on and --run go together: --on EVENT [--on EVENT ...] --run COMMAND")
    store = _open_store(args.db)
    trigger = None
    try:
        trigger = _build_trigger(args, store)
        config = ReceiverConfig(
            secret=secret,
            store=store,
            max_body=args.max_body,
            trigger=trigger,
            max_connections=args.max_connections,
            request_deadline=args.request_deadline,
        )
        server = _bind(args.host, args.port, config)
    except CliError:
        if trigger:
            trigger.close()
        store.close()
        raise
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:  # from here on, SIGTERM (as KeyboardInterrupt) must land in this try
        log.info("listening on %s (db %s, secret from $%s)", server.url, args.db, args.secret_env)
        if trigger:
            log.info("on %s: run %s", ", ".join(sorted(trigger.events)), " ".join(trigger.argv))
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        server.server_close()
        if trigger:
            trigger.close()
        store.close()
    return 0


def _event_json(event: StoredEvent) -> dict:
    try:
        body: object = json.loads(event.body)
    except ValueError:
        body = event.body.decode("utf-8", "replace")
    return {
        "delivery_id": event.delivery_id,
        "event_id": event.event_id,
        "type": event.type,
        "created_at": event.created_at,
        "received_at": event.received_at,
        "body": body,
    }


def _print_table(events: list[StoredEvent]) -> None:
    rows = [TABLE_COLUMNS] + [tuple(str(getattr(e, c)) for c in TABLE_COLUMNS) for e in events]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if not events:
        print("(no matching events)")


def cmd_events(args: argparse.Namespace) -> int:
    try:
        since = parse_since(args.since) if args.since else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    store = _open_store(args.db, read_only=True)
    try:
        events = store.list_events(event_type=args.type, since=since, limit=args.limit)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps([_event_json(e) for e in events], indent=2))
    else:
        _print_table(events)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    secret = _read_secret(args.secret_env)
    try:
        with open(args.file, "rb") if args.file != "-" else sys.stdin.buffer as handle:
            body = handle.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    print(sign(secret, body, args.t))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number, not negative")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


class _HelpWithDefaults(argparse.HelpFormatter):
    """Appends "(default: X)" to options that have a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, [], False, argparse.SUPPRESS) or "%(default)" in text:
            return text
        if not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _add_serve(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="receive, verify and store webhook deliveries",
        description="Receive APIXX webhook deliveries: verify the signature, store each "
        "delivery once in SQLite, answer 200, and optionally run a sync command.",
        formatter_class=_HelpWithDefaults,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8787, help="port; 0 picks a free one")
    serve.add_argument(
        "--secret-env",
        default=DEFAULT_SECRET_ENV,
        metavar="NAME",
        help="name of the environment variable holding the signing secret",
    )
    serve.add_argument(
        "--db", default=DEFAULT_DB_PATH, metavar="PATH", help="SQLite file for stored events"
    )
    serve.add_argument(
        "--max-body",
        type=_positive_int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help="larger deliveries get 413",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="deliveries handled at once; more get 503 and are retried",
    )
    serve.add_argument(
        "--request-deadline",
        type=_positive_float,
        default=DEFAULT_REQUEST_DEADLINE,
        metavar="SECONDS",
        help="time for a whole request to arrive; slower clients get cut off",
    )
    serve.add_argument(
        "--on",
        action="append",
        default=[],
        metavar="EVENT",
        help="event type that triggers --run (repeatable; '*' for any)",
    )
    serve.add_argument(
        "--run",
        metavar="COMMAND",
        help="sync command, split like a shell command, run without a shell",
    )
    serve.add_argument(
        "--debounce-seconds",
        type=_non_negative_float,
        default=DEFAULT_DEBOUNCE_SECONDS,
        metavar="SECONDS",
        help="quiet time after the last matching event before the sync starts",
    )
    serve.set_defaults(func=cmd_serve)


def _add_events(sub: argparse._SubParsersAction) -> None:
    events = sub.add_parser(
        "events",
        help="list stored events",
        description="List stored webhook events, oldest first.",
        formatter_class=_HelpWithDefaults,
    )
    events.add_argument(
        "--db", default=DEFAULT_DB_PATH, metavar="PATH", help="SQLite file of stored events"
    )
    events.add_argument("--type", help="only this event type")
    events.add_argument("--since", help="only events received at or after this ISO time")
    events.add_argument(
        "--limit", type=_positive_int, default=100, help="the most recent N (listed oldest first)"
    )
    events.add_argument(
        "--format", choices=("table", "json"), default="table", help="json includes the parsed body"
    )
    events.set_defaults(func=cmd_events)


def _add_sign(sub: argparse._SubParsersAction) -> None:
    signer = sub.add_parser(
        "sign",
        help="print an X-Apixx-Signature header for a body",
        description="Print an X-Apixx-Signature header value for a body, "
        "to test a receiver by hand.",
        formatter_class=_HelpWithDefaults,
    )
    signer.add_argument("file", nargs="?", default="-", help="body file (default: stdin)")
    signer.add_argument(
        "--secret-env",
        default=DEFAULT_SECRET_ENV,
        metavar="NAME",
        help="name of the environment variable holding the signing secret",
    )
    signer.add_argument("--t", type=int, default=None, help="unix seconds (default: now)")
    signer.set_defaults(func=cmd_sign)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apixx-webhooks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_events(sub)
    _add_sign(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except CliError as exc:
        print(f"apixx-webhooks: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
