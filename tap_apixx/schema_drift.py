"""Schema guarantee: every record the tap emits is valid against the SCHEMA it sent.

One rule for a value the schema does not allow (see docs/schema.md):

- coerced when that loses nothing: an integer sent as "12" or 12.0 becomes 12, a number sent
  as "12.5" becomes 12.5, a string field sent as a number or boolean becomes its JSON text
  (12345 -> "12345"); a warning once per stream and field says so;
- otherwise (e.g. "1234.50" for an integer, a malformed date-time, an object where a string
  belongs) the value becomes null, with a warning naming the stream, the field and the
  record's id; with `type_errors: fail` the sync stops instead, on one clear line;
- a field that may not be null (canonical_id, updated_at, ...) and cannot be coerced always
  stops the sync: nulling it would emit an invalid record.

Fields the schema does not know follow the `new_fields` setting (new_fields.py): dropped and
warned once (`warn`), added to the schema with an inferred type (`load`), or the end of the
sync (`fail`). The check runs per page and per
field with C-level iteration (`map`, `itemgetter`); only a field with a bad value on that page
is looked at record by record.
"""

from __future__ import annotations

import math
import re
import typing as t
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter, methodcaller

import jsonschema  # type: ignore[import-untyped]  # nested ops fields (the SDK imports it anyway)
import orjson

from tap_apixx.errors import TapApixxError
from tap_apixx.new_fields import DEFAULT_NEW_FIELDS, infer_property, is_json_text, new_field_error

if t.TYPE_CHECKING:
    import logging

TYPE_ERRORS = ("coerce", "fail")  # the values of the `type_errors` setting
DEFAULT_TYPE_ERRORS = "coerce"
MAX_NULLED_WARNINGS = 5  # per stream and field; the stream's summary counts the rest

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}
# a calendar date: each month's own last day (February 29th is checked for a leap year apart,
# `calendar_ok`), no year 0000; what jsonschema's format checker and the loaders' parsers
# (Python's datetime, PostgreSQL) all accept, as regular expressions: a match costs ~0.2 µs
DATE = (
    r"(?!0000)\d{4}-((0[13578]|1[02])-(0[1-9]|[12]\d|3[01])|(0[469]|11)-(0[1-9]|[12]\d|30)"
    r"|02-(0[1-9]|1\d|2\d))"
)
FORMATS: dict[str, re.Pattern[str]] = {
    "date-time": re.compile(  # no leap second: datetime refuses :60
        DATE + r"[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)\Z",
        re.ASCII,
    ),
    "date": re.compile(DATE + r"\Z", re.ASCII),
    "uuid": re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\Z", re.ASCII),
}
# The same formats over a page's values joined by newlines: one C call instead of one per value
# (a value holding a newline is caught by counting them, and then checked value by value)
# (groups made non-capturing: capturing costs a third of the time in a repetition)
PAGE_FORMATS: dict[re.Pattern[str], re.Pattern[str]] = {
    p: re.compile(
        r"(?:" + re.sub(r"\((?!\?)", "(?:", p.pattern.removesuffix(r"\Z")) + r"\n)*\Z", re.ASCII
    )
    for p in FORMATS.values()
}


def all_match(pattern: re.Pattern[str], strings: list[str]) -> bool:
    """True when every string matches `pattern` (a format of FORMATS) as a whole."""
    joined = "\n".join(strings) + "\n"
    if joined.count("\n") == len(strings):
        if PAGE_FORMATS[pattern].match(joined) is None:
            return False
        return pattern not in DATED or "-02-29" not in joined or all(map(calendar_ok, strings))
    return all(map(pattern.match, strings)) and (
        pattern not in DATED or all(map(calendar_ok, strings))
    )


DATED = frozenset((FORMATS["date-time"], FORMATS["date"]))  # their text starts with the date


def calendar_ok(text: str) -> bool:
    """False for February 29th of a year that is no leap year (the patterns allow every 29th)."""
    if text[4:10] != "-02-29":
        return True
    year = int(text[:4])
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


INTEGER_TEXT = re.compile(r"[+-]?\d{1,18}\Z", re.ASCII)
NUMBER_TEXT = re.compile(r"[+-]?\d{1,15}(\.\d{1,15})?\Z", re.ASCII)  # exact as a double
NULL = object()  # "this value cannot be coerced"


class SchemaViolationError(TapApixxError):
    """A value that can be neither coerced nor nulled (or `type_errors: fail`)."""


class _Missing:
    """An absent field: valid unless the schema lists it in `required` (the ops schemas do)."""

    def __repr__(self) -> str:
        return "nothing (the field was missing)"


MISSING = _Missing()


@dataclass(frozen=True)
class FieldRule:
    """What one property allows: exact Python types, a string format, typed object values."""

    name: str
    kinds: tuple[str, ...]  # its JSON types, in the schema's order
    types: frozenset[type]  # exact types of valid values (orjson builds only these)
    pattern: re.Pattern[str] | None  # the format a string must match
    values: FieldRule | None  # the rule of an object's values (additionalProperties)
    # nested `properties` of an object or `items` of an array (the ops schemas): whole-value check
    shape: t.Callable[[t.Any], bool] | None = None
    required: bool = False  # listed in the schema's `required`: an absent field is not valid

    @property
    def nullable(self) -> bool:
        return "null" in self.kinds

    def valid(self, value: t.Any) -> bool:
        if type(value) not in self.types:
            return False
        if type(value) is str and self.pattern is not None:
            return self.pattern.match(value) is not None and (
                self.pattern not in DATED or calendar_ok(value)
            )
        values = self.values  # an object's typed values, then (below) its nested shape
        if (
            type(value) is dict
            and values is not None
            and not all(map(values.valid, value.values()))
        ):
            return False
        if self.shape is not None and type(value) in (dict, list):
            return self.shape(value)
        return True

    def coerce(self, value: t.Any) -> t.Any:
        """The value, made valid without loss, or NULL when that cannot be done."""
        if type(value) is dict and self.values is not None and "object" in self.kinds:
            rule = self.values
            fixed = {k: v if rule.valid(v) else rule.coerce(v) for k, v in value.items()}
            if NULL in fixed.values():
                return NULL
            return fixed
        for kind in self.kinds:
            new = _coerce_to(kind, value)
            if new is not NULL and self.valid(new):
                return new
        return NULL


def _coerce_to(kind: str, value: t.Any) -> t.Any:
    if kind == "integer":
        if type(value) is str and INTEGER_TEXT.match(value.strip()):
            return int(value)
        if type(value) is float and math.isfinite(value) and value.is_integer():
            return int(value)
    elif kind == "number":
        if type(value) is str and NUMBER_TEXT.match(value.strip()):
            text = value.strip()
            return int(text) if INTEGER_TEXT.match(text) else float(text)
    elif kind == "string" and type(value) in (int, float, bool):
        return orjson.dumps(value).decode()  # the JSON text the API sent
    return NULL


def rule_for(name: str, prop: dict[str, t.Any], required: bool = False) -> FieldRule | None:
    """The rule of a property, or None when it allows any value (nothing to check)."""
    kinds = _types_of(prop)
    if not kinds:
        return None
    types = {kind for js in kinds for kind in JSON_TYPES[js]}
    if not required:
        types.add(_Missing)
    pattern = FORMATS.get(prop.get("format", "")) if "string" in kinds else None
    extra = prop.get("additionalProperties")
    values = rule_for(name, extra) if isinstance(extra, dict) and "object" in kinds else None
    shape = _shape_of(prop)
    return FieldRule(name, tuple(kinds), frozenset(types), pattern, values, shape, required)


def _shape_of(prop: dict[str, t.Any]) -> t.Callable[[t.Any], bool] | None:
    """A check of an object's nested properties or an array's items (types are checked apart)."""
    if not (prop.get("properties") or prop.get("items")):
        return None
    inner = {key: value for key, value in prop.items() if key != "type"}
    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return jsonschema.Draft7Validator(inner, format_checker=checker).is_valid


class SchemaDrift:
    """Makes a page of records valid against the stream's schema, in place (the rule above)."""

    def __init__(
        self,
        stream: str,
        properties: dict[str, t.Any],
        selected: frozenset[str],
        logger: logging.Logger,
        type_errors: str = DEFAULT_TYPE_ERRORS,
        checked_elsewhere: frozenset[str] = frozenset(),
        new_fields: str = DEFAULT_NEW_FIELDS,
        required: frozenset[str] = frozenset(),
    ) -> None:
        self.stream, self.properties, self.logger = stream, dict(properties), logger
        self.selected = selected
        self.known = frozenset(properties)
        self.fail = type_errors == "fail"
        self.checked_elsewhere = checked_elsewhere
        self.new_fields = new_fields
        self.required = required & selected  # a deselected field is never sent
        self.json_text = frozenset(n for n, p in properties.items() if is_json_text(p))
        self._build_rules()
        self._warned: set[tuple[str, str]] = set()
        self.nulled: dict[str, int] = {}  # field -> values nulled (for the summary)
        self.coerced: dict[str, int] = {}

    def _build_rules(self) -> None:
        rules = {
            name: rule_for(name, prop, name in self.required)
            for name, prop in self.properties.items()
            if name in self.selected and name not in self.checked_elsewhere
        }
        self.rules = {name: rule for name, rule in rules.items() if rule is not None}
        # fields with the same rule (all nullable integers, ...) are checked in one pass
        shapes: dict[tuple, list[str]] = {}
        for name, rule in self.rules.items():
            key = (rule.kinds, rule.types, rule.pattern, rule.values, rule.shape, rule.required)
            shapes.setdefault(key, []).append(name)
        self.groups = [(self.rules[names[0]], tuple(names)) for names in shapes.values()]

    def check(self, records: list[dict], request_id: str | None = None) -> dict[str, t.Any]:
        """Apply new_fields, drop unselected fields, make every value valid (in place); may raise.

        Returns the properties this page added to the schema (new_fields `load`), which the
        stream announces in a SCHEMA message before the page's records.
        """
        added: dict[str, t.Any] = {}
        if self.new_fields != DEFAULT_NEW_FIELDS and not all(map(self.known.issuperset, records)):
            added = self._admit(records, request_id)
        if self.json_text:
            self._encode_json_text(records)
        if not all(map(self.selected.issuperset, records)):  # the usual case: one C loop
            self._drop_unselected(records)
        if not records:
            return added
        for rule, names in self.groups:
            if not self._page_valid(rule, names, records):
                for name in names:
                    one = self.rules[name]
                    if not self._page_valid(one, (name,), records):
                        self._fix(one, records, request_id)
        return added

    def _admit(self, records: list[dict], request_id: str | None) -> dict[str, t.Any]:
        """new_fields `fail`: stop at the first unknown field; `load`: type and add each one."""
        unknown: set[str] = set()
        for record in records:
            unknown |= record.keys() - self.known
        if self.new_fields == "fail":
            raise new_field_error(self.stream, min(unknown), request_id)
        added = {}
        for name in sorted(unknown):
            prop = infer_property(r[name] for r in records if name in r)
            if prop is None:
                message = (
                    "Stream '%s': new field '%s' is null so far; it is added at its first value."
                )
                self._warn_once("null", name, message)
                continue
            added[name] = prop
            self.logger.warning(
                "Stream '%s': the API sent new field '%s'; loading it as %s (new_fields: load).",
                self.stream,
                name,
                prop["type"][0],
            )
        self.add(added)
        return added

    def add(self, properties: dict[str, t.Any]) -> None:
        """Know, select and check these properties from now on."""
        if not properties:
            return
        self.properties.update(properties)
        self.known |= properties.keys()
        self.selected |= properties.keys()
        self.json_text |= {n for n, p in properties.items() if is_json_text(p)}
        self._build_rules()

    def _encode_json_text(self, records: list[dict]) -> None:
        """Fields of mixed types (new_fields `load`): every value as its JSON text."""
        for record in records:
            for name in self.json_text & record.keys():
                if record[name] is not None:
                    record[name] = orjson.dumps(record[name]).decode()

    def _drop_unselected(self, records: list[dict]) -> None:
        selected = self.selected
        for record in records:
            for name in record.keys() - selected:
                del record[name]
                if name not in self.known:  # a deselected field sent anyway goes silently
                    self._warn_new_field(name)

    @staticmethod
    def _page_valid(rule: FieldRule, names: tuple[str, ...], records: list[dict]) -> bool:
        """Fields sharing one rule, over a whole page, in C loops; False means: look closer."""
        try:
            if len(names) == 1:
                values = list(map(itemgetter(names[0]), records))
            else:  # itemgetter of several names: a tuple per record, flattened
                values = list(chain.from_iterable(map(itemgetter(*names), records)))
        except KeyError:  # some record lacks a field (allowed): MISSING stands for it
            values = []
            for name in names:
                values += map(methodcaller("get", name, MISSING), records)
        kinds = set(map(type, values))
        if not kinds <= rule.types:
            return False
        if rule.shape is not None and kinds & {dict, list}:
            return all(map(rule.valid, values))
        if rule.pattern is not None and str in kinds:
            strings = values if len(kinds) == 1 else [v for v in values if type(v) is str]
            if not all_match(rule.pattern, strings):
                return False
        inner = rule.values
        if inner is not None and dict in kinds:
            dicts = values if len(kinds) == 1 else [v for v in values if type(v) is dict]
            nested = list(chain.from_iterable(map(dict.values, dicts)))
            nested_kinds = set(map(type, nested))
            if not nested_kinds <= inner.types:
                return False
            if inner.pattern is not None or inner.values is not None:
                return all(map(inner.valid, nested))
        return True

    def _fix(self, rule: FieldRule, records: list[dict], request_id: str | None) -> None:
        name = rule.name
        for record in records:
            value = record.get(name, MISSING)
            if rule.valid(value):
                continue
            new = rule.coerce(value)
            if new is not NULL:
                record[name] = new
                self.coerced[name] = self.coerced.get(name, 0) + 1
                self._warn_coerced(name, value, new)
                continue
            if self.fail or not rule.nullable:
                self._raise(rule, record, value, request_id)
            record[name] = None
            self.nulled[name] = self.nulled.get(name, 0) + 1
            if self.nulled[name] <= MAX_NULLED_WARNINGS:
                self.logger.warning(
                    "Stream '%s', record %s: field '%s' was sent as %s, which the schema does "
                    "not allow and which cannot be converted without loss; loading null instead "
                    "(request_id=%s).",
                    self.stream,
                    _id_of(record),
                    name,
                    _show(value),
                    request_id,
                )

    def summary(self) -> None:
        """One line per field nulled more often than it was warned about."""
        for name, count in sorted(self.nulled.items()):
            if count > MAX_NULLED_WARNINGS:
                self.logger.warning(
                    "Stream '%s': field '%s' was nulled in %d records (wrong type; the first %d "
                    "are named above).",
                    self.stream,
                    name,
                    count,
                    MAX_NULLED_WARNINGS,
                )

    def _raise(
        self, rule: FieldRule, record: dict, value: t.Any, request_id: str | None
    ) -> t.NoReturn:
        why = (
            "type_errors is 'fail'"
            if self.fail
            else f"'{rule.name}' may not be null, so it can be neither loaded nor nulled"
        )
        msg = (
            f"{self.stream}: record {_id_of(record)} has field '{rule.name}' = {_show(value)}, "
            f"not the {' or '.join(rule.kinds)} the schema says, and not convertible without "
            f"loss (request_id={request_id}); stopping ({why})."
        )
        raise SchemaViolationError(msg)

    def _warn_coerced(self, name: str, value: t.Any, new: t.Any) -> None:
        message = (
            "Stream '%s': the API sent field '%s' as %s (e.g. %s); converting it without loss "
            "to %s, the type the schema says."
        )
        self._warn_once("type", name, message, type(value).__name__, _show(value), _show(new))

    def _warn_new_field(self, name: str) -> None:
        message = (
            "Stream '%s': the API sent field '%s', unknown to the schema; "
            "ignoring it (update the tap to sync it)."
        )
        self._warn_once("new", name, message)

    def _warn_once(self, kind: str, name: str, message: str, *args: t.Any) -> None:
        """Warn once per stream, kind and field name: not once per record."""
        if (kind, name) not in self._warned:
            self._warned.add((kind, name))
            self.logger.warning(message, self.stream, name, *args)


def _id_of(record: dict) -> str:
    """The record's key: canonical_id (canonical streams) or id (the ops streams)."""
    return str(record.get("canonical_id", record.get("id", "(no id)")))


def _show(value: t.Any) -> str:
    """A short, safe rendering of a value for a log line."""
    try:
        text = repr(value)
    except RecursionError:  # a value nested about a thousand deep
        return f"a JSON {type(value).__name__} nested too deep to show"
    return text if len(text) <= 60 else text[:57] + "..."


def _types_of(prop: dict) -> list[str]:
    """The JSON types a schema property allows (none known: any value)."""
    kind = prop.get("type", [])
    kinds = [kind] if isinstance(kind, str) else list(kind)
    for option in prop.get("anyOf", []):
        kinds += _types_of(option)
    return kinds if all(k in JSON_TYPES for k in kinds) else []
