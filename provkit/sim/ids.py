"""Deterministic, reversible GUIDs for the simulated tenant.

Every id the simulator hands out (users, groups, log entries, change ids, cycle ids) is a GUID that encodes where
the object lives (kind and integer coordinates), scrambled with a key derived from the seed. The server can thus
answer ``id eq '...'`` by decoding instead of scanning, and the tenant never has to keep ids in memory.
"""

from __future__ import annotations

import hashlib
import uuid

_MASK = (1 << 128) - 1
_MULT = 0x9E3779B97F4A7C15F39CC0605CEDC835 | 1
_MULT_INV = pow(_MULT, -1, 1 << 128)

# kinds (4 bits)
USER, GROUP, SERVICE_PRINCIPAL, APPLICATION, ENTRY, CHANGE, CYCLE, ACTIVITY, AUDIT, ASSIGNMENT, MISC = range(
    11
)
# Where the tenant's own id sits: ``IdCodec(seed).encode(*TENANT_ID)`` is the tenant id of the tenant with that seed.
TENANT_ID = (MISC, 0, 0, 1)


def _xorshift(x: int) -> int:
    x ^= x >> 61
    x ^= x >> 37
    return x & _MASK


def _unxorshift(y: int) -> int:
    # invert x ^= x >> 37, then x ^= x >> 61 (each is its own inverse after enough rounds)
    x = y
    for _ in range(4):
        x = y ^ (x >> 37)
    y = x
    for _ in range(3):
        x = y ^ (x >> 61)
    return x & _MASK


class IdCodec:
    """Encodes (kind, a, b, c) with a < 2**16, b < 2**28, c < 2**36 into a GUID string and back."""

    def __init__(self, seed: int) -> None:
        digest = hashlib.blake2b(f"provkit-sim:{seed}".encode(), digest_size=16).digest()
        self._key = int.from_bytes(digest, "big")
        self._check = self._key >> 100  # 28 bits checked on decode so foreign GUIDs are rejected

    def encode(self, kind: int, a: int = 0, b: int = 0, c: int = 0) -> str:
        raw = (self._check << 100) | (kind << 96) | (a << 64) | (b << 36) | c
        x = (raw * _MULT) & _MASK
        h = f"{_xorshift(x) ^ self._key:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def decode(self, text: str) -> tuple[int, int, int, int] | None:
        """Return (kind, a, b, c), or None when text is not an id this tenant issued."""
        try:
            x = uuid.UUID(str(text)).int
        except (ValueError, AttributeError, TypeError):
            return None
        x = _unxorshift(x ^ self._key)
        raw = (x * _MULT_INV) & _MASK
        if raw >> 100 != self._check:
            return None
        return (raw >> 96) & 0xF, (raw >> 64) & 0xFFFF, (raw >> 36) & 0xFFFFFFF, raw & 0xFFFFFFFFF

    def hex32(self, kind: int, a: int = 0, b: int = 0) -> str:
        """A 32-hex-digit token (as in job ids such as ``SalesforceOutDelta.<32 hex>``)."""
        return self.encode(kind, a, b).replace("-", "")
