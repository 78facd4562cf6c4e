"""A faithful local APIXX: the data and ops APIs, auth, rate limits, faults and a control plane."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
