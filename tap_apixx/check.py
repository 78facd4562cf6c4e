"""`tap-apixx-check`: is the key good, are both APIs reachable, and how does this server page?

Run it before the first sync and whenever something looks wrong. It reads the tap's own
settings (`--config FILE`, and TAP_APIXX_* environment variables, as under Meltano), sends at
most MAX_CHECK_REQUESTS paced requests, prints a table (or `--json`) and exits 1 on any failed
check (2 when it cannot run). It never prints the key, only its prefix.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import time
import typing as t
from dataclasses import asdict, dataclass, field

import click
from singer_sdk.exceptions import ConfigValidationError

from tap_apixx.companion import build_tap, fail
from tap_apixx.errors import TapApixxError
from tap_apixx.ops_streams import OpsStream
from tap_apixx.pagination import MAX_PAGE_SIZE
from tap_apixx.probe import (
    PROBE_FIELDS,
    RATE_HEADERS,
    Prober,
    Rec,
    Reply,
    cursor_mode,
    first_disorder,
    latency_summary,
    precision_name,
    since_mode,
    tie_groups,
    timestamp_form,
)
from tap_apixx.settings import KEY_PREFIXES
from tap_apixx.streams import CanonicalStream
from tap_apixx.tap import TapApixx

MAX_CHECK_REQUESTS = 30  # 15 samples + ops + page cap + since (1-2) + cursor (2): about 22
KEY_ENVIRONMENTS = {"apx_live_": "live", "apx_test_": "test", "apixx_": "live"}
DATA_PATH_HINT = "the data API is served under /api/public/data"
OPS_PATH_HINT = "the ops API is served under /v1"
STATUS_ORDER = ("fail", "warn", "ok", "info", "skip")
STEP_NAMES = {0: "second", 3: "millisecond", 6: "microsecond"}  # the paginator's step back


@dataclass
class Row:
    check: str
    status: str  # ok | info | warn | fail | skip
    result: str


@dataclass
class Report:
    """The check's findings: rows for the table, plus the measured values for --json."""

    data_url: str
    api_url: str
    rows: list[Row] = field(default_factory=list)
    measured: dict[str, t.Any] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0

    def add(self, check: str, status: str, result: str) -> None:
        self.rows.append(Row(check, status, result))

    @property
    def ok(self) -> bool:
        return not any(r.status == "fail" for r in self.rows)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.rows) for s in STATUS_ORDER}

    def to_json(self) -> str:
        body = {
            "ok": self.ok,
            "data_url": self.data_url,
            "api_url": self.api_url,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "checks": [asdict(r) for r in self.rows],
            "measured": self.measured,
        }
        return json.dumps(body, indent=2)

    def to_text(self, width: int = 100) -> str:
        name_w = max(len(r.check) for r in self.rows) + 2
        lead = name_w + 8
        lines = [
            f"tap-apixx check: data_url {self.data_url}, api_url {self.api_url}",
            "",
            f"{'CHECK':<{name_w}}{'STATUS':<8}RESULT",
        ]
        for row in self.rows:
            wrapped = textwrap.wrap(row.result, max(30, width - lead)) or [""]
            lines.append(f"{row.check:<{name_w}}{row.status:<8}{wrapped[0]}")
            lines += [" " * lead + more for more in wrapped[1:]]
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        verdict = "OK" if self.ok else "PROBLEMS FOUND"
        lines += ["", f"{verdict}: {counts}; {self.requests} requests in {self.seconds:.1f} s."]
        return "\n".join(lines)


def run_check(tap: TapApixx) -> Report:
    """Every check, in table order, within MAX_CHECK_REQUESTS requests."""
    started = time.monotonic()
    report = Report(tap.config.get("data_url", ""), tap.config.get("api_url", ""))
    prober = Prober(tap, budget=MAX_CHECK_REQUESTS)
    canonical = [s for s in tap.streams.values() if isinstance(s, CanonicalStream)]
    ops = next(s for s in tap.streams.values() if isinstance(s, OpsStream))
    check_key(report, str(tap.config.get("api_key", "")))
    first = prober.get(
        canonical[0], canonical[0].path, {"limit": MAX_PAGE_SIZE, "fields": PROBE_FIELDS}
    )
    data_up = check_reachable(report, "data API", first, "data_url", DATA_PATH_HINT)
    ops_reply = prober.get(ops, ops.path, {"limit": 1})
    check_reachable(report, "ops API", ops_reply, "api_url", OPS_PATH_HINT)
    check_scope(report, "data:read", first, f"the {len(canonical)} canonical streams")
    check_scope(report, "flows:read", ops_reply, "the ops streams (flows, runs, connectors)")
    if data_up and first.ok:
        probe_data_api(
            report, prober, canonical, first, int(tap.config.get("page_size", MAX_PAGE_SIZE))
        )
    else:
        report.add("contract probe", "skip", "skipped: the data API did not answer 200 (see above)")
    check_rate_headers(report, prober.replies)
    check_latency(report, prober.replies)
    report.requests, report.seconds = prober.sent, time.monotonic() - started
    return report


def check_key(report: Report, key: str) -> None:
    prefix = next((p for p in KEY_PREFIXES if key.startswith(p)), None)
    if prefix is None:
        report.add("key", "fail", f"no known prefix ({', '.join(KEY_PREFIXES)})")
        return
    env = KEY_ENVIRONMENTS[prefix]
    report.measured["key"] = {"prefix": prefix, "environment": env}
    report.add("key", "ok", f"{prefix}… ({env} environment; the rest of the key is never shown)")


def check_reachable(report: Report, name: str, reply: Reply, setting: str, path_hint: str) -> bool:
    """One row: did the API answer, and if not, which setting to fix. True when it answered."""
    status, text = _reachability(reply, setting, path_hint)
    report.measured[name.lower().replace(" ", "_")] = {
        "url": reply.url,
        "status": reply.status,
        "request_id": reply.request_id,
    }
    report.add(name, status, text)
    return reply.status is not None and status != "fail"


def _reachability(reply: Reply, setting: str, path_hint: str) -> tuple[str, str]:
    code = reply.status
    if code is None:
        if reply.problem:
            return "fail", reply.problem.message
        tip = (
            "; if the server speaks https, use an https:// URL"
            if reply.url.startswith("http:")
            else ""
        )
        return "fail", f"{reply.failure}. Check {setting}{tip}."
    took = f"HTTP {code} in {reply.elapsed_ms:.0f} ms"
    if code == 200 and isinstance(reply.body, dict):
        return "ok", f"{took} (GET {reply.url})"
    if code == 200:
        return "fail", (
            f"{took}, but not the APIXX JSON ({reply.error_message}): check {setting}; {path_hint}"
        )
    if 300 <= code < 400:
        where = reply.headers.get("Location", "?")
        return "fail", (
            f"{took}: a redirect to {where}. Set {setting} to the final URL (the tap "
            "never follows redirects, so the key goes to the configured host only)"
        )
    if code == 401:
        return (
            "fail",
            f"{took}: the key was refused ({reply.describe()}); it is unknown, revoked or rotated",
        )
    if code == 403:
        return "ok", f"{took}: reachable; the key lacks a scope (below)"
    if code == 404:
        return "fail", (
            f"wrong path: GET {reply.url} answered {reply.describe()}. Check {setting}: {path_hint}"
        )
    if code == 429:
        return "warn", f"{took}: rate-limited ({reply.describe()}); another job is using this key"
    return "fail", f"{took}: {reply.describe()}"


def check_scope(report: Report, scope: str, reply: Reply, streams: str) -> None:
    if reply.status == 200:
        report.add(f"scope {scope}", "ok", f"granted: {streams} can sync")
    elif reply.status == 403:
        report.add(
            f"scope {scope}",
            "fail",
            f"missing: {streams} fail with {reply.describe()}; "
            f"use a key with {scope}, or deselect them",
        )
    else:
        report.add(f"scope {scope}", "skip", "unknown: the API did not answer (above)")
    report.measured.setdefault("scopes", {})[scope] = {200: "granted", 403: "missing"}.get(
        reply.status or 0, "unknown"
    )


def probe_data_api(
    report: Report, prober: Prober, canonical: list[CanonicalStream], first: Reply, page_size: int
) -> None:
    """Samples of every entity, then updated_since, cursor and the page cap on the best one."""
    samples = {canonical[0].name: first}
    for stream in canonical[1:]:
        samples[stream.name] = prober.get(
            stream, stream.path, {"limit": MAX_PAGE_SIZE, "fields": PROBE_FIELDS}
        )
    failed = {name: r for name, r in samples.items() if not r.ok}
    if failed:
        names = ", ".join(f"{n} ({r.describe()})" for n, r in failed.items())
        report.add("entities", "fail", f"{len(failed)} of {len(samples)} did not answer: {names}")
    else:
        total = sum(len(r.records) for r in samples.values())
        report.add(
            "entities",
            "ok",
            f"all {len(samples)} answered a {MAX_PAGE_SIZE}-record page ({total} records sampled)",
        )
    good = {n: r.records for n, r in samples.items() if r.ok}
    forms = check_timestamps(report, good)
    check_order(report, good, samples)
    entity = check_ties(report, good, page_size)
    if entity is None or forms is None:
        report.add("updated_since", "skip", "no records to probe")
        return
    stream = next(s for s in canonical if s.name == entity)
    digits, offset = max(forms)
    since = since_mode(prober, stream, good[entity], digits, offset)
    cursor = cursor_mode(prober, stream, good[entity])
    report.measured.update(since_mode=since.value, cursor_mode=cursor.value, probe_entity=entity)
    report.add(
        "updated_since",
        _since_status(since.value),
        f"{since.value} on '{entity}': {since.evidence}",
    )
    report.add("cursor", "info", f"{cursor.value}: {cursor.evidence}. The tap never uses cursor.")
    check_page_cap(report, prober, stream, samples[entity])
    add_paging_plan(report, since.value, page_size, digits)


def check_timestamps(report: Report, good: dict[str, list[Rec]]) -> set[tuple[int, str]] | None:
    forms: dict[tuple[int, str], int] = {}
    bad = []
    for name, records in good.items():
        for record in records:
            form = timestamp_form(record.ts)
            if form is None:
                bad.append(f"{name} {record.id}: {record.ts!r}")
            else:
                forms[form] = forms.get(form, 0) + 1
    report.measured["timestamp_forms"] = [
        {"precision": precision_name(d), "offset": o, "records": n}
        for (d, o), n in sorted(forms.items())
    ]
    spelled = "; ".join(
        f"{precision_name(d)} precision, {o} ({n} records)" for (d, o), n in sorted(forms.items())
    )
    if bad:
        report.add("timestamps", "fail", f"{len(bad)} updated_at not RFC 3339, e.g. {bad[0]}")
    elif len(forms) > 1:
        report.add("timestamps", "warn", f"mixed forms: {spelled}; compared as instants")
    elif forms:
        report.add("timestamps", "ok", spelled)
    return set(forms) or None


def check_order(report: Report, good: dict[str, list[Rec]], samples: dict[str, Reply]) -> None:
    for name, records in good.items():
        index = first_disorder(records)
        if index is not None:
            report.measured["ordered"] = False
            report.add(
                "order",
                "fail",
                (
                    f"'{name}': record {index + 1} ({records[index].ts}) comes after {records[index - 1].ts} "
                    f"(request_id={samples[name].request_id}); the tap stops on such a page"
                ),
            )
            return
    report.measured["ordered"] = True
    report.add("order", "ok", f"ascending by updated_at in all {len(good)} samples")


def check_ties(report: Report, good: dict[str, list[Rec]], page_size: int) -> str | None:
    """The largest tie group in the samples; returns the entity to probe further (the one with
    the largest group, which tells the cursor semantics apart best)."""
    best: tuple[int, str, str] | None = None
    for name, records in good.items():
        for start, size in tie_groups(records):
            if best is None or size > best[0]:
                best = (size, name, records[start].ts)
    if best is None:
        return None
    size, name, ts = best
    report.measured["largest_tie_group"] = {"records": size, "entity": name, "updated_at": ts}
    text = f"{size} records share updated_at {ts} in '{name}' (in the samples)"
    if size >= MAX_PAGE_SIZE:
        report.add(
            "largest tie group",
            "fail",
            text + f": as large as the API's largest page "
            f"({MAX_PAGE_SIZE}); no client can page through it safely",
        )
    elif size > page_size:
        report.add(
            "largest tie group",
            "info",
            text + f": above page_size {page_size}; the tap "
            f"reads such a group with one {MAX_PAGE_SIZE}-record page",
        )
    else:
        report.add("largest tie group", "ok", text)
    return name


def check_page_cap(report: Report, prober: Prober, stream: CanonicalStream, full: Reply) -> None:
    over = prober.get(stream, stream.path, {"limit": MAX_PAGE_SIZE + 1, "fields": PROBE_FIELDS})
    accepted = f"limit={MAX_PAGE_SIZE} accepted ({len(full.records)} records)"
    report.measured["page_cap"] = {"limit_1000": full.status, "limit_1001": over.status}
    if over.status in (400, 422):
        report.add(
            "page cap", "ok", f"{accepted}; limit={MAX_PAGE_SIZE + 1} refused: {over.describe()}"
        )
    elif over.ok:
        report.add(
            "page cap",
            "info",
            f"{accepted}; limit={MAX_PAGE_SIZE + 1} accepted too "
            f"({len(over.records)} records): the tap never asks for more than {MAX_PAGE_SIZE}",
        )
    else:
        report.add("page cap", "warn", f"{accepted}; limit={MAX_PAGE_SIZE + 1}: {over.describe()}")


def check_rate_headers(report: Report, replies: list[Reply]) -> None:
    answered = [r for r in replies if r.ok]  # a 404 from a wrong path says nothing about the API
    if not answered:
        report.add("rate-limit headers", "skip", "no successful response to read them from")
        return
    with_all = [r for r in answered if all(h in r.headers for h in RATE_HEADERS)]
    if not with_all:
        report.add(
            "rate-limit headers",
            "warn",
            "absent: the tap cannot pace itself and will wait out each 429 (Retry-After) instead",
        )
        report.measured["rate_limit"] = None
        return
    last = with_all[-1].headers
    values = {h: last[h] for h in RATE_HEADERS}
    report.measured["rate_limit"] = values
    reset_in = _int(values["X-RateLimit-Reset"]) - int(time.time())
    share = (
        f"all {len(answered)}"
        if len(with_all) == len(answered)
        else f"{len(with_all)} of {len(answered)}"
    )
    text = (
        f"on {share} successful responses; last: limit {values['X-RateLimit-Limit']}, "
        f"remaining {values['X-RateLimit-Remaining']}, reset in {max(reset_in, 0)} s"
    )
    report.add("rate-limit headers", "ok" if len(with_all) == len(answered) else "warn", text)


def check_latency(report: Report, replies: list[Reply]) -> None:
    summary = latency_summary(replies)
    if summary is None:
        report.add("latency", "skip", "no response to time")
        return
    median, p90, worst = summary
    report.measured["latency_ms"] = {
        "median": round(median, 1),
        "p90": round(p90, 1),
        "max": round(worst, 1),
    }
    report.add(
        "latency",
        "info",
        f"median {median:.0f} ms, p90 {p90:.0f} ms, max {worst:.0f} ms "
        f"over {len(replies)} requests (to the response headers)",
    )


def _since_status(mode: str) -> str:
    return {"inclusive": "ok", "exclusive": "ok", "ignored": "fail"}.get(mode, "warn")


def add_paging_plan(report: Report, since: str, page_size: int, digits: int) -> None:
    """Which paging the tap uses on what was measured (tap_apixx/pagination.py), and whether
    that is safe here."""
    unit = STEP_NAMES.get(digits, f"1e-{digits} s")
    how = {
        "inclusive": "from the last instant seen, once the first answer shows the server "
        f"inclusive (before that, from one {unit} earlier)",
        "exclusive": f"from one {unit} before the last instant seen, so this exclusive "
        "server returns the whole tie group there",
    }.get(since, f"from one {unit} before the last instant seen (either reading is safe)")
    plan = (
        f"pages of {page_size} by updated_since {how}; ids already emitted are skipped and "
        "must come back (else GET by id must show them updated or gone); a tie group that "
        f"fills a page is read with one {MAX_PAGE_SIZE}-record page; cursor is not used"
    )
    if since == "ignored":
        report.add(
            "paging",
            "fail",
            plan + ". Here the tap stops at the first page that "
            "starts before the updated_since it asked",
        )
    else:
        report.add("paging", "ok", plan)


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


# Command line

NAME = "tap-apixx-check"
EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


@click.command(
    name=NAME,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=f"Exit status: {EXIT_OK} every check passed, {EXIT_PROBLEMS} a check failed, "
    f"{EXIT_ERROR} the check could not run (bad settings). See docs/incremental.md.",
)
@click.option(
    "--config",
    "configs",
    multiple=True,
    metavar="FILE",
    help="The tap's config file (repeatable; later files win). TAP_APIXX_* "
    "environment variables are read too, as the tap reads them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def main(configs: tuple[str, ...], as_json: bool) -> None:
    """Check the API key, both APIs and how the data API pages, with the tap's own settings,
    in at most 30 paced requests."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        report = run_check(build_tap(configs))
    except ConfigValidationError as exc:
        _fail(*[f"config: {e}" for e in exc.errors] or [str(exc)])
    except (TapApixxError, ValueError) as exc:  # ValueError: e.g. TAP_APIXX_PAGE_SIZE=abc
        _fail(str(exc))
    click.echo(report.to_json() if as_json else report.to_text())
    sys.exit(EXIT_OK if report.ok else EXIT_PROBLEMS)


def _fail(*lines: str) -> t.NoReturn:
    fail(NAME, EXIT_ERROR, *lines)


if __name__ == "__main__":
    main()
