"""API keys: which tenant and environment a key sees, its scopes, and rotation."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from ..exceptions import NotFound


@dataclass
class ApiKey:
    key_id: str
    secret: str
    tenant: str
    scopes: frozenset[str]
    revoked: bool = False

    @property
    def env(self) -> str:
        return "test" if self.secret.startswith("apx_test_") else "live"


ALL_SCOPES = ("data:read", "flows:read", "flows:write")
DEFAULT_KEYS = [  # documented in docs/emulator.md; the demo and the tests use them
    {"key": "apx_live_acme_4f9c2e1a7b3d", "tenant": "acme", "scopes": list(ALL_SCOPES)},
    {"key": "apx_test_acme_8d2b6f0c4e1a", "tenant": "acme", "scopes": list(ALL_SCOPES)},
    {"key": "apx_live_globex_3a7e9c1d5b2f", "tenant": "globex", "scopes": list(ALL_SCOPES)},
    {"key": "apx_test_globex_6c1f8a2e4d9b", "tenant": "globex", "scopes": list(ALL_SCOPES)},
    {"key": "apx_live_acme_opsonly_2e8d5c", "tenant": "acme", "scopes": ["flows:read"]},
    {"key": "apixx_acme_data_7b3e1f9a", "tenant": "acme", "scopes": ["data:read"]},
]
KEY_PREFIXES = ("apx_live_", "apx_test_", "apixx_")


class KeyRing:
    """The keys the emulator accepts; looked up by secret, named in logs by id only."""

    def __init__(self, specs: list[dict[str, Any]]):
        self._lock = threading.Lock()
        self.by_secret: dict[str, ApiKey] = {}
        self.by_id: dict[str, ApiKey] = {}
        for i, spec in enumerate(specs, start=1):
            secret = spec["key"]
            if not secret.startswith(KEY_PREFIXES):
                raise ValueError(f"key #{i} in the keys file has no known prefix {KEY_PREFIXES}")
            key = ApiKey(spec.get("id") or f"key_{i:03d}", secret, spec["tenant"], frozenset(spec.get("scopes", ())))
            self.by_secret[secret] = key
            self.by_id[key.key_id] = key

    def lookup(self, secret: str) -> ApiKey | None:
        key = self.by_secret.get(secret)
        return None if key is None or key.revoked else key

    def rotate(self, key_id: str, tenant: str) -> str:
        """Issue a new secret for `key_id`; the old one stops working at once."""
        with self._lock:
            key = self.by_id.get(key_id)
            if key is None or key.tenant != tenant:
                raise NotFound(f"No API key with id '{key_id}'.")
            prefix = next(p for p in KEY_PREFIXES if key.secret.startswith(p))
            del self.by_secret[key.secret]
            key.secret = prefix + uuid.uuid4().hex
            self.by_secret[key.secret] = key
            return key.secret
