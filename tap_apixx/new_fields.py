"""The `new_fields` setting: what to do with a field the API sends that the schema does not know.

- `warn` (default): drop it, with one warning per stream and field;
- `load`: add it to the stream's schema as a nullable property and emit an updated SCHEMA
  before the first record that has it, so that the loader adds the column (older rows stay
  NULL). Its type is inferred from the values of the page where it first appears: one JSON
  type for all of them gives that type (integers and decimals together give `number`;
  objects and arrays become JSON columns); mixed types give a string column holding each
  value as JSON text. A field that is only ever null waits for its first value. Strings stay
  strings (no guessing of dates), so a later value can never break the column's type;
- `fail`: stop with one line naming the stream and the field.
"""

from __future__ import annotations

import typing as t

from tap_apixx.errors import TapApixxError

if t.TYPE_CHECKING:
    from collections.abc import Iterable

NEW_FIELDS_POLICIES = ("warn", "load", "fail")
DEFAULT_NEW_FIELDS = "warn"
NEW_FIELDS_KEY = "new_fields"  # stream state: the properties `load` added, with their types
JSON_TEXT_NOTE = "Added by tap-apixx (new_fields: load): values of mixed types, as JSON text."
INFERRED_NOTE = "Added by tap-apixx (new_fields: load): type inferred from the values seen."
KIND_OF: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}


class NewFieldError(TapApixxError):
    """new_fields is `fail` and the API sent a field the schema does not know."""


def new_field_error(stream: str, name: str, request_id: str | None = None) -> NewFieldError:
    where = f" (request_id={request_id})" if request_id else ""
    return NewFieldError(
        f"{stream}: the API sent field '{name}', unknown to the schema{where}; stopping because "
        "new_fields is 'fail' (set it to 'load' to add the column, or 'warn' to ignore the field)."
    )


def infer_property(values: Iterable[t.Any]) -> dict[str, t.Any] | None:
    """A nullable JSON Schema property for these values; None when all are null (wait)."""
    kinds = {KIND_OF.get(type(value), "unknown") for value in values if value is not None}
    if not kinds:
        return None
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    if len(kinds) == 1 and "unknown" not in kinds:
        return {"type": [kinds.pop(), "null"], "description": INFERRED_NOTE}
    return {"type": ["string", "null"], "description": JSON_TEXT_NOTE}


def is_json_text(prop: dict[str, t.Any]) -> bool:
    """A property added for values of mixed types: each value is sent as JSON text."""
    return prop.get("description") == JSON_TEXT_NOTE
