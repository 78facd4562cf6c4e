"""One reconcile: sweep APIXX, read the warehouse, compare, and act only when asked."""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tap_apixx.reconcile.compare import EntityDrift, compare
from tap_apixx.reconcile.sweep import IdLookupStream, Sweep, SweepRun, from_us, to_us

if t.TYPE_CHECKING:
    from tap_apixx.reconcile.targets import WarehouseSpec
    from tap_apixx.reconcile.warehouse import Warehouse
    from tap_apixx.tap import TapApixx

SERVER_READ_LIMIT = 600  # documented GET requests per minute per key, when no header said


@dataclass
class Actions:
    """What to do about drift: nothing by default."""

    mark_deleted: bool = False
    hard_delete: bool = False
    confirm: bool = True  # GET each gone id (404 expected) before touching its row

    @property
    def any(self) -> bool:
        return self.mark_deleted or self.hard_delete


@dataclass
class Outcome:
    """Everything the report shows."""

    warehouse: str
    loader: str
    started_at: str
    cutoff: str
    start_date: str | None
    end_date: str | None
    entities: dict[str, EntityDrift]
    sweeps: dict[str, Sweep]
    sweep_seconds: float
    requests: int = 0
    confirm_requests: int = 0
    limit_per_minute: int = SERVER_READ_LIMIT
    acted: dict[str, dict[str, int]] = field(default_factory=dict)
    still_in_api: dict[str, list[str]] = field(default_factory=dict)  # "gone" yet GET answered

    @property
    def remaining_drift(self) -> int:
        """Drift left after the actions taken (none taken: all of it)."""
        left = 0
        for name, drift in self.entities.items():
            done = self.acted.get(name, {})
            fixed_gone = done.get("marked", 0) + done.get("deleted", 0)
            left += len(drift.missing) + len(drift.stale) + len(drift.ahead)
            left += max(0, len(drift.gone) - fixed_gone)
            left += max(0, len(drift.revived) - done.get("unmarked", 0))
        return left


class Reconcile:
    """Reconciles the selected entities of one tap configuration with one warehouse."""

    def __init__(
        self,
        tap: TapApixx,
        spec: WarehouseSpec,
        entities: list[str],
        actions: Actions | None = None,
    ) -> None:
        self.tap, self.spec, self.entities = tap, spec, entities
        self.actions = actions or Actions()
        self.logger = logging.getLogger("tap-apixx-reconcile")

    def run(self) -> Outcome:
        warehouse = self.spec.open()
        try:
            if self.actions.any:
                warehouse.check_writable()  # before the sweep spends the key's budget
            start_date, end_date = (
                self.tap.config.get("start_date"),
                self.tap.config.get("end_date"),
            )
            start_us = to_us(start_date) if start_date else None
            end_us = to_us(end_date) if end_date else None
            sweep = SweepRun(self.tap, self.entities, self._sweep_from(warehouse, start_us))
            self.logger.info(
                "Sweeping %d entit%s of APIXX (ids and updated_at only) ...",
                len(self.entities),
                "y" if len(self.entities) == 1 else "ies",
            )
            sweeps = sweep.run()
            cutoff = sweep.cutoff_us // 1000 * 1000  # whole ms, as the API stamps records
            drifts = {
                e: compare(e, sweeps[e].ids, warehouse.rows(e), cutoff, start_us, end_us)
                for e in self.entities
            }  # read after the sweep: see docs/reconcile.md
            outcome = Outcome(
                warehouse=warehouse.describe(),
                loader=self.spec.loader,
                started_at=from_us(to_us(sweep.started_at) // 1000 * 1000),
                cutoff=from_us(cutoff),
                start_date=from_us(start_us) if start_us is not None else None,
                end_date=from_us(end_us) if end_us is not None else None,
                entities=drifts,
                sweeps=sweeps,
                sweep_seconds=sweep.seconds,
                requests=sweep.requests(),
                limit_per_minute=self._limit(),
            )
            if self.actions.any:
                self._act(warehouse, outcome)
            return outcome
        finally:
            warehouse.close()

    def _sweep_from(self, warehouse: Warehouse, start_us: int | None) -> dict[str, str | None]:
        """Per entity, the earliest instant to sweep from: all of it, or from start_date, but
        never after the oldest row loaded (rows loaded before start_date moved must be found)."""
        since: dict[str, str | None] = {}
        for entity in self.entities:
            if start_us is None:
                since[entity] = None
                continue
            oldest = warehouse.min_updated_us(entity)
            since[entity] = from_us(min(start_us, oldest) if oldest is not None else start_us)
        return since

    def _limit(self) -> int:
        learned = getattr(self.tap.pacer, "_limit", None)
        return int(learned) if learned else SERVER_READ_LIMIT

    def _act(self, warehouse: Warehouse, outcome: Outcome) -> None:
        at = from_us(to_us(datetime.now(timezone.utc)) // 1000 * 1000)
        marking = self.actions.mark_deleted and not self.actions.hard_delete
        for name, drift in outcome.entities.items():
            gone = self._confirmed_gone(name, drift.gone, outcome)
            if drift.table_missing or not (gone or drift.revived or marking):
                continue
            done = warehouse.apply(
                name,
                mark=gone if marking else [],
                unmark=list(drift.revived),
                delete=[] if marking else gone,
                at=at,
                add_column=marking,
            )
            outcome.acted[name] = done
            if any(done.values()):
                self.logger.info(
                    "%s: marked %d, unmarked %d, deleted %d row(s) in the warehouse",
                    name,
                    done["marked"],
                    done["unmarked"],
                    done["deleted"],
                )

    def _confirmed_gone(self, entity: str, ids: list[str], outcome: Outcome) -> list[str]:
        """The ids that `GET /{entity}/{id}` answers 404 for; one that answers is left alone."""
        if not ids or not self.actions.confirm:
            return list(ids)
        lookup = IdLookupStream(self.tap, entity)
        gone: list[str] = []
        alive: list[str] = []
        for cid in ids:
            (gone if not lookup.exists(cid) else alive).append(cid)
        outcome.confirm_requests += lookup.counts["requests"]
        if alive:
            outcome.still_in_api[entity] = alive
            self.logger.warning(
                "%s: %d row(s) absent from the sweep answer GET by id: not "
                "touched (they changed during the sweep?)",
                entity,
                len(alive),
            )
        return gone
