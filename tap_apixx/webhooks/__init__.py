"""Receive APIXX webhooks: verify signatures, store deliveries once, trigger syncs."""

from __future__ import annotations

from tap_apixx.webhooks.verify import (
    SignatureError,
    compute_signature,
    parse_signature_header,
    sign,
    verify,
)

__all__ = ["SignatureError", "compute_signature", "parse_signature_header", "sign", "verify"]
