"""API keys: SHA-256 digests in the configuration, compared in constant time.

Plain keys are never stored. ``new_key`` makes one for ``throughput new-key``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.config import WorkstreamConfig

__all__ = ["KeyRing", "digest", "new_key"]


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The SHA-256 hex digest that the configuration lists for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """Which key digests may post to which workstream."""

    # Compared against when the workstream is unknown, so that an unknown workstream costs the
    # same work as a known one with a wrong key: ids cannot be probed by the answer or its timing.
    _NOBODY = ("0" * 64,)

    def __init__(self, digests: dict[str, tuple[str, ...]]) -> None:
        self._digests = {ws: tuple(d.lower() for d in ds) for ws, ds in digests.items()}

    @classmethod
    def from_config(cls, config: WorkstreamConfig) -> KeyRing:
        return cls({w.id: w.api_key_sha256 for w in config.workstreams})

    def workstreams_without_keys(self) -> list[str]:
        return [ws for ws, ds in self._digests.items() if not ds]

    def allows(self, workstream: str, key: str | None) -> bool:
        """Whether ``key`` is one of ``workstream``'s keys; False for an unknown workstream."""
        known = self._digests.get(workstream)
        supplied = digest(key or "")
        matched = False
        for candidate in known or self._NOBODY:
            matched |= hmac.compare_digest(supplied, candidate)
        return matched and bool(key) and bool(known)
