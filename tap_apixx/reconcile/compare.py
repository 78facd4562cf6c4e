"""Compare one entity's ids in APIXX with its rows in the warehouse: pure, no I/O."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from tap_apixx.reconcile.warehouse import Rows


@dataclass
class EntityDrift:
    """What differs for one entity, leaving out anything that changed while the sweep ran."""

    entity: str
    in_api: int = 0
    in_warehouse: int = 0
    table_missing: bool = False
    gone: list[str] = field(default_factory=list)  # in the warehouse, not in APIXX, not marked
    missing: dict[str, int] = field(default_factory=dict)  # in APIXX (µs), not in the warehouse
    stale: dict[str, tuple[int | None, int]] = field(default_factory=dict)  # warehouse older
    ahead: dict[str, tuple[int, int]] = field(default_factory=dict)  # warehouse newer (odd)
    revived: list[str] = field(default_factory=list)  # marked deleted, yet in APIXX again
    marked: int = 0  # marked deleted earlier and still gone: as it should be
    changed_during_sweep: int = 0  # left out: updated_at at or after the sweep began
    before_start: int = 0  # in APIXX, updated before start_date: not synced, by design
    after_end: int = 0  # in APIXX, updated at or after end_date: not synced, by design

    @property
    def drift(self) -> int:
        return (
            len(self.gone)
            + len(self.missing)
            + len(self.stale)
            + len(self.ahead)
            + len(self.revived)
        )

    @property
    def resync_from_us(self) -> int | None:
        """The earliest APIXX updated_at a re-sync must re-read to fix missing and stale rows."""
        stamps = [
            *self.missing.values(),
            *(a for _, a in self.stale.values()),
            *(a for _, a in self.ahead.values()),
        ]
        return min(stamps) if stamps else None


def compare(
    entity: str,
    api: dict[str, int],
    rows: Rows | None,
    cutoff_us: int,
    start_us: int | None = None,
    end_us: int | None = None,
) -> EntityDrift:
    """`api`: id -> updated_at (µs) swept; `rows`: the warehouse's (None: no table).

    `cutoff_us` is the sweep's start: a record whose updated_at, on either side, is at or after
    it changed during the sweep and is left out. `start_us` and `end_us` (start_date, and the
    exclusive end_date): the window the tap syncs; an APIXX record updated outside it is not
    expected in the warehouse (nor its latest version), so that is not drift.
    """
    drift = EntityDrift(entity, in_api=len(api), table_missing=rows is None)
    rows = rows or {}
    drift.in_warehouse = len(rows)
    for cid, (loaded_us, marked) in rows.items():
        api_us = api.get(cid)
        if (loaded_us is not None and loaded_us >= cutoff_us) or (api_us or 0) >= cutoff_us:
            drift.changed_during_sweep += 1
        elif api_us is not None and end_us is not None and api_us >= end_us:
            drift.after_end += 1
        elif api_us is None:
            if marked:
                drift.marked += 1
            else:
                drift.gone.append(cid)
        else:
            _compare_row(drift, cid, loaded_us, api_us, marked)
    for cid, api_us in api.items():
        if cid in rows:
            continue
        if api_us >= cutoff_us:
            drift.changed_during_sweep += 1
        elif start_us is not None and api_us < start_us:
            drift.before_start += 1
        elif end_us is not None and api_us >= end_us:
            drift.after_end += 1
        else:
            drift.missing[cid] = api_us
    return drift


def _compare_row(
    drift: EntityDrift, cid: str, loaded_us: int | None, api_us: int, marked: bool
) -> None:
    if marked:
        drift.revived.append(cid)
    if loaded_us is None or loaded_us < api_us:
        drift.stale[cid] = (loaded_us, api_us)
    elif loaded_us > api_us:
        drift.ahead[cid] = (loaded_us, api_us)
