"""tap-apixx: a Singer tap for the APIXX canonical data layer, built on the Meltano Singer SDK."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
