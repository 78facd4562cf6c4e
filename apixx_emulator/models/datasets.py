"""Canonical records in plain Python: one dataset per tenant and environment, generated from a
seed with tie groups, changed by churn (updates, inserts, deletes, merges)."""

from __future__ import annotations

import bisect
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..entities import (
    DATE,
    DERIVED,
    ENTITIES,
    GENERATION_ORDER,
    RECENT,
    SOURCES,
    TIMESTAMP,
    between,
)
from ..timestamps import PRECISIONS, Precision, iso_ms, iso_s, parse_us

MAX_PAGE_SIZE = 1000  # documented maximum `limit`
DEFAULT_PAGE_SIZE = 100  # documented default `limit`
DAY_MS = 86400 * 1000
HISTORY_DAYS = 90  # generated history: the three months before the day the emulator started
MAX_RECORDS_PER_ENTITY = 1_000_000  # per entity, tenant and environment: generation stays within minutes
MAX_CHURN = 100_000  # records one churn call may change, per kind of change


@dataclass
class Table:
    """One entity's records in one dataset, kept sorted by (updated_at, canonical_id). Every
    updated_at of a dataset has one form and width, so string order is instant order."""

    entity: str
    records: list[dict[str, Any]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    stamps: list[str] = field(default_factory=list)
    gone: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> why and when it left

    def gone_view(self) -> list[dict[str, Any]]:
        """Gone ids by the time they left, each merged one with its final `survivor` (the live id
        its merges lead to, or None when that chain ends in a delete)."""
        view = []
        for entry in sorted(self.gone.values(), key=lambda g: (g["at"], g["canonical_id"])):
            survivor = entry["merged_into"]
            while survivor is not None and survivor in self.gone:
                survivor = self.gone[survivor]["merged_into"]
            view.append({**entry, "survivor": survivor})
        return view

    def resort(self) -> None:
        self.records.sort(key=lambda r: (r["updated_at"], r["canonical_id"]))
        self.stamps = [r["updated_at"] for r in self.records]

    def page(self, since: str | None, after: str | None, limit: int) -> tuple[list[dict], str | None]:
        """Up to `limit` records from the first whose updated_at is at or past both bounds (each a
        stamp string from `Precision.lower_bound`, which has already applied the >= or > rule)."""
        start = max(bisect.bisect_left(self.stamps, bound) for bound in (since or "", after or ""))
        page = self.records[start:start + limit]
        more = start + limit < len(self.records)
        return page, (page[-1]["updated_at"] if page and more else None)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def tie_group_sizes(n: int, rng: random.Random, max_tie: int) -> list[int]:
    """Split n records into groups sharing one updated_at: mostly singles, some small ties,
    and (for n >= 300) a few bulk-import groups larger than the default page of 100."""
    big = [rng.randint(101, max(101, min(max_tie, 300))) for _ in range(max(1, n // 2500))] if n >= 300 and max_tie > 100 else []
    sizes: list[int] = []
    remaining = n - sum(big)
    while remaining > 0:
        size = rng.randint(2, min(20, max_tie)) if rng.random() < 0.03 and max_tie >= 2 else 1
        size = min(size, remaining)
        sizes.append(size)
        remaining -= size
    for b in big:
        sizes.insert(rng.randrange(len(sizes) + 1), b)
    return sizes


def history_end_ms(now_ms: int | None = None) -> int:
    """Midnight UTC of today: generated history ends there, so it is always the recent months,
    and the same seed gives the same records all day (only their dates move with the day)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return now_ms - now_ms % DAY_MS


def timeline(n: int, rng: random.Random, max_tie: int, per_ms: int = 1, end_ms: int | None = None,
             start_ms: int | None = None, days: int = HISTORY_DAYS) -> list[int]:
    """n ascending stamps across the `days` before `end_ms`, with tie groups, in units of
    1/per_ms millisecond: random gaps, scaled so that the last stamp falls before `end_ms` (and
    churn, dated now, after every generated record). With `start_ms` instead, the gaps run
    unscaled from there (the data of emulators before the history moved with the day, which a
    STATE fixture needs). The random draws depend on none of these nor on the unit: a
    microsecond dataset has the same tie groups as the millisecond one, at instants with a
    sub-millisecond part."""
    span = days * DAY_MS
    end = history_end_ms() if end_ms is None else end_ms
    sizes = tie_group_sizes(n, rng, max_tie)
    step = span / max(1, len(sizes))
    gaps = [rng.uniform(1, 2 * step) for _ in sizes]
    if start_ms is None:
        start, scale = end - span, span / (sum(gaps) + step)  # the last stamp is before the end
    else:
        start, scale = start_ms, 1.0
    stamps: list[int] = []
    t = float(start)
    for size, gap in zip(sizes, gaps):
        t += gap * scale
        stamps.extend([int(t * per_ms)] * size)
    return stamps


class Dataset:
    """Everything one tenant sees in one environment."""

    def __init__(self, tenant: str, env: str, seed: int, records_per_entity: int, max_tie: int,
                 records_for: dict[str, int] | None = None, precision: Precision = PRECISIONS["ms"],
                 end_ms: int | None = None, start_ms: int | None = None, days: int = HISTORY_DAYS):
        self.tenant, self.env = tenant, env
        self.precision = precision
        self.end_ms = history_end_ms() if end_ms is None else end_ms
        self.start_ms = self.end_ms - days * DAY_MS if start_ms is None else start_ms
        history = {"end_ms": self.end_ms, "start_ms": start_ms, "days": days}
        counts = records_for or {}  # per-entity overrides of records_per_entity
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = {}
        rng = random.Random(f"{seed}/{tenant}/{env}")
        refs: dict[str, list[str]] = {}
        per_ms, fmt = precision.per_ms, precision.format
        for entity in GENERATION_ORDER:
            table = Table(entity)
            for stamp in timeline(counts.get(entity, records_per_entity), rng, max_tie, per_ms, **history):
                record = make_record(entity, rng, refs, stamp // per_ms, fmt(stamp))
                table.records.append(record)
                table.by_id[record["canonical_id"]] = record
            table.resort()
            refs[entity] = list(table.by_id)
            self.tables[entity] = table
        self.rng = rng
        self.refs = refs

    def page(self, entity: str, since_us: int | None, cursor_us: int | None, limit: int, *,
             since_inclusive: bool, cursor_inclusive: bool) -> tuple[list[dict], str | None]:
        """One page of the list route: records at or past `updated_since` (>= or >) and past the
        cursor (> or >=), compared as instants whatever form the bounds came in."""
        p = self.precision
        since = None if since_us is None else p.lower_bound(since_us, since_inclusive)
        after = None if cursor_us is None else p.lower_bound(cursor_us, cursor_inclusive)
        return self.tables[entity].page(since, after, limit)

    def latest(self) -> int:
        """The newest stamp of any table, in this dataset's units."""
        us = max((parse_us(t.stamps[-1]) for t in self.tables.values() if t.stamps), default=self.start_ms * 1000)
        return self.precision.units(us)

    def churn(self, entity: str, updates: int, inserts: int, tie: bool, set_fields: dict | None,
              at_us: int | None = None, deletes: int = 0, merges: int = 0) -> dict:
        """Touch `updates` existing records, add `inserts` new ones, delete `deletes` and merge
        `merges` pairs (the loser disappears, the survivor is touched and takes the loser's
        external ids where it has none from that system). Every change gets a fresh updated_at
        (or, with `at_us`, that past instant: a late-arriving change)."""
        with self.lock:
            table, p = self.tables[entity], self.precision
            now = p.units(time.time_ns() // 1000)
            first = p.units(at_us) if at_us is not None else max(now, self.latest() + 1)
            touched = self.rng.sample(list(table.by_id), min(updates, len(table.by_id)))
            deleted, pairs = self._pick_gone(table, set(touched), deletes, merges)
            survivors = [survivor for _, survivor in pairs]
            stamps = [first if tie else first + i for i in range(len(touched) + len(survivors) + inserts)]
            for cid, stamp in zip(touched, stamps):
                self._touch(table.by_id[cid], stamp, set_fields)
            for (loser, survivor), stamp in zip(pairs, stamps[len(touched):]):
                record = table.by_id[survivor]
                record["external_ids"] = {**table.by_id[loser]["external_ids"], **record["external_ids"]}
                self._touch(record, stamp, None)
            inserted = [self._insert(table, stamp, set_fields) for stamp in stamps[len(touched) + len(survivors):]]
            at = p.format(stamps[0] if stamps else first)
            self._remove(table, {cid: {"reason": "deleted", "merged_into": None} for cid in deleted}
                         | {loser: {"reason": "merged", "merged_into": survivor} for loser, survivor in pairs}, at)
            table.resort()
            return {"entity": entity, "updated": touched, "inserted": inserted, "deleted": deleted,
                    "merged": [{"canonical_id": loser, "merged_into": survivor} for loser, survivor in pairs],
                    "updated_at": [p.format(stamps[0]), p.format(stamps[-1])] if stamps else None}

    def _pick_gone(self, table: Table, taken: set[str], deletes: int, merges: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Ids to delete and (loser, survivor) pairs to merge, all distinct and not in `taken`."""
        if not deletes and not merges:
            return [], []
        pool = [cid for cid in table.by_id if cid not in taken]
        deletes = min(deletes, len(pool))
        merges = min(merges, (len(pool) - deletes) // 2)
        chosen = self.rng.sample(pool, deletes + 2 * merges)
        pairs = list(zip(chosen[deletes::2], chosen[deletes + 1::2]))
        return chosen[:deletes], pairs

    def _touch(self, record: dict[str, Any], stamp: int, set_fields: dict | None) -> None:
        record["updated_at"] = self.precision.format(stamp)
        record["last_source_update_at"] = iso_s(stamp // self.precision.per_ms)
        if set_fields:
            record.update(set_fields)

    def _insert(self, table: Table, stamp: int, set_fields: dict | None) -> str:
        p = self.precision
        record = make_record(table.entity, self.rng, self.refs, stamp // p.per_ms, p.format(stamp))
        if set_fields:
            record.update(set_fields)
        table.records.append(record)
        table.by_id[record["canonical_id"]] = record
        self.refs[table.entity].append(record["canonical_id"])
        return record["canonical_id"]

    def _remove(self, table: Table, gone: dict[str, dict[str, Any]], at: str) -> None:
        """Drop gone ids from the table (no tombstone is served) and remember why, for the ground
        truth. New records no longer point at them; existing foreign keys are left as they are."""
        if not gone:
            return
        table.records = [r for r in table.records if r["canonical_id"] not in gone]
        for cid, why in gone.items():
            del table.by_id[cid]
            table.gone[cid] = {"canonical_id": cid, **why, "at": at}
        self.refs[table.entity] = [cid for cid in self.refs[table.entity] if cid not in gone]


def make_record(entity: str, rng: random.Random, refs: dict[str, list[str]], ms: int,
                updated_at: str | None = None) -> dict[str, Any]:
    """A new record of `entity` last updated at `ms` (written as `updated_at`, in the dataset's form)."""
    spec = ENTITIES[entity]
    record: dict[str, Any] = {"canonical_id": _uuid(rng)}
    for name, gen in spec.fields.items():
        value = gen if isinstance(gen, str) else gen(rng, refs)
        if value == TIMESTAMP:
            value = iso_s(ms - between(rng, 0, 30 * DAY_MS))
        elif value == RECENT:
            value = iso_s(ms - between(rng, 0, 6 * 3600 * 1000))
        elif value == DATE:
            value = iso_s(ms + between(rng, 0, 90 * DAY_MS))[:10]
        record[name] = value
    if entity in DERIVED:
        DERIVED[entity](record)
    system = spec.source
    record["external_ids"] = {system: f"{system[:3]}_{between(rng, 10**7, 10**8 - 1)}"}
    if rng.random() < 0.3:
        other = rng.choice(SOURCES)
        record["external_ids"][other] = f"{other[:3]}_{between(rng, 10**7, 10**8 - 1)}"
    record["last_source_update_at"] = iso_s(ms - between(rng, 0, 5000))
    record["updated_at"] = updated_at or iso_ms(ms)
    return record
