"""`tap-apixx-reconcile`: compare the warehouse with APIXX, with the tap's own configuration."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import sys
import typing as t

import click
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError

from tap_apixx.companion import build_tap, fail
from tap_apixx.errors import TapApixxError
from tap_apixx.reconcile import report
from tap_apixx.reconcile.errors import ReconcileError
from tap_apixx.reconcile.run import Actions, Reconcile
from tap_apixx.reconcile.targets import resolve
from tap_apixx.streams import CANONICAL_ENTITIES

NAME = "tap-apixx-reconcile"
EXIT_CLEAN, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


@click.command(
    name=NAME,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit status: 0 no drift, 1 drift (left after any action), 2 error. "
    "See docs/reconcile.md.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="FILE",
    help="The tap's config file (repeatable; later files win). TAP_APIXX_* "
    "environment variables are read too, as the tap reads them.",
)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False),
    help="A Singer catalog: only its selected entities are reconciled.",
)
@click.option("--entities", help="Comma-separated entities to reconcile (default: all selected).")
@click.option(
    "--duckdb", "duckdb_path", metavar="PATH", help="The DuckDB file target-duckdb writes."
)
@click.option("--postgres-url", metavar="URL", help="postgresql://user:password@host:port/database")
@click.option(
    "--target",
    metavar="LOADER",
    help="Read the warehouse location from this Meltano loader's settings "
    "(e.g. target-duckdb, target-postgres).",
)
@click.option(
    "--schema",
    help="Schema of the loaded tables (default: the loader's default_target_schema, else apixx).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--mark-deleted",
    is_flag=True,
    help="Set _sdc_deleted_at on rows gone from APIXX (adds the column if missing).",
)
@click.option(
    "--hard-delete", is_flag=True, help="Delete rows gone from APIXX instead of marking them."
)
@click.option(
    "--no-confirm",
    is_flag=True,
    help="Act without first confirming each gone row with GET by id (one request each).",
)
def main(
    configs: tuple[str, ...],
    catalog: str | None,
    entities: str | None,
    duckdb_path: str | None,
    postgres_url: str | None,
    target: str | None,
    schema: str | None,
    as_json: bool,
    mark_deleted: bool,
    hard_delete: bool,
    no_confirm: bool,
) -> None:
    """Reconcile the warehouse with APIXX: rows gone from APIXX (deleted or merged), rows
    missing from the warehouse, and rows older than APIXX's, per entity."""
    _setup_logging()
    try:
        tap = build_tap(configs, ReconcileError)
        chosen = choose_entities(entities, catalog, os.environ.get(_select_env()))
        spec = resolve(duckdb_path, postgres_url, target, schema)
        actions = Actions(
            mark_deleted=mark_deleted, hard_delete=hard_delete, confirm=not no_confirm
        )
        outcome = Reconcile(tap, spec, chosen, actions).run()
    except ConfigValidationError as exc:
        _fail(*[f"config: {e}" for e in exc.errors] or [str(exc)])
    except (TapApixxError, FatalAPIError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
    except Exception as exc:  # noqa: BLE001  (a driver error, say: one line, never a traceback)
        _fail(
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
    click.echo(report.as_json(outcome, actions) if as_json else report.as_table(outcome, actions))
    sys.exit(EXIT_DRIFT if outcome.remaining_drift else EXIT_CLEAN)


def choose_entities(option: str | None, catalog: str | None, select: str | None) -> list[str]:
    """The catalog's (or Meltano's `select`) entities, narrowed by --entities, in the tap's order."""
    chosen = list(CANONICAL_ENTITIES)
    if catalog:
        chosen = [e for e in chosen if e in catalog_selection(catalog)]
    elif select:
        chosen = [e for e in chosen if select_matches(e, select)]
    if option:
        wanted = [w.strip() for w in option.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in CANONICAL_ENTITIES]
        if unknown:
            raise ReconcileError(
                f"--entities: unknown entit{'y' if len(unknown) == 1 else 'ies'} "
                f"{', '.join(unknown)}; known: {', '.join(CANONICAL_ENTITIES)}"
            )
        chosen = [e for e in chosen if e in wanted]
    if not chosen:
        raise ReconcileError("no entity to reconcile: none is selected (see --entities, --catalog)")
    return chosen


def catalog_selection(path: str) -> set[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            streams = json.load(handle).get("streams") or []
    except (OSError, ValueError, AttributeError) as exc:
        raise ReconcileError(f"cannot read catalog {path}: {exc}") from None
    selected = set()
    for stream in streams:
        top: dict[str, t.Any] = next(
            (m.get("metadata", {}) for m in stream.get("metadata", []) if not m.get("breadcrumb")),
            {},
        )
        if top.get("selected", top.get("selected-by-default", False)):
            selected.add(stream.get("tap_stream_id") or stream.get("stream"))
    return selected


def select_matches(entity: str, select: str) -> bool:
    """Meltano's `select` rules (`entity.attribute`, `!` excludes) at the entity level."""
    try:
        rules = [str(r) for r in json.loads(select)]
    except (ValueError, TypeError):
        rules = [r.strip() for r in select.split(",") if r.strip()]
    included = excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        stream, _, attribute = rule.lstrip("!").partition(".")
        if not fnmatch.fnmatchcase(entity, stream):
            continue
        if negate and attribute in ("", "*"):
            excluded = True
        elif not negate:
            included = True
    return included and not excluded


def _select_env() -> str:
    """Meltano passes the extractor's `select` extra as <PLUGIN>__SELECT."""
    name = os.environ.get("MELTANO_EXTRACTOR_NAME") or "tap-apixx"
    return name.upper().replace("-", "_") + "__SELECT"


def _setup_logging() -> None:
    """Progress of reconcile itself; of the tap and the SDK, warnings only (retries, throttling)."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(message)s"
    )
    logging.getLogger(NAME).setLevel(logging.INFO)


def _fail(*lines: str) -> t.NoReturn:
    fail(NAME, EXIT_ERROR, *lines)


if __name__ == "__main__":
    main()
