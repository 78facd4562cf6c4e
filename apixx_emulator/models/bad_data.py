"""Bad data on the list route, on demand: malformed records, broken ordering, cursors and bodies
(the plans; the control plane adds and clears them)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from ..entities import ENTITIES

Payload = dict[str, Any]
KEYS = ("canonical_id", "updated_at")


def _drop(name: str) -> Callable[[Payload], Payload]:
    def corrupt(payload: Payload) -> Payload:
        payload["data"][_middle(payload)].pop(name, None)
        return payload
    return corrupt


def _set(name: str, value: Any) -> Callable[[Payload], Payload]:
    def corrupt(payload: Payload) -> Payload:
        payload["data"][_middle(payload)][name] = value
        return payload
    return corrupt


def _middle(payload: Payload) -> int:
    return len(payload["data"]) // 2


def _wrong_type(payload: Payload) -> Payload:
    """An integer field sent as a string (or a string field as a number)."""
    record = payload["data"][_middle(payload)]
    names = [k for k, v in record.items() if isinstance(v, int) and not isinstance(v, bool)]
    if names:
        record[names[0]] = f"{record[names[0]]}.50"
    else:
        name = next(k for k, v in record.items() if isinstance(v, str) and k not in KEYS)
        record[name] = 12345
    return payload


def _out_of_order(payload: Payload) -> Payload:
    """Swap the first and last records, so updated_at goes backwards within the page."""
    data = payload["data"]
    data[0], data[-1] = data[-1], data[0]
    return payload


def _no_data(payload: Payload) -> Payload:
    return {k: v for k, v in payload.items() if k != "data"}


# kind -> how a page is spoiled. repeat_cursor, stale_page and non_json are handled in BadData.
CORRUPTIONS: dict[str, Callable[[Payload], Payload]] = {
    "missing_canonical_id": _drop("canonical_id"),
    "missing_updated_at": _drop("updated_at"),
    "bad_timestamp": _set("updated_at", "yesterday at noon"),
    "wrong_type_key": _set("updated_at", 1767225600000),  # epoch ms instead of RFC 3339
    "wrong_type": _wrong_type,
    "out_of_order": _out_of_order,
    "no_data": _no_data,
}
KINDS = (*CORRUPTIONS, "repeat_cursor", "stale_page", "non_json")
NON_JSON = b"<html><body>Service temporarily unavailable</body></html>"


MAX_PLAN_COUNT = 1_000_000  # responses one plan may spoil or skip


@dataclass
class Plan:
    """Spoil `count` list responses of `entity` (every one if `always`), after `skip` good ones."""

    entity: str
    kind: str
    count: int = 1
    skip: int = 0
    always: bool = False
    served: int = 0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Plan:
        plan = cls(**{k: v for k, v in body.items() if k != "once"})
        if body.get("once"):
            plan.count = 1
        if plan.entity not in ENTITIES or plan.kind not in KINDS:
            raise ValueError(f"'entity' must be an entity and 'kind' one of: {', '.join(KINDS)}")
        if min(plan.count, plan.skip) < 0:
            raise ValueError("'count' and 'skip' must not be negative")
        return plan

    def fires(self) -> bool:
        """Count one response; True when this one is to be spoiled."""
        self.served += 1
        spoiled = self.served - self.skip
        return spoiled > 0 and (self.always or spoiled <= self.count)


class BadData:
    """The active plans and what each entity's list route served last (for stale pages)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plans: list[Plan] = []
        self.last_body: dict[str, bytes] = {}
        self.first_cursor: dict[str, str] = {}

    def add(self, plan: Plan) -> None:
        with self.lock:
            self.plans.append(plan)

    def clear(self) -> None:
        with self.lock:
            self.plans.clear()
            self.last_body.clear()
            self.first_cursor.clear()

    def serve(self, entity: str, payload: Payload) -> bytes:
        """The body to answer with: `payload` as JSON, unless a plan spoils it."""
        with self.lock:
            kinds = [p.kind for p in self.plans if p.entity == entity and p.fires()]
            if payload.get("next_cursor"):
                self.first_cursor.setdefault(entity, payload["next_cursor"])
            stale = self.last_body.get(entity)
            if "stale_page" in kinds and stale is not None:
                return stale
            body = self._spoil(entity, payload, kinds)
            if "non_json" not in kinds:
                self.last_body[entity] = body
            return body

    def _spoil(self, entity: str, payload: Payload, kinds: list[str]) -> bytes:
        if "non_json" in kinds:
            return NON_JSON
        if "repeat_cursor" in kinds and entity in self.first_cursor:
            payload["next_cursor"] = self.first_cursor[entity]
        if payload.get("data"):
            payload = {**payload, "data": [dict(r) for r in payload["data"]]}  # never the table's
            for kind in kinds:
                payload = CORRUPTIONS.get(kind, lambda p: p)(payload)
        return orjson.dumps(payload)

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {"plans": [asdict(p) for p in self.plans], "kinds": KINDS}
