"""The Meltano plugin definition file says what `tap-apixx --about` says: capabilities, settings
(the SDK's own included), defaults, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.helpers.tap import ROOT, TAP

DEFINITION = ROOT / "plugins" / "extractors" / "tap-apixx--apixx.yml"
KINDS = {"string", "integer", "boolean", "decimal", "date_iso8601", "array", "object", "options"}
# the SDK settings each advertised capability brings
CAPABILITY_SETTINGS = {
    "stream-maps": {"stream_maps", "stream_map_config"},
    "schema-flattening": {"flattening_enabled", "flattening_max_depth"},
    "batch": {"batch_config.encoding.format", "batch_config.encoding.compression",
              "batch_config.storage.root", "batch_config.storage.prefix"},
}


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    shown = subprocess.run([TAP, "--about", "--format=json"], capture_output=True, text=True,
                           check=True, timeout=120)
    return json.loads(shown.stdout)


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return yaml.safe_load(DEFINITION.read_text())


def leaves(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Settings as Meltano names them: an object of named settings becomes dotted names, a
    map keyed by the user (stream_maps: additionalProperties is a schema) stays one object."""
    found: dict[str, dict[str, Any]] = {}
    for name, schema in properties.items():
        if schema.get("properties") and not isinstance(schema.get("additionalProperties"), dict):
            found |= leaves(schema["properties"], f"{prefix}{name}.")
        else:
            found[prefix + name] = schema
    return found


def types_of(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    found = {declared} if isinstance(declared, str) else set(declared)
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        if isinstance(branch, dict):
            found |= types_of(branch)
    return found - {"null"}


def test_identity(definition: dict, about: dict) -> None:
    assert definition["name"] == about["name"] == "tap-apixx"
    assert definition["namespace"] == "tap_apixx"
    assert definition["executable"] == "tap-apixx"
    assert definition["pip_url"] == "tap-apixx"
    assert definition["variant"] == "apixx" and DEFINITION.stem == "tap-apixx--apixx"
    assert definition["supported_python_versions"] == about["supported_python_versions"]


def test_capabilities_are_exactly_those_of_about(definition: dict, about: dict) -> None:
    assert definition["capabilities"] == about["capabilities"]


def test_settings_are_exactly_those_of_about(definition: dict, about: dict) -> None:
    expected = leaves(about["settings"]["properties"])
    declared = {entry["name"]: entry for entry in definition["settings"]}
    assert len(declared) == len(definition["settings"]), "a setting is declared twice"
    assert list(declared) == list(expected)
    for name, schema in expected.items():
        entry = declared[name]
        assert entry["label"] == schema.get("title", name), name
        assert entry.get("description") == schema.get("description"), name
        assert entry.get("value") == schema.get("default"), name
        assert entry.get("sensitive", False) == schema.get("secret", False), name
        assert entry["kind"] in KINDS, name
        types = types_of(schema)
        if "enum" in schema:
            assert [o["value"] for o in entry["options"]] == schema["enum"], name
        elif schema.get("format") == "date-time":
            assert entry["kind"] == "date_iso8601", name
        elif types in ({"integer"}, {"boolean"}, {"object"}, {"string"}):
            assert entry["kind"] == types.pop(), name
    assert definition["settings_group_validation"] == [about["settings"]["required"]]


def test_the_sdk_settings_of_each_capability_are_declared(definition: dict, about: dict) -> None:
    names = {entry["name"] for entry in definition["settings"]}
    for capability, settings in CAPABILITY_SETTINGS.items():
        if capability in about["capabilities"]:
            assert settings <= names, capability


def test_the_file_is_what_the_generator_writes_now() -> None:
    generated = subprocess.run([sys.executable, str(ROOT / "scripts" / "hub_definition.py")],
                               capture_output=True, text=True, check=True, timeout=120).stdout
    assert generated == DEFINITION.read_text(), (
        "regenerate it with `make plugin-definition`")


def test_the_secret_is_marked_sensitive(definition: dict) -> None:
    [api_key] = [e for e in definition["settings"] if e["name"] == "api_key"]
    assert api_key["sensitive"] is True


def test_it_lives_where_meltano_lock_files_do_not_hide_it() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", str(DEFINITION)], cwd=ROOT, check=False)
    assert ignored.returncode == 1, f"{DEFINITION} is git-ignored"
