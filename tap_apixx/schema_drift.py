"""Schema drift: fields the schema does not know are dropped, wrong types passed on, each warned once."""

from __future__ import annotations

import typing as t
from functools import cached_property

if t.TYPE_CHECKING:
    import logging

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


class SchemaDrift:
    """Checks a page of records against a stream's schema and the catalog's selection.

    A field the schema does not know never breaks a sync: it is warned about once, then
    dropped. A value of a type the schema does not allow is passed on unchanged (nothing is
    lost; the loader decides), with one warning per stream and field.
    """

    def __init__(
        self,
        stream: str,
        properties: dict[str, t.Any],
        selected: frozenset[str],
        logger: logging.Logger,
    ) -> None:
        self.stream, self.properties, self.logger = stream, properties, logger
        self.selected = selected
        self.known = frozenset(properties)
        self._warned: set[tuple[str, str]] = set()

    @cached_property
    def exact_types(self) -> dict[str, frozenset[type]]:
        """Each property's Python types as exact types (what orjson produces), for a cheap check."""
        exact = {}
        for name, prop in self.properties.items():
            types = {kind for js in _types_of(prop) for kind in JSON_TYPES.get(js, ())}
            if int in types:
                types.add(bool)  # as isinstance(True, int) holds
            if types:
                exact[name] = frozenset(types)
        return exact

    def check(self, records: list[dict]) -> None:
        """Warn about wrong types, then drop the fields that are not selected (in place)."""
        selected, types = self.selected, self.exact_types
        for record in records:
            for name, value in record.items():
                allowed = types.get(name)
                if allowed is not None and type(value) not in allowed:
                    self._warn_wrong_type(name, value)
            if record.keys() <= selected:
                continue
            for name in record.keys() - selected:
                del record[name]
                if name not in self.known:  # a deselected field sent anyway goes silently
                    self._warn_new_field(name)

    def _warn_wrong_type(self, name: str, value: t.Any) -> None:
        message = (
            "Stream '%s': the API sent field '%s' as %s, not the type the schema says; "
            "passing it on unchanged."
        )
        self._warn_once("type", name, message, type(value).__name__)

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


def _types_of(prop: dict) -> list[str]:
    """The JSON types a schema property allows (none known: any value)."""
    kind = prop.get("type", [])
    kinds = [kind] if isinstance(kind, str) else list(kind)
    for option in prop.get("anyOf", []):
        kinds += _types_of(option)
    return kinds if all(k in JSON_TYPES for k in kinds) else []
