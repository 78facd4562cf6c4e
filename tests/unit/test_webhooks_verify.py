"""Webhook signature checks: Python sign/verify, and a cross-check against a Node verifier."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from apixx_webhooks.verify import (
    MalformedSignatureHeader,
    SignatureError,
    SignatureMismatch,
    TimestampInFuture,
    TimestampTooOld,
    compute_signature,
    sign,
    verify,
)

SECRET = "whsec_test_5d1c"
BODY = b'{"id":"evt_1","type":"run.failed","created_at":"2026-01-01T00:00:00Z","data":{}}'
T = 1_781_119_222
NODE = shutil.which("node")
NODE_VERIFIER = Path(__file__).parent / "js" / "verify.mjs"
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH; cross-check skipped")


def test_sign_produces_the_documented_header_shape() -> None:
    header = sign(SECRET, BODY, T)
    assert re.fullmatch(rf"t={T},v1=[0-9a-f]{{64}}", header)


def test_known_vector_shared_with_the_node_verifier() -> None:
    # computed independently with tests/unit/js/verify.mjs: `sign s 123` over {"a":1}
    expected = "8c8ddeb6dbd738518c68360911b16927d30e60c748c74c11ebbba99f2cb10347"
    assert compute_signature("s", b'{"a":1}', 123) == expected


def test_accepts_a_correct_signature() -> None:
    verify(SECRET, sign(SECRET, BODY, T), BODY, now=T)


def test_accepts_at_the_edges_of_the_tolerance() -> None:
    verify(SECRET, sign(SECRET, BODY, T), BODY, now=T + 300)
    verify(SECRET, sign(SECRET, BODY, T), BODY, now=T - 300)


def test_default_now_is_the_clock() -> None:
    verify(SECRET, sign(SECRET, BODY), BODY)
    with pytest.raises(TimestampTooOld):
        verify(SECRET, sign(SECRET, BODY, T - 10**6), BODY)


@pytest.mark.parametrize(
    ("now", "error", "reason"),
    [(T + 301, TimestampTooOld, "too_old"), (T - 301, TimestampInFuture, "in_future")],
)
def test_rejects_timestamps_outside_five_minutes(now: int, error: type, reason: str) -> None:
    with pytest.raises(error) as caught:
        verify(SECRET, sign(SECRET, BODY, T), BODY, now=now)
    assert caught.value.reason == reason
    assert isinstance(caught.value, SignatureError)


def test_custom_tolerance() -> None:
    with pytest.raises(TimestampTooOld):
        verify(SECRET, sign(SECRET, BODY, T), BODY, now=T + 61, tolerance=60)


GOOD_SIG = compute_signature(SECRET, BODY, T)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "garbage",
        f"t={T}",
        f"v1={GOOD_SIG}",
        f"t=,v1={GOOD_SIG}",
        f"t=abc,v1={GOOD_SIG}",
        f"t={T}.5,v1={GOOD_SIG}",
        f"t=-{T},v1={GOOD_SIG}",
        f"t=1e9,v1={GOOD_SIG}",
        f"t={T},t={T},v1={GOOD_SIG}",
        f"t={T};v1={GOOD_SIG}",
        f"t={T},v1={GOOD_SIG},junk",
        f"t={T},v0={GOOD_SIG}",
    ],
)
def test_rejects_malformed_headers(header: str | None) -> None:
    with pytest.raises(MalformedSignatureHeader) as caught:
        verify(SECRET, header, BODY, now=T)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    "header",
    [
        f"v1={GOOD_SIG},t={T}",
        f" t = {T} , v1 = {GOOD_SIG} ",
        f"t={T},v0=deadbeef,v1={GOOD_SIG}",
        f"t={T},v1={'0' * 64},v1={GOOD_SIG}",
        f"t={T},v1={GOOD_SIG},v1={'0' * 64}",
        f"t={T},v1=short,v1={GOOD_SIG}",
        f"t={T},v1={GOOD_SIG.upper()}",
    ],
)
def test_parses_robustly(header: str) -> None:
    verify(SECRET, header, BODY, now=T)


@pytest.mark.parametrize(
    ("secret", "header", "body"),
    [
        ("whsec_wrong", sign(SECRET, BODY, T), BODY),
        (SECRET, sign(SECRET, BODY, T), BODY.replace(b"run.failed", b"run.succeeded")),
        (SECRET, sign(SECRET, BODY, T), BODY + b" "),
        (SECRET, f"t={T + 1},v1={GOOD_SIG}", BODY),
        (SECRET, f"t={T},v1={GOOD_SIG[:-1]}", BODY),
        (SECRET, f"t={T},v1={GOOD_SIG}00", BODY),
        (SECRET, f"t={T},v1={'z' * 64}", BODY),
        (SECRET, f"t={T},v1=" + "\u00e9" * 64, BODY),
        (SECRET, f"t={T},v1={'0' * 64},v1={'1' * 64}", BODY),
    ],
    ids=["wrong-secret", "tampered-body", "appended-byte", "tampered-t", "truncated-sig",
         "extended-sig", "non-hex-sig", "non-ascii-sig", "no-v1-matches"],
)
def test_rejects_wrong_signatures(secret: str, header: str, body: bytes) -> None:
    with pytest.raises(SignatureMismatch) as caught:
        verify(secret, header, body, now=T)
    assert caught.value.reason == "mismatch"


def test_a_tampered_timestamp_is_a_mismatch_not_a_clock_error() -> None:
    # moving t far back must not be reported as merely "too old"
    with pytest.raises(SignatureMismatch):
        verify(SECRET, f"t={T - 10_000},v1={GOOD_SIG}", BODY, now=T)


def test_empty_secret_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        verify("", sign(SECRET, BODY, T), BODY, now=T)


def _node(*args: str, body: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NODE or "node", str(NODE_VERIFIER), *args],
        input=body, capture_output=True, timeout=30, check=False,
    )


CROSS_BODIES = [
    BODY,
    b"{}",
    '{"type":"flow.paused","name":"Caf\u00e9 \u2603 \u65e5\u672c"}'.encode(),
    b'{\n  "id": "evt_2",\n  "type": "run.partial"\n}\n',
]


@needs_node
@pytest.mark.parametrize("body", CROSS_BODIES)
def test_node_accepts_python_signatures(body: bytes) -> None:
    result = _node("verify", SECRET, sign(SECRET, body, T), f"--now={T}", body=body)
    assert result.returncode == 0, result.stderr.decode()


@needs_node
@pytest.mark.parametrize(
    ("secret", "header", "body", "reason"),
    [
        (SECRET, sign(SECRET, BODY, T), BODY + b" ", "mismatch"),
        (SECRET, f"t={T + 1},v1={GOOD_SIG}", BODY, "mismatch"),
        ("whsec_wrong", sign(SECRET, BODY, T), BODY, "mismatch"),
        (SECRET, f"t={T},v1={GOOD_SIG[:10]}", BODY, "mismatch"),
        (SECRET, "garbage", BODY, "malformed"),
    ],
    ids=["changed-body", "changed-t", "wrong-secret", "short-sig", "malformed"],
)
def test_node_rejects_tampered_deliveries(
    secret: str, header: str, body: bytes, reason: str
) -> None:
    result = _node("verify", secret, header, f"--now={T}", body=body)
    assert result.returncode == 1
    assert reason in result.stderr.decode()


@needs_node
def test_node_rejects_stale_python_signatures() -> None:
    result = _node("verify", SECRET, sign(SECRET, BODY, T), f"--now={T + 301}", body=BODY)
    assert result.returncode == 1
    assert "too_old" in result.stderr.decode()


@needs_node
@pytest.mark.parametrize("body", CROSS_BODIES)
def test_python_accepts_node_signatures(body: bytes) -> None:
    result = _node("sign", SECRET, str(T), body=body)
    assert result.returncode == 0, result.stderr.decode()
    header = result.stdout.decode().strip()
    assert header == sign(SECRET, body, T)
    verify(SECRET, header, body, now=T)
    with pytest.raises(SignatureMismatch):
        verify(SECRET, header, body + b"x", now=T)
