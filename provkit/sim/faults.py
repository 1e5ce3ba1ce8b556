"""Fault injection for the simulated Graph server: ``429=0.1,503=0.05,504=0.05,reset=0.02,slow=0.05,truncate=0.02``.

Each request gets a number in arrival order; whether request n is faulted, and how, is a pure function of
(seed, n), so a run with the same seed and the same request order sees the same faults.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

KINDS = ("429", "503", "504", "reset", "slow", "truncate")


@dataclass
class FaultPlan:
    shares: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    slow_seconds: float = 1.5
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    injected: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0, slow_seconds: float = 1.5) -> FaultPlan:
        """Parse a ``kind=share,...`` spec; raises ValueError naming the bad part."""
        shares: dict[str, float] = {}
        for part in (spec or "").split(","):
            part = part.strip()
            if not part:
                continue
            kind, sep, value = part.partition("=")
            kind = kind.strip().lower()
            if not sep or kind not in KINDS:
                raise ValueError(
                    f"bad fault {part!r}: expected KIND=SHARE with KIND one of {', '.join(KINDS)}"
                )
            try:
                share = float(value)
            except ValueError:
                raise ValueError(
                    f"bad fault share {value!r} for {kind}: expected a number between 0 and 1"
                ) from None
            if not 0 <= share <= 1:
                raise ValueError(f"fault share for {kind} must be between 0 and 1, got {share}")
            shares[kind] = share
        if sum(shares.values()) > 1:
            raise ValueError("fault shares add up to more than 1")
        return cls(shares=shares, seed=seed, slow_seconds=slow_seconds)

    @property
    def active(self) -> bool:
        return any(v > 0 for v in self.shares.values())

    def next(self) -> str | None:
        """The fault for the next request, or None."""
        if not self.active:
            return None
        with self._lock:
            n = self._counter
            self._counter += 1
        digest = hashlib.blake2b(f"{self.seed}:{n}".encode(), digest_size=8).digest()
        roll = int.from_bytes(digest, "big") / 2**64
        acc = 0.0
        for kind in KINDS:
            acc += self.shares.get(kind, 0.0)
            if roll < acc:
                with self._lock:
                    self.injected[kind] = self.injected.get(kind, 0) + 1
                return kind
        return None
