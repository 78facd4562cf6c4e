"""Write the Meltano plugin definition of the tap (as Meltano Hub lists it) from `--about`.

    make plugin-definition   # or: .venv/bin/python scripts/hub_definition.py > plugins/...

Capabilities and settings come from `tap-apixx --about --format=json`, so the SDK's own
settings (stream maps, flattening, faker; batch if advertised) are declared exactly as the tap advertises
them; tests/tap/test_tap_plugin_definition.py fails when the file and `--about` disagree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

TAP = str(Path(sys.executable).with_name("tap-apixx"))
HEADER = """\
# Meltano plugin definition of tap-apixx, in the form Meltano Hub lists plugins.
# Add it to any Meltano project (no Hub access needed):
#   meltano add --plugin-type extractor --from-ref plugins/extractors/tap-apixx--apixx.yml tap-apixx
# Generated from `tap-apixx --about --format=json` by scripts/hub_definition.py: do not edit.
"""
PLUGIN = {
    "name": "tap-apixx",
    "variant": "apixx",
    "namespace": "tap_apixx",
    "label": "APIXX",
    "description": "Canonical commerce data layer (orders, customers, products, ...) and ops "
    "API (flows, runs, connectors) of APIXX",
    "pip_url": "tap-apixx",
    "executable": "tap-apixx",
    "maintenance_status": "active",
    "keywords": ["api", "meltano_sdk"],
    # `meltano invoke tap-apixx:check`: the plugin's settings reach it as TAP_APIXX_* variables
    "commands": {
        "check": {
            "executable": "tap-apixx-check",
            "description": "Check the key, both APIs and the data API's paging semantics "
            "(at most 30 requests)"},
        # the warehouse readers are the [reconcile] extra: without it the command says so in
        # one line (pip_url: tap-apixx[reconcile])
        "reconcile": {
            "executable": "tap-apixx-reconcile",
            "args": "--target target-duckdb",
            "description": "Compare the DuckDB warehouse of target-duckdb with APIXX (gone, missing, "
            "stale rows); add --mark-deleted to act. Needs pip_url: tap-apixx[reconcile]"},
        "reconcile-postgres": {
            "executable": "tap-apixx-reconcile",
            "args": "--target target-postgres",
            "description": "The same for the PostgreSQL warehouse of target-postgres. Needs "
            "pip_url: tap-apixx[reconcile]"},
    },
}
SCALAR_KINDS = {"integer": "integer", "number": "decimal", "boolean": "boolean",
                "array": "array", "object": "object"}


def json_types(schema: dict[str, Any]) -> set[str]:
    """The non-null JSON types a property accepts, through anyOf/oneOf."""
    found: set[str] = set()
    declared = schema.get("type", [])
    found.update([declared] if isinstance(declared, str) else declared)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        if isinstance(branch, dict):
            found |= json_types(branch)
    return found - {"null"}


def kind_of(schema: dict[str, Any]) -> str:
    types = json_types(schema)
    if "enum" in schema:
        return "options"
    if types == {"string"} and schema.get("format") == "date-time":
        return "date_iso8601"
    if len(types - {"array", "object"}) > 1 and not types & {"array", "object"}:
        return "string"  # a scalar of several types (faker_config.seed): given as text
    for json_type in ("array", "object", "integer", "number", "boolean"):
        if json_type in types:
            return SCALAR_KINDS[json_type]
    return "string"


def is_group(schema: dict[str, Any]) -> bool:
    """An object of named settings (batch_config), not a map keyed by the user (stream_maps)."""
    return bool(schema.get("properties")) and not isinstance(
        schema.get("additionalProperties"), dict)


def setting(name: str, schema: dict[str, Any], secret: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "label": schema.get("title", name),
                             "kind": kind_of(schema)}
    if "description" in schema:
        entry["description"] = schema["description"]
    if "default" in schema:
        entry["value"] = schema["default"]
    if entry["kind"] == "options":
        entry["options"] = [{"label": str(v), "value": v} for v in schema["enum"]]
    if secret or schema.get("secret"):
        entry["sensitive"] = True
    return entry


def settings_of(properties: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Hub style: nested groups become dotted names (batch_config.encoding.format)."""
    result: list[dict[str, Any]] = []
    for name, schema in properties.items():
        if is_group(schema):
            result += settings_of(schema["properties"], f"{prefix}{name}.")
        else:
            result.append(setting(prefix + name, schema))
    return result


def definition(about: dict[str, Any]) -> dict[str, Any]:
    return {
        **PLUGIN,
        "capabilities": list(about["capabilities"]),
        "supported_python_versions": list(about["supported_python_versions"]),
        "settings_group_validation": [list(about["settings"].get("required", []))],
        "settings": settings_of(about["settings"]["properties"]),
    }


def main() -> None:
    about = json.loads(subprocess.run([TAP, "--about", "--format=json"], check=True,
                                      capture_output=True, text=True).stdout)
    body = yaml.safe_dump(definition(about), sort_keys=False, allow_unicode=True, width=100)
    sys.stdout.write(HEADER + body)


if __name__ == "__main__":
    main()
