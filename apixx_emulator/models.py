"""Emulator state in plain Python: datasets per tenant and environment, keys, limits, the request log."""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .entities import DATE, DERIVED, ENTITIES, GENERATION_ORDER, SOURCES, TIMESTAMP, between
from .errors import ApiError
from .timestamps import PRECISIONS, Precision, iso_ms, iso_s, parse_us

MAX_PAGE_SIZE = 1000  # documented maximum `limit`
DEFAULT_PAGE_SIZE = 100  # documented default `limit`
WINDOW_SECONDS = 60  # the rate limiter's sliding window
DATA_START_MS = 1751328000000  # 2025-07-01T00:00:00Z: generated history starts here ...
DATA_SPAN_MS = 365 * 86400 * 1000  # ... and covers one year
REQUEST_LOG_MAX = 200_000
MAX_RECORDS_PER_ENTITY = 1_000_000  # per entity, tenant and environment: generation stays within minutes
MAX_CHURN = 100_000  # records one churn call may change, per kind of change
MAX_RATE_LIMIT = 10**9  # requests per window a limit may allow


# --------------------------------------------------------------------------------------------
# Keys

@dataclass
class ApiKey:
    key_id: str
    secret: str
    tenant: str
    scopes: frozenset[str]
    revoked: bool = False

    @property
    def env(self) -> str:
        return "test" if self.secret.startswith("apx_test_") else "live"


ALL_SCOPES = ("data:read", "flows:read", "flows:write")
DEFAULT_KEYS = [  # documented in the README; the demo and the tests use them
    {"key": "apx_live_acme_4f9c2e1a7b3d", "tenant": "acme", "scopes": list(ALL_SCOPES)},
    {"key": "apx_test_acme_8d2b6f0c4e1a", "tenant": "acme", "scopes": list(ALL_SCOPES)},
    {"key": "apx_live_globex_3a7e9c1d5b2f", "tenant": "globex", "scopes": list(ALL_SCOPES)},
    {"key": "apx_test_globex_6c1f8a2e4d9b", "tenant": "globex", "scopes": list(ALL_SCOPES)},
    {"key": "apx_live_acme_opsonly_2e8d5c", "tenant": "acme", "scopes": ["flows:read"]},
    {"key": "apixx_acme_data_7b3e1f9a", "tenant": "acme", "scopes": ["data:read"]},
]
KEY_PREFIXES = ("apx_live_", "apx_test_", "apixx_")


class KeyRing:
    """The keys the emulator accepts; looked up by secret, named in logs by id only."""

    def __init__(self, specs: list[dict[str, Any]]):
        self._lock = threading.Lock()
        self.by_secret: dict[str, ApiKey] = {}
        self.by_id: dict[str, ApiKey] = {}
        for i, spec in enumerate(specs, start=1):
            secret = spec["key"]
            if not secret.startswith(KEY_PREFIXES):
                raise ValueError(f"key #{i} in the keys file has no known prefix {KEY_PREFIXES}")
            key = ApiKey(spec.get("id") or f"key_{i:03d}", secret, spec["tenant"], frozenset(spec.get("scopes", ())))
            self.by_secret[secret] = key
            self.by_id[key.key_id] = key

    def lookup(self, secret: str) -> ApiKey | None:
        key = self.by_secret.get(secret)
        return None if key is None or key.revoked else key

    def rotate(self, key_id: str, tenant: str) -> str:
        """Issue a new secret for `key_id`; the old one stops working at once."""
        with self._lock:
            key = self.by_id.get(key_id)
            if key is None or key.tenant != tenant:
                raise ApiError(404, "not_found", f"No API key with id '{key_id}'.")
            prefix = next(p for p in KEY_PREFIXES if key.secret.startswith(p))
            del self.by_secret[key.secret]
            key.secret = prefix + uuid.uuid4().hex
            self.by_secret[key.secret] = key
            return key.secret


# --------------------------------------------------------------------------------------------
# Rate limits

@dataclass
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0


class RateLimiter:
    """Sliding 60-second windows per (key, bucket)."""

    def __init__(self, limits: dict[str, int], window: float = WINDOW_SECONDS):
        self.limits = dict(limits)
        self.window = window
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str, bucket: str, now: float | None = None) -> RateDecision:
        now = time.time() if now is None else now
        limit = self.limits[bucket]
        with self._lock:
            window = self._windows.setdefault((key_id, bucket), deque())
            while window and window[0] <= now - self.window:
                window.popleft()
            if len(window) >= limit:
                reset = window[0] + self.window
                return RateDecision(False, limit, 0, math.ceil(reset), max(1, math.ceil(reset - now)))
            window.append(now)
            return RateDecision(True, limit, limit - len(window), math.ceil(window[0] + self.window))

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


def bucket_for(method: str, path: str) -> str:
    if method == "GET" or method == "HEAD":
        return "read"
    if method == "POST" and path.rstrip("/").endswith("/trigger"):
        return "trigger"
    return "write"


# --------------------------------------------------------------------------------------------
# Data

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


def timeline(n: int, rng: random.Random, max_tie: int, per_ms: int = 1) -> list[int]:
    """n ascending stamps across the generated year, with tie groups, in units of 1/per_ms
    millisecond. The random draws do not depend on the unit: a microsecond dataset has the same
    tie groups as the millisecond one, at instants with a sub-millisecond part."""
    sizes = tie_group_sizes(n, rng, max_tie)
    step = DATA_SPAN_MS / max(1, len(sizes))
    stamps: list[int] = []
    t = float(DATA_START_MS)
    for size in sizes:
        t += rng.uniform(1, 2 * step)
        stamps.extend([int(t * per_ms)] * size)
    return stamps


class Dataset:
    """Everything one tenant sees in one environment."""

    def __init__(self, tenant: str, env: str, seed: int, records_per_entity: int, max_tie: int,
                 records_for: dict[str, int] | None = None, precision: Precision = PRECISIONS["ms"]):
        self.tenant, self.env = tenant, env
        self.precision = precision
        counts = records_for or {}  # per-entity overrides of records_per_entity
        self.lock = threading.RLock()
        self.tables: dict[str, Table] = {}
        self.ops: Any = None  # filled in by the ops model (apixx_emulator.ops) when present
        rng = random.Random(f"{seed}/{tenant}/{env}")
        refs: dict[str, list[str]] = {}
        per_ms, fmt = precision.per_ms, precision.format
        for entity in GENERATION_ORDER:
            table = Table(entity)
            for stamp in timeline(counts.get(entity, records_per_entity), rng, max_tie, per_ms):
                record = make_record(entity, rng, refs, stamp // per_ms, fmt(stamp))
                table.records.append(record)
                table.by_id[record["canonical_id"]] = record
            table.resort()
            refs[entity] = list(table.by_id)
            self.tables[entity] = table
        self.rng = rng
        self.refs = refs

    def latest(self) -> int:
        """The newest stamp of any table, in this dataset's units."""
        us = max((parse_us(t.stamps[-1]) for t in self.tables.values() if t.stamps), default=DATA_START_MS * 1000)
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
            value = iso_s(ms - between(rng, 0, 30 * 86400 * 1000))
        elif value == DATE:
            value = iso_s(ms + between(rng, 0, 90 * 86400 * 1000))[:10]
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


# --------------------------------------------------------------------------------------------
# The whole emulator

@dataclass
class Settings:
    seed: int = 42
    records_per_entity: int = 2000
    records_for: dict[str, int] = field(default_factory=dict)  # entity -> count, overriding the above
    cursor_mode: str = "exclusive"  # `cursor` compares with > (or >= when "inclusive")
    since_mode: str = "inclusive"  # `updated_since` compares with >= (or > when "exclusive")
    timestamp_precision: str = "ms"  # updated_at as ...123Z, or "us": ...123456+00:00
    max_tie_size: int = 1000
    read_limit: int = 600
    write_limit: int = 120
    trigger_limit: int = 60
    rate_window_seconds: float = WINDOW_SECONDS  # shorter only to make rate-limit tests quick
    keys: list[dict[str, Any]] = field(default_factory=lambda: [dict(k) for k in DEFAULT_KEYS])
    webhooks: list[dict[str, Any]] = field(default_factory=list)


class Store:
    """The emulator's state: datasets (made lazily, per tenant and environment), keys, limits,
    faults and the request log. Routes only read and change this."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.keys = KeyRing(settings.keys)
        self.limiter = RateLimiter({"read": settings.read_limit, "write": settings.write_limit,
                                    "trigger": settings.trigger_limit}, settings.rate_window_seconds)
        self._datasets: dict[tuple[str, str], Dataset] = {}
        self._lock = threading.Lock()
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_MAX)
        self.counters: Counter[tuple[str, int, str]] = Counter()
        from .faults import FaultInjector  # local: faults imports models' helpers
        self.faults = FaultInjector()
        self.extensions: dict[str, Any] = {}  # other models (ops, webhooks) hang their state here

    def dataset(self, tenant: str, env: str) -> Dataset:
        with self._lock:
            ds = self._datasets.get((tenant, env))
            if ds is None:
                s = self.settings
                ds = Dataset(tenant, env, s.seed, s.records_per_entity, s.max_tie_size, s.records_for,
                             PRECISIONS[s.timestamp_precision])
                self._datasets[(tenant, env)] = ds
            return ds

    def ready(self, tenant: str, env: str) -> Dataset | None:
        """The dataset if it has been generated already (no waiting, no generating)."""
        return self._datasets.get((tenant, env))

    def tenants(self) -> list[tuple[str, str]]:
        return sorted({(k.tenant, k.env) for k in self.keys.by_id.values()})

    RESETTABLE = ("seed", "records_per_entity", "cursor_mode", "since_mode", "timestamp_precision")

    def reset(self, **changes: Any) -> None:
        """Drop every dataset (they are made again on first use), with any of RESETTABLE changed."""
        with self._lock:
            for name, value in changes.items():
                if name not in self.RESETTABLE:
                    raise ValueError(f"cannot reset {name!r}")
                if value is not None:
                    setattr(self.settings, name, value)
            self._datasets.clear()
        self.limiter.clear()

    def log_request(self, entry: dict[str, Any]) -> None:
        self.request_log.append(entry)
        self.counters[(entry["route"], entry["status"], entry["key_id"] or "-")] += 1
