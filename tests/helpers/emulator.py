"""The emulator flags the suites start from."""

from __future__ import annotations

# Small, fast, and with limits high enough that only the rate-limit tests meet them.
FAST_FLAGS = {"records_per_entity": 300, "read_limit": 100000, "write_limit": 100000, "trigger_limit": 100000}
