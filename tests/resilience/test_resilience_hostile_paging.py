"""Hostile input classes 5 and 6: paging that does not move forward, objects gone before detail.

Class 5: a server whose pages loop (a cursor graph with cycles, repeated pages, a stuck cursor,
pages that ignore the request) never makes the tap loop: it ends after a bounded number of
requests, with exit 0 (the walk ended) or one line naming the stream and the request id.
Class 6: a flow or run listed and then gone (404 on its detail) is skipped with one warning.
"""

from __future__ import annotations

import json
import typing as t

from hypothesis import given
from hypothesis import strategies as st

from tests.helpers.hostile import Tally, fuzz, run_cli, tally_fixture, write_inputs
from tests.helpers.hostile_server import (
    HostileServer,
    Reply,
    Request,
    json_reply,
    ops_detail,
    ops_item,
    ops_items,
    ops_page,
    uid,
)
from tests.helpers.resilience import no_secrets_anywhere  # noqa: F401  (autouse: scanned for the key)
from tests.helpers.tap import catalog_for

KEY = "apx_live_acme_hostile_paging_77b0e4"
REQUEST_CAP = 300  # a tap still asking after this many requests is looping

tally5 = tally_fixture(5)
tally6 = tally_fixture(6)
POOL = [f"con_{i:03d}" for i in range(8)]


class Looping:
    """Serves `pages(request_number, request)`; past REQUEST_CAP it ends the list and notes it."""

    def __init__(self, pages: t.Callable[[int, Request], Reply]) -> None:
        self.pages = pages
        self.count = 0
        self.looped = False

    def __call__(self, request: Request) -> Reply:
        self.count += 1
        if self.count > REQUEST_CAP:
            self.looped = True
            return json_reply({"data": [], "meta": {"total": 0, "has_more": False},
                               "entity": "x", "count": 0, "next_cursor": None})
        return self.pages(self.count, request)


def sync(route: t.Callable[[Request], Reply], streams: list[str], tmp_path, **extra: t.Any):
    with HostileServer(route) as server:
        config = {"api_key": KEY, "api_url": f"{server.url}/v1", "max_parallel_streams": 1,
                  "semantics_probe": False,
                  "data_url": f"{server.url}/api/public/data", "page_size": 5, **extra}
        argv = write_inputs(tmp_path, config=config, catalog=catalog_for(streams))
        return run_cli(argv).check(), server


def records_of(stdout: str, stream: str) -> list[str]:
    import json

    out = []
    for line in stdout.splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD" and message["stream"] == stream:
            out.append(message["record"].get("id") or message["record"].get("canonical_id"))
    return out


# Class 5, ops lists: a random cursor graph. token -> (ids of the page, has_more).

GRAPHS = st.dictionaries(
    keys=st.none() | st.sampled_from(POOL),
    values=st.tuples(st.lists(st.sampled_from(POOL), max_size=5), st.booleans() | st.just(True)),
    min_size=1,
).filter(lambda g: None in g)


def walk(graph: dict) -> tuple[str, list[str]]:
    """What a correct tap does with `graph`: ('ok', ids) or ('stuck', ids emitted first)."""
    token, seen, emitted = None, set(), []
    while True:
        ids, more = graph.get(token, ([], False))
        if not ids:
            return "ok", emitted
        if seen & set(ids) or len(set(ids)) < len(ids):
            return "stuck", emitted
        seen |= set(ids)
        emitted += ids
        if not more:
            return "ok", emitted
        token = ids[-1]


@fuzz(50)
@given(graph=GRAPHS, request_ids=st.booleans())
def test_an_ops_cursor_graph_with_cycles_never_loops(graph, request_ids, tmp_path, tally5: Tally):
    def pages(number: int, request: Request) -> Reply:
        ids, more = graph.get(request.query.get("starting_after"), ([], False))
        body = {"data": [ops_item(i) for i in ids],
                "meta": {"total": len(POOL), "has_more": more}}
        return json_reply(body, **({"request_id": f"req_page_{number}"} if request_ids else {}))

    route = Looping(pages)
    outcome, _ = sync(route, ["connectors"], tmp_path)
    expected, emitted = walk(graph)
    assert not route.looped, "the tap kept paging a list that does not move forward"
    if expected == "ok":
        assert outcome.code == 0, outcome.errors
        assert records_of(outcome.stdout, "connectors") == emitted
    else:
        assert outcome.code == 1, (graph, outcome.stdout[-500:])
        line = outcome.errors[0]
        assert "connectors" in line and "does not move forward" in line
        assert ("req_page_" if request_ids else "request_id=") in line
        assert records_of(outcome.stdout, "connectors") == emitted  # no duplicate was emitted
    tally5.add(outcome.kind)


def test_an_exact_repeat_and_an_alternating_cursor_end_in_one_line(tmp_path, tally5: Tally):
    for name, pattern in {"exact repeat": ["a"], "alternating": ["a", "b"],
                          "three-cycle": ["a", "b", "c"]}.items():
        pages_by_name = {p: ops_items(3, f"con_{p}") for p in "abc"}

        def pages(number: int, request: Request, pattern=pattern, pages_by_name=pages_by_name):
            rows = pages_by_name[pattern[(number - 1) % len(pattern)]]
            return json_reply({"data": rows, "meta": {"total": 99, "has_more": True}},
                              request_id=f"req_{number}")

        route = Looping(pages)
        outcome, _ = sync(route, ["connectors"], tmp_path / name.replace(" ", "_"))
        assert not route.looped, name
        assert outcome.code == 1, name
        assert "connectors" in outcome.errors[0] and f"req_{len(pattern) + 1}" in outcome.errors[0]
        tally5.add(outcome.kind)


# Class 5, data lists: pages that ignore the request (repeat, alternate, stuck cursor, shuffle).

STAMPS = [f"2026-01-01T00:00:0{i}.000Z" for i in range(4)]
DATA_POOL = [{"canonical_id": uid(f"ord-{i}"), "updated_at": STAMPS[i % 4]} for i in range(12)]
DATA_PAGES = st.lists(
    st.tuples(st.lists(st.sampled_from(DATA_POOL), max_size=6).map(
        lambda rows: sorted(rows, key=lambda r: r["updated_at"])),
        st.none() | st.sampled_from(["c1", "c2", *STAMPS])),
    min_size=1, max_size=5)


@fuzz(50)
@given(plan=DATA_PAGES)
def test_data_pages_that_ignore_the_request_never_loop(plan, tmp_path, tally5: Tally):
    def pages(number: int, request: Request) -> Reply:
        rows, cursor = plan[(number - 1) % len(plan)]
        return json_reply({"entity": "order", "count": len(rows), "next_cursor": cursor,
                           "data": rows}, request_id=f"req_data_{number}")

    route = Looping(pages)
    outcome, _ = sync(route, ["order"], tmp_path)
    assert not route.looped, plan
    if outcome.code:
        assert "order" in outcome.errors[0] and "req_data_" in outcome.errors[0]
    tally5.add(outcome.kind)


# Class 6: a flow or a run listed, then gone (404 or 410) when its detail is asked for.

FLOWS = ops_items(12, "flw")
RUNS = [{**ops_item(f"run_{i:04d}"), "status": "failed",
         "started_at": f"2026-01-01T00:00:{i:02d}.000Z"} for i in range(12)]


@fuzz(20)
@given(gone=st.sets(st.integers(0, 11)), status=st.sampled_from([404, 410]),
       stream=st.sampled_from(["flows", "runs"]))
def test_an_object_gone_before_its_detail_is_skipped_with_a_warning(gone, status, stream,
                                                                      tmp_path, tally6: Tally):
    items = FLOWS if stream == "flows" else RUNS
    gone_ids = {items[i]["id"] for i in gone}

    def route(request: Request) -> Reply:
        parts = request.path.split("/")  # ['', 'v1', stream, id?]
        if len(parts) == 3:
            return ops_page(items, request)
        object_id = parts[3]
        if object_id in gone_ids:
            return json_reply({"error": {"code": "not_found", "message": "No such object",
                                         "request_id": f"req_gone_{object_id}"}}, status)
        return json_reply(ops_detail(next(i for i in items if i["id"] == object_id)))

    outcome, _ = sync(route, [stream], tmp_path)
    assert outcome.code == 0, outcome.errors
    assert set(records_of(outcome.stdout, stream)) == {i["id"] for i in items} - gone_ids
    warned = [w for w in outcome.warnings if "gone" in w]
    assert len(warned) == len(gone_ids)
    for object_id in gone_ids:
        assert any(object_id in w and f"req_gone_{object_id}" in w for w in warned)
    assert "data_url" not in outcome.log
    tally6.add(outcome.kind)


def test_a_list_404_is_still_fatal_with_its_hint(tmp_path, tally6: Tally) -> None:
    def route(request: Request) -> Reply:
        return json_reply({"error": {"code": "not_found", "message": "No route"}}, 404,
                          request_id="req_list_404")

    outcome, _ = sync(route, ["flows"], tmp_path)
    assert outcome.code == 1 and "req_list_404" in outcome.errors[0]
    assert "api_url" in outcome.errors[0]
    tally6.add(outcome.kind)


@fuzz(20)
@given(stream=st.sampled_from(["flows", "runs"]), wrong=st.integers(0, 11),
       answer=st.sampled_from(["another listed id", "an unlisted id", "a look-alike id",
                               "a long id", "a number", "null", "no id"]))
def test_a_detail_that_answers_for_another_object_stops_the_sync(stream, wrong, answer, tmp_path,
                                                                   tally6: Tally):
    """`{**listed, **detail}` would load the detail under its own id: one object twice, one lost."""
    items = FLOWS if stream == "flows" else RUNS
    asked = items[wrong]["id"]
    sent = {"another listed id": items[(wrong + 1) % len(items)]["id"], "an unlisted id": "obj_zz",
            "a look-alike id": asked[:-1] + "\u0661",  # an Arabic-Indic digit one
            "a long id": asked + "_" + "x" * 200, "a number": 7, "null": None, "no id": ...}[answer]

    def route(request: Request) -> Reply:
        parts = request.path.split("/")  # ['', 'v1', stream, id?]
        if len(parts) == 3:
            return ops_page(items, request)
        detail = ops_detail(next(i for i in items if i["id"] == parts[3]))
        if parts[3] == asked:
            detail.pop("id")
            if sent is not ...:
                detail["id"] = sent
        return json_reply(detail, request_id=f"req_detail_{parts[3]}")

    outcome, _ = sync(route, [stream], tmp_path)
    emitted = records_of(outcome.stdout, stream)
    if answer == "no id":  # the listed id stands: nothing to mix up
        assert outcome.code == 0, outcome.errors
        assert emitted == [i["id"] for i in items]
    else:
        assert outcome.code == 1, emitted
        line = outcome.errors[0]
        assert stream in line and f"req_detail_{asked}" in line, line
        shown = json.dumps(sent) if not isinstance(sent, str) else ascii(sent)[:60]
        assert f"for '{asked}' answered for id {shown}" in line, line  # both, told apart
        assert len(outcome.errors) == 1
        assert asked not in emitted and len(set(emitted)) == len(emitted)  # nothing loaded twice
    tally6.add(outcome.kind)
