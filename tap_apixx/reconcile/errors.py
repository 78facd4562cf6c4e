"""The one error type of reconcile: printed as a single `tap-apixx-reconcile: error: ...` line."""

from __future__ import annotations

from tap_apixx.errors import TapApixxError


class ReconcileError(TapApixxError):
    """Reconcile cannot go on: a warehouse it cannot read or write, a bad option."""
