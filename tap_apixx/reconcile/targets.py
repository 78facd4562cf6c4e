"""Where the warehouse is: from --duckdb/--postgres-url, or from a Meltano loader's own settings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote as urlquote

from tap_apixx.reconcile.errors import ReconcileError
from tap_apixx.reconcile.warehouse import DuckDBWarehouse, PostgresWarehouse, Warehouse

DEFAULT_SCHEMA = "apixx"  # the tap's load_schema in meltano.yml, which both loaders use


def default_schema() -> str:
    """The extractor's load_schema under Meltano (the loaders' `$MELTANO_EXTRACT__LOAD_SCHEMA`,
    one per tenant), else apixx."""
    return os.environ.get("MELTANO_EXTRACT__LOAD_SCHEMA") or DEFAULT_SCHEMA


MELTANO_TIMEOUT = 180  # seconds for `meltano config print`, which starts Meltano once


@dataclass
class WarehouseSpec:
    """A warehouse to open, and the Meltano loader that fills it (for the re-sync command)."""

    kind: str  # "duckdb" | "postgres"
    location: str  # file path or connection URL
    schema: str
    loader: str

    def open(self) -> Warehouse:
        if self.kind == "duckdb":
            return DuckDBWarehouse(self.location, self.schema)
        return PostgresWarehouse(self.location, self.schema)


def resolve(
    duckdb: str | None, postgres_url: str | None, target: str | None, schema: str | None
) -> WarehouseSpec:
    """Explicit options win; else the Meltano loader `target`'s settings; else an error."""
    if duckdb and postgres_url:
        raise ReconcileError("give one warehouse: --duckdb or --postgres-url, not both")
    if duckdb:
        return WarehouseSpec(
            "duckdb", duckdb, schema or default_schema(), target or "target-duckdb"
        )
    if postgres_url:
        return WarehouseSpec(
            "postgres", postgres_url, schema or default_schema(), target or "target-postgres"
        )
    if target:
        return from_loader_settings(target, meltano_config(target), schema)
    raise ReconcileError(
        "say where the warehouse is: --duckdb PATH, --postgres-url URL, or "
        "--target <loader> inside a Meltano project (e.g. --target target-duckdb)"
    )


def from_loader_settings(
    loader: str, settings: dict[str, t.Any], schema: str | None
) -> WarehouseSpec:
    """A target-duckdb or target-postgres configuration, as `meltano config print` shows it."""
    schema = schema or settings.get("default_target_schema") or default_schema()
    if settings.get("filepath") or settings.get("path"):
        path = Path(str(settings.get("filepath") or settings.get("path")))
        if not path.is_absolute():
            path = project_root() / path
        return WarehouseSpec("duckdb", str(path), schema, loader)
    if settings.get("sqlalchemy_url"):
        return WarehouseSpec("postgres", str(settings["sqlalchemy_url"]), schema, loader)
    if settings.get("host") or settings.get("database"):
        return WarehouseSpec("postgres", postgres_url_of(settings), schema, loader)
    raise ReconcileError(
        f"{loader}: its settings name neither a DuckDB file (filepath) nor a "
        "PostgreSQL database (host, database or sqlalchemy_url)"
    )


def postgres_url_of(settings: dict[str, t.Any]) -> str:
    user = urlquote(str(settings.get("user") or ""), safe="")
    password = settings.get("password")
    auth = (
        f"{user}:{urlquote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    )
    host, port = settings.get("host") or "localhost", settings.get("port") or 5432
    url = (
        f"postgresql://{auth}{host}:{port}/{urlquote(str(settings.get('database') or 'postgres'))}"
    )
    if settings.get("ssl_enable"):
        url += f"?sslmode={settings.get('ssl_mode') or 'verify-full'}"
    return url


def project_root() -> Path:
    root = os.environ.get("MELTANO_PROJECT_ROOT")
    if root:
        return Path(root)
    if (Path.cwd() / "meltano.yml").is_file():
        return Path.cwd()
    raise ReconcileError(
        "--target needs a Meltano project: run from its folder, or through "
        "`meltano invoke tap-apixx:reconcile`; else pass --duckdb or --postgres-url"
    )


def meltano_config(loader: str) -> dict[str, t.Any]:
    """The loader's resolved settings (environment, env vars, .env and all) from Meltano 4."""
    command = [*meltano_command(), "config", "--unsafe", "print", loader, "--format=json"]
    try:
        proc = subprocess.run(
            command,
            cwd=project_root(),
            capture_output=True,
            text=True,
            timeout=MELTANO_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReconcileError(f"could not run `meltano config print {loader}`: {exc}") from None
    out = proc.stdout
    if proc.returncode != 0 or "{" not in out:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise ReconcileError(f"`meltano config print {loader}` failed: {why}")
    return json.loads(out[out.index("{") : out.rindex("}") + 1])


def meltano_command() -> list[str]:
    """How to run Meltano: on the PATH, or the very Meltano that invoked us (`meltano invoke`)."""
    found = shutil.which("meltano")
    if found:
        return [found]
    parent = Path(f"/proc/{os.getppid()}/cmdline")
    try:
        args = parent.read_bytes().decode().split("\0")
    except OSError:
        args = []
    for index, arg in enumerate(args):
        if Path(arg).name == "meltano" and Path(arg).exists():
            return args[: index + 1]
    raise ReconcileError(
        "--target needs the meltano command on the PATH (or pass --duckdb "
        "PATH / --postgres-url URL instead)"
    )
