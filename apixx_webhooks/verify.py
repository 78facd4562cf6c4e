"""Sign and verify APIXX webhook signatures (``t=<unix>,v1=<hex HMAC-SHA256>``), stdlib only."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

DEFAULT_TOLERANCE = 300  # documented: reject deliveries older than 5 minutes
SIGNATURE_SCHEME = "v1"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # digits only: no sign, no fraction, no exponent


class SignatureError(Exception):
    """A delivery failed signature verification; ``reason`` says which check failed."""

    reason = "invalid"


class MalformedSignatureHeader(SignatureError):
    reason = "malformed"


class TimestampTooOld(SignatureError):
    reason = "too_old"


class TimestampInFuture(SignatureError):
    reason = "in_future"


class SignatureMismatch(SignatureError):
    reason = "mismatch"


def compute_signature(secret: str, raw_body: bytes, t: int) -> str:
    """Hex HMAC-SHA256 of ``"<t>.<raw body>"`` keyed with the secret."""
    if isinstance(raw_body, str):
        raw_body = raw_body.encode("utf-8")
    message = str(int(t)).encode("ascii") + b"." + raw_body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, raw_body: bytes, t: int | None = None) -> str:
    """The ``X-Apixx-Signature`` header value for a body sent at unix time ``t`` (default now)."""
    t = int(time.time()) if t is None else int(t)
    return f"t={t},{SIGNATURE_SCHEME}={compute_signature(secret, raw_body, t)}"


def parse_signature_header(header: str | None) -> tuple[int, list[str]]:
    """Split a header into its timestamp and v1 signatures; parts may come in any order."""
    if not header or not header.strip():
        raise MalformedSignatureHeader("missing signature header")
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise MalformedSignatureHeader("signature header part without '='")
        key, value = key.strip(), value.strip()
        if key == "t":
            timestamps.append(value)
        elif key == SIGNATURE_SCHEME:
            signatures.append(value)
        # other schemes (v0, a future v2) are ignored, as the sender may add them
    if len(timestamps) != 1 or not _UNIX_SECONDS.fullmatch(timestamps[0]):
        raise MalformedSignatureHeader("signature header needs exactly one integer t=")
    if not signatures:
        raise MalformedSignatureHeader("signature header has no v1= signature")
    return int(timestamps[0]), signatures


def _any_signature_matches(expected: str, candidates: list[str]) -> bool:
    expected_bytes = expected.encode("ascii")
    matched = False
    for candidate in candidates:
        # non-hex or wrong-length values can never match; skip them without leaking timing
        if _HEX_DIGEST.fullmatch(candidate):
            matched |= hmac.compare_digest(expected_bytes, candidate.lower().encode("ascii"))
    return matched


def verify(
    secret: str,
    signature_header: str | None,
    raw_body: bytes,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Return if the header signs ``raw_body`` with ``secret`` within ``tolerance`` seconds.

    Raises a ``SignatureError`` subclass otherwise. The signature is checked before the clock,
    so a tampered timestamp reports ``mismatch`` rather than a misleading clock error.
    """
    if not secret:
        raise ValueError("webhook secret must not be empty")
    t, candidates = parse_signature_header(signature_header)
    if not _any_signature_matches(compute_signature(secret, raw_body, t), candidates):
        raise SignatureMismatch("no v1 signature matches the body")
    now = time.time() if now is None else now
    if t < now - tolerance:
        raise TimestampTooOld(f"timestamp is more than {tolerance}s old")
    if t > now + tolerance:
        raise TimestampInFuture(f"timestamp is more than {tolerance}s in the future")
