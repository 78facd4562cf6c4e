"""Receive APIXX webhooks: verify signatures, store deliveries once, trigger syncs."""

from __future__ import annotations

from apixx_webhooks.verify import (
    MalformedSignatureHeader,
    SignatureError,
    SignatureMismatch,
    TimestampInFuture,
    TimestampTooOld,
    compute_signature,
    parse_signature_header,
    sign,
    verify,
)

__all__ = [
    "MalformedSignatureHeader",
    "SignatureError",
    "SignatureMismatch",
    "TimestampInFuture",
    "TimestampTooOld",
    "compute_signature",
    "parse_signature_header",
    "sign",
    "verify",
]
