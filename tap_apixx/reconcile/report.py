"""The reconcile report: a table for the terminal, or JSON; and the re-sync commands."""

from __future__ import annotations

import json
import os
import shlex
import typing as t

from tap_apixx.reconcile.sweep import from_us

if t.TYPE_CHECKING:
    from tap_apixx.reconcile.compare import EntityDrift
    from tap_apixx.reconcile.run import Actions, Outcome

MAX_IDS = 1000  # ids listed per kind of drift in the JSON; the counts are always whole
COLUMNS: tuple[tuple[str, int, t.Callable[[t.Any], t.Any]], ...] = (  # header, width, value
    ("entity", 18, lambda d: d.entity),
    ("in APIXX", 10, lambda d: d.in_api),
    ("in warehouse", 14, lambda d: "no table" if d.table_missing else d.in_warehouse),
    ("gone", 8, lambda d: len(d.gone)),
    ("missing", 9, lambda d: len(d.missing)),
    ("stale", 8, lambda d: len(d.stale)),
    ("marked", 8, lambda d: d.marked),
    ("changed*", 10, lambda d: d.changed_during_sweep),
)


def budget(outcome: Outcome) -> dict[str, t.Any]:
    """Requests made and the share of the key's read budget they took."""
    total = outcome.requests + outcome.confirm_requests
    minutes = max(1.0, outcome.sweep_seconds / 60)  # the server's window is a minute
    return {
        "sweep": outcome.requests,
        "confirm": outcome.confirm_requests,
        "total": total,
        "limit_per_minute": outcome.limit_per_minute,
        "budget_minutes": round(total / outcome.limit_per_minute, 3),
        "budget_share": round(min(1.0, total / (outcome.limit_per_minute * minutes)), 4),
        "sweep_seconds": round(outcome.sweep_seconds, 2),
    }


def resync_command(entity: str, from_iso: str, loader: str) -> str:
    """A `meltano run` that re-reads `entity` from `from_iso` on, without touching the bookmark."""
    tap = os.environ.get("MELTANO_EXTRACTOR_NAME") or "tap-apixx"
    prefix = tap.upper().replace("-", "_")
    env = os.environ.get("MELTANO_ENVIRONMENT")
    select = shlex.quote(json.dumps([f"{entity}.*"]))
    return (
        f"{prefix}_START_DATE={from_iso} {prefix}__SELECT={select} meltano"
        + (f" --environment={shlex.quote(env)}" if env else "")
        + f" run --full-refresh --no-state-update {tap} {loader}"
    )


def resync(outcome: Outcome, drift: EntityDrift) -> dict[str, t.Any] | None:
    start = drift.resync_from_us
    if start is None:
        return None
    records = sum(1 for us in outcome.sweeps[drift.entity].ids.values() if us >= start)
    from_iso = from_us(start)
    return {
        "from": from_iso,
        "records": records,
        "command": resync_command(drift.entity, from_iso, outcome.loader),
    }


def as_json(outcome: Outcome, actions: Actions) -> str:
    entities = {}
    for name, drift in outcome.entities.items():
        lists = {
            "gone_ids": drift.gone,
            "missing_ids": sorted(drift.missing),
            "stale_ids": sorted(drift.stale),
            "ahead_ids": sorted(drift.ahead),
            "revived_ids": drift.revived,
        }
        entities[name] = {
            "in_api": drift.in_api,
            "in_warehouse": drift.in_warehouse,
            "table_missing": drift.table_missing,
            "gone": len(drift.gone),
            "missing": len(drift.missing),
            "stale": len(drift.stale),
            "ahead": len(drift.ahead),
            "revived": len(drift.revived),
            "marked_earlier": drift.marked,
            "changed_during_sweep": drift.changed_during_sweep,
            "before_start_date": drift.before_start,
            "after_end_date": drift.after_end,
            **{k: v[:MAX_IDS] for k, v in lists.items()},
            "ids_truncated": any(len(v) > MAX_IDS for v in lists.values()),
            "resync": resync(outcome, drift),
            "acted": outcome.acted.get(name),
            "still_in_api_ids": outcome.still_in_api.get(name, []),
        }
    body = {
        "warehouse": outcome.warehouse,
        "loader": outcome.loader,
        "sweep_started_at": outcome.started_at,
        "cutoff": outcome.cutoff,
        "start_date": outcome.start_date,
        "end_date": outcome.end_date,
        "drift": sum(d.drift for d in outcome.entities.values()),
        "remaining_drift": outcome.remaining_drift,
        "requests": budget(outcome),
        "actions": {"mark_deleted": actions.mark_deleted, "hard_delete": actions.hard_delete},
        "entities": entities,
    }
    return json.dumps(body, indent=2)


def as_table(outcome: Outcome, actions: Actions) -> str:
    drifts = list(outcome.entities.values())
    lines = [
        f"Reconcile of {outcome.warehouse} with APIXX (sweep started {outcome.started_at})",
        "",
    ]
    lines.append(
        "".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w, _) in enumerate(COLUMNS))
    )
    lines.append("-" * sum(w for _, w, _ in COLUMNS))
    for drift in drifts:
        lines.append(_row(drift))
    lines.append(_total(drifts))
    lines += [
        "",
        f"* changed while the sweep ran (updated_at at or after {outcome.cutoff}): left "
        + "out; the next sync brings them.",
    ]
    lines.append(_cost_line(outcome))
    lines += _notes(outcome, drifts, actions)
    return "\n".join(lines)


def _row(drift: EntityDrift) -> str:
    cells = [f(drift) for _, _, f in COLUMNS]
    text = "".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS))
    )
    odd = [f"{len(drift.ahead)} newer than APIXX"] if drift.ahead else []
    odd += [f"{len(drift.revived)} marked deleted yet in APIXX"] if drift.revived else []
    return text + (f"   ({', '.join(odd)})" if odd else "")


def _total(drifts: list[EntityDrift]) -> str:
    sums: list[str | int] = ["total"]
    sums += [sum(f(d) if isinstance(f(d), int) else 0 for d in drifts) for _, _, f in COLUMNS[1:]]
    return "".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w)
        for i, (c, (_, w, _)) in enumerate(zip(sums, COLUMNS))
    )


def _cost_line(outcome: Outcome) -> str:
    cost = budget(outcome)
    confirm = f" + {cost['confirm']} to confirm gone rows" if cost["confirm"] else ""
    return (
        f"Cost: {cost['sweep']} request{'' if cost['sweep'] == 1 else 's'}{confirm} in {cost['sweep_seconds']:.1f} s of sweep = "
        f"{cost['budget_minutes']:.2f} min of the key's {cost['limit_per_minute']}/min read "
        f"budget ({100 * cost['budget_share']:.1f}% of the budget while it ran)."
    )


def _notes(outcome: Outcome, drifts: list[EntityDrift], actions: Actions) -> list[str]:
    notes: list[str] = []
    gone = sum(len(d.gone) for d in drifts)
    for name, done in outcome.acted.items():
        if any(done.values()):
            notes.append(
                f"{name}: marked {done['marked']}, unmarked {done['unmarked']}, "
                f"hard-deleted {done['deleted']} row(s)."
            )
    for name, ids in outcome.still_in_api.items():
        notes.append(
            f"{name}: {len(ids)} row(s) missed by the sweep still answer GET by id; "
            "not touched (run reconcile again)."
        )
    outside = sum(d.before_start + d.after_end for d in drifts)
    if outside:
        window = f"from {outcome.start_date or 'the beginning'} to {outcome.end_date or 'now'}"
        notes.append(
            f"{outside} APIXX record(s) lie outside the window the tap syncs ({window}): "
            "not expected in the warehouse, not drift."
        )
    revived = sum(len(d.revived) for d in drifts)
    if revived and not actions.any:
        notes.append(
            f"{revived} row(s) marked deleted are back in APIXX. Run again with "
            "--mark-deleted to clear their mark."
        )
    if gone and not actions.any:
        notes.append(
            f"{gone} row(s) are gone from APIXX (deleted or merged). Run again with "
            "--mark-deleted to set _sdc_deleted_at on them (query live rows WHERE "
            "_sdc_deleted_at IS NULL), or --hard-delete to remove them."
        )
    for drift in drifts:
        plan = resync(outcome, drift)
        if plan:
            count = len(drift.missing) + len(drift.stale) + len(drift.ahead)
            notes.append(
                f"{drift.entity}: {count} missing or stale row(s). This re-syncs them "
                f"(re-reads {plan['records']} records from {plan['from']}; the "
                f"bookmark stays):\n  {plan['command']}"
            )
    fixed = sum(d.get("marked", 0) + d.get("deleted", 0) for d in outcome.acted.values())
    if outcome.remaining_drift:
        verdict = f"Drift: {outcome.remaining_drift} row(s) differ from APIXX."
        if fixed:
            verdict = f"Drift left after acting on {fixed} gone row(s): {outcome.remaining_drift}."
    elif fixed:
        verdict = f"No drift left: the {fixed} gone row(s) above are dealt with; the warehouse equals APIXX."
    else:
        verdict = "No drift: the warehouse equals APIXX."
    return ["", *notes, *([""] if notes else []), verdict]
