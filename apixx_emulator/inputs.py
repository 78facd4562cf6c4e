"""Control-plane inputs as data: each field's type and bounds, checked in one place, so that any
bad value is one 422 naming the field (never a hang, a crash or a silently ignored typo)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Depends, Request

from .exceptions import InvalidRequest, TooLarge, ValidationError

MAX_BODY_BYTES = 1 << 20  # a control-plane body larger than this is refused (413)
MAX_TEXT = 2000  # longest string field (URLs, messages)


@dataclass(frozen=True)
class Field:
    """One field of a control-plane body: `kind` is int, number, bool, text, choice, object,
    texts (a list of strings) or any; numbers must be finite and within lo..hi."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    nullable: bool = True
    check: Callable[[Any], str | None] | None = None  # extra rule: a message when the value breaks it

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        what = {"int": "an integer", "number": "a number", "bool": "true or false", "text": "a string",
                "object": "a JSON object", "texts": "a list of strings", "any": "any JSON value"}[self.kind]
        if self.lo is not None and self.hi is not None:
            what += f" within {fmt(self.lo)}..{fmt(self.hi)}"
        elif self.kind == "text" and self.hi is not None:
            what += f" of at most {fmt(self.hi)} characters"
        return what


def fmt(value: float) -> str:
    return f"{value:,.0f}".replace(",", "_") if float(value).is_integer() else f"{value:g}"


def integer(lo: int, hi: int, **kw: Any) -> Field:
    return Field("int", lo, hi, **kw)


def number(lo: float, hi: float, **kw: Any) -> Field:
    return Field("number", lo, hi, **kw)


def text(hi: int = MAX_TEXT, **kw: Any) -> Field:
    return Field("text", 1, hi, **kw)


def choice(*options: Any, **kw: Any) -> Field:
    return Field("choice", choices=tuple(options), **kw)


BOOL = Field("bool")
OBJECT = Field("object")
ANY = Field("any")


def _valid(spec: Field, value: Any) -> bool:
    kind = spec.kind
    if kind == "any":
        return True
    if kind == "choice":
        return any(value == c and type(value) is type(c) for c in spec.choices)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "texts":
        return isinstance(value, list) and len(value) <= (spec.hi or 100) and all(isinstance(v, str) and len(v) <= 100 for v in value)
    if kind == "text":
        return isinstance(value, str) and (spec.lo or 0) <= len(value) <= (spec.hi or MAX_TEXT)
    if isinstance(value, bool) or not isinstance(value, int if kind == "int" else (int, float)):
        return False
    if kind == "number" and not math.isfinite(value):
        return False
    return (spec.lo is None or value >= spec.lo) and (spec.hi is None or value <= spec.hi)


def shown(value: Any) -> str:
    text_ = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode() if not isinstance(value, float) else repr(value)
    return text_ if len(text_) <= 60 else text_[:57] + "..."


def check(body: Any, fields: Mapping[str, Field], where: str) -> dict[str, Any]:
    """`body` as a dict of known, valid fields (absent ones are left out), or a 422 naming the
    first bad or unknown field."""
    if not isinstance(body, dict):
        raise ValidationError(f"{where}: the body must be a JSON object, got {type(body).__name__}.")
    unknown = sorted(k for k in body if k not in fields)
    if unknown:
        near = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise ValidationError(f"{where}: unknown field '{unknown[0][:60]}'{hint}; "
                                                f"known: {', '.join(fields) or 'none'}.")
    for name, value in body.items():
        spec = fields[name]
        if value is None and spec.nullable:
            continue
        problem = None if _valid(spec, value) else f"must be {spec.describe()}"
        if problem is None and spec.check is not None:
            problem = spec.check(value)
        if problem:
            raise ValidationError(f"{where}: '{name}' {problem}; got {shown(value)}.")
    return {k: v for k, v in body.items() if v is not None}


def parse_json(raw: bytes, where: str) -> Any:
    """The JSON of a control-plane body (empty means {}); strict JSON, so no NaN or Infinity."""
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise InvalidRequest(f"{where}: the body is not valid JSON ({err}).") from None


def json_body(fields: Mapping[str, Field], where: str, required: tuple[str, ...] = ()) -> Any:
    """A FastAPI dependency: the request's JSON body, read up to MAX_BODY_BYTES and checked
    against `fields` (with `required` names present)."""

    async def read(request: Request) -> dict[str, Any]:
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise TooLarge(f"{where}: the body is larger than {MAX_BODY_BYTES} bytes.")
        body = check(parse_json(bytes(raw), where), fields, where)
        for name in required:
            if name not in body:
                raise ValidationError(f"{where}: '{name}' is required ({fields[name].describe()}).")
        return body

    return Depends(read)
