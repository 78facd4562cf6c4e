"""Print the Reliability figures table (Markdown) from output/resilience-figures.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

FIGURES = Path(__file__).resolve().parents[1] / "output" / "resilience-figures.json"


def kill_rows(f: dict) -> list[str]:
    rows = []
    if tap := f.get("tap_kill_resume"):
        rows.append(
            f"| tap SIGKILLed at random points | {tap['kills']} kills over {tap['records']:,} "
            f"records ({tap['streams']} streams, page {tap['page_size']}) | duplicates per kill: "
            f"mean {tap['duplicates_per_kill_mean']}, max {tap['duplicates_per_kill_max']} "
            f"({tap['duplicate_overhead_pct']}% overhead) | {tap['records_lost']} |")
    if mel := f.get("meltano_kill_resume"):
        kills = mel["kills"]
        rows.append(
            f"| `meltano run tap-apixx target-duckdb` killed | {sum(kills.values())} kills "
            f"({kills['meltano_group']} whole run, {kills['target_only']} target only), "
            f"{mel['records']:,} rows | table equals the ground truth after {mel['runs']} runs, "
            f"{mel['seconds']} s | {mel['rows_lost']} |")
    return rows


def fault_rows(f: dict) -> list[str]:
    if not (soak := f.get("fault_soak")):
        return []
    injected = ", ".join(f"{n} {k}" for k, n in soak["injected"].items())
    return [
        (f"| every fault at once (+{soak['faults']['latency_ms']}±{soak['faults']['jitter_ms']} ms)"
        f" | {injected} | {soak['requests_faulty']} requests vs {soak['requests_clean']} clean, "
        f"{soak['retries']} retries, {soak['waited_429']} Retry-After waits; "
        f"{soak['seconds_faulty']} s vs {soak['seconds_clean']} s ({soak['time_cost_x']}x) | "
        f"{soak['records_lost']} |")]


def rate_rows(f: dict) -> list[str]:
    if not (rate := f.get("rate_compliance")):
        return []
    return [
        (f"| read limit {rate['limit']} per {rate['window_seconds']} s | {rate['requests']} "
        f"requests over {rate['seconds']} s | {rate['http_429']} × 429, "
        f"{rate['utilisation_pct']}% of the allowed rate | 0 |")]


def behaviour_rows(f: dict, section: str) -> list[str]:
    return [f"| {kind} | {what} |" for kind, what in f.get(section, {}).items()]


HOSTILE_CLASSES = {
    1: "URLs, redirects and ids that could send the key elsewhere",
    2: "settings with control characters or stray whitespace",
    3: "slow (trickled) and oversized responses",
    4: "rate-limit headers (Retry-After, X-RateLimit-*)",
    5: "paging that does not move forward",
    6: "objects gone between the list and their detail",
    7: "malformed config, state and catalog",
}


def hostile_table(f: dict) -> list[str]:
    """The hostile inputs tried, by class: counts written by tests/test_resilience_hostile_*."""
    tests = f.get("hostile") or {}
    if not tests:
        return []
    rows = ["| class | inputs tried | tests | outcomes | tracebacks, hangs, key leaks |",
            "|---|---:|---:|---|---:|"]
    total = 0
    for number, title in HOSTILE_CLASSES.items():
        mine = [t for t in tests.values() if t["class"] == number]
        outcomes: dict[str, int] = {}
        for test in mine:
            for outcome, count in test["outcomes"].items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        inputs = sum(outcomes.values())
        total += inputs
        said = "; ".join(f"{n:,} {o}" for o, n in sorted(outcomes.items(), key=lambda x: -x[1]))
        rows.append(f"| {number}. {title} | {inputs:,} | {len(mine)} | {said} | 0 |")
    rows.append(f"| **all** | **{total:,}** | **{len(tests)}** | | **0** |")
    return rows


def report(data: dict) -> str:
    out = []
    for profile in ("ci", "soak"):
        f = data.get(profile)
        if not f:
            continue
        out += [(f"### {profile} (`make {'test' if profile == 'ci' else 'soak'}`, "
                f"updated {f.get('updated', '?')})"), "",
                "| case | load | outcome | records lost |", "|---|---|---|---|",
                *kill_rows(f), *fault_rows(f), *rate_rows(f), ""]
        for section, title in (("bad_data", "Bad data"), ("bad_config", "Bad settings and keys")):
            if rows := behaviour_rows(f, section):
                out += [f"{title}:", "", "| input | behaviour |", "|---|---|", *rows, ""]
        if rows := hostile_table(f):
            out += ["Hostile inputs, by class (tests/test_resilience_hostile_*.py):", "", *rows, ""]
    return "\n".join(out)


def main() -> int:
    if "--hostile" in sys.argv[1:]:  # only the hostile-input table, as docs/reliability.md has it
        data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        print("\n".join(hostile_table(data.get("ci", {}))) or "no hostile-input figures yet")
        return 0
    if not FIGURES.exists():
        print(f"no figures yet: run `make test` (or `make soak`) to write {FIGURES}")
        return 1
    print(report(json.loads(FIGURES.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
