"""The emulator's state in plain Python, one module per concern; `Store` holds it all."""

from __future__ import annotations

from .store import Settings, Store

__all__ = ["Settings", "Store"]
