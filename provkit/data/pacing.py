"""Pacing calls under Graph's reporting throttle: 5 requests per 10 s per app and tenant (reference 6.1).

:class:`AuditPacer` spaces the calls of one client; :func:`shared_pacer` gives every client of one caller
identity in the process the same pacer, so parallel fetches share the budget the service enforces.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from provkit.data.auth import Settings
from provkit.errors import ConfigError

__all__ = ["AuditPacer", "shared_pacer"]


class AuditPacer:
    """Let at most ``limit`` calls be counted in any ``per``-second window (sliding), waiting before a call.

    Three moments could count a call: its send (here), its arrival (the service's count) and its answer (here
    again). Graph counts reporting calls (``/auditLogs``) per app and tenant: 5 per 10 s, any request type,
    throttled ones included (reference 6.1, throttling-limits), and the simulator counts each call when it
    arrives. The arrival is unknown here, but it lies between the two moments known: after the send, and before
    the answer (the service has counted a call by the time it answers). So a call counts here from the sooner of
    its answer and its send plus ``margin``; its slot frees ``per`` after that:

    - the answer is a hard bound: a call sent ``per`` after an earlier call's answer arrives at least ``per``
      after that call arrived, however late either is on its way. When answers come back within the margin (a
      small page, a warm connection), no margin is lost at all;
    - the send plus the margin is a guess for slow answers (a 1,000-entry page takes 0.15-0.5 s to come back,
      seconds on a loaded machine): it holds when a call arrives at most ``margin`` later after its send than
      the call five before it did. Counting from the answer alone would lose every answer's duration each window;
      counting from the send alone (no margin) trusts that every call takes the same time to arrive.

    How late calls arrive, measured on the simulator (``bench/bench_fetch.py`` prints the tightest span of 6
    consecutive arrivals, in the first window and after it): under heavy load (2 cores, load average 8 to 12),
    calls of the first window up to 0.39 s late (a process warming up, other reads starting), later ones up to
    0.19 s (a 0.15-s margin met a 429 there; 0.05 s had on a busy machine before); at load 1 to 5, later spans of
    10.236-10.248 s with a 0.25-s margin, so lateness varied by at most 0.014 s. So ``margin`` is 0.25 s, and the
    first ``cold_calls`` calls after the pacer was idle get ``cold_margin`` (0.25 s) more: their bound is their
    answer, or 0.5 s after their send.

    When a 429 comes back anyway, the service's count and ours disagree: :meth:`throttled` holds every call until
    the Retry-After has passed, counts that call from its answer, and widens ``margin`` (up to ``MAX_MARGIN``),
    so later calls stay clear.

    One pacer per caller identity (:func:`shared_pacer`, with ``cold_calls=limit``) keeps every fetch in a
    process under one budget. ``cold_calls`` is 0 by default, so a pacer built for a test has one bound for
    every call. Thread-safe; waits use ``sleep`` and ``clock``.
    """

    MAX_MARGIN = 2.0

    def __init__(
        self,
        limit: int = 5,
        per: float = 10.0,
        *,
        margin: float = 0.25,
        cold_calls: int = 0,
        cold_margin: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or per <= 0 or margin < 0 or cold_calls < 0 or cold_margin < 0:
            raise ConfigError(
                f"AuditPacer needs limit >= 1, per > 0 and margin, cold_calls, cold_margin >= 0, got "
                f"limit={limit}, per={per}, margin={margin}, cold_calls={cold_calls}, cold_margin={cold_margin}."
            )
        self.limit = limit
        self.per = per
        self.margin = margin
        self.cold_calls = cold_calls
        self.cold_margin = cold_margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Each call inside the window as [when it counts, when it was sent], in the order they were sent; lists,
        # so that the count can move to the answer.
        self._counted: deque[list[float]] = deque()
        self._since_idle = 0  # calls taken since the window was last empty
        self._blocked_until = 0.0  # after a 429: nothing is sent before this
        self.calls = 0
        self.throttled_calls = 0
        self.in_flight = 0  # calls sent through slot() whose answer has not come back

    def _take(self) -> tuple[float | None, list[float] | None]:
        """Under the lock: (None, the call's [count, send time]) when a call may go now (its slot is taken), else
        (seconds to wait, None). A slot frees ``per`` after its count."""
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now, None
        if any(now - c[0] >= self.per for c in self._counted):
            self._counted = deque(c for c in self._counted if now - c[0] < self.per)
        if len(self._counted) < self.limit:
            self._since_idle = 0 if not self._counted else self._since_idle
            self._since_idle += 1
            cold = self._since_idle <= self.cold_calls
            # Until its answer, a call counts as late as the service may count it: its send plus the bound.
            counted = [now + self.margin + (self.cold_margin if cold else 0.0), now]
            self._counted.append(counted)
            self.calls += 1
            return None, counted
        return max(self.per - (now - min(c[0] for c in self._counted)), 0.001), None

    def _wait_and_take(self) -> tuple[float, list[float]]:
        waited = 0.0
        while True:
            with self._lock:
                wait, counted = self._take()
            if counted is not None:
                return waited, counted
            assert wait is not None
            self._sleep(wait)
            waited += wait

    def wait_for_slot(self) -> float:
        """Wait until a call may be sent, take its slot, and return the seconds waited. With no answer to hear of,
        the call counts at its send plus the margin (and ``cold_margin`` for a cold call)."""
        return self._wait_and_take()[0]

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for a slot and yield the seconds waited; send the call inside. When the block ends (the answer is
        in), the call counts from then if that is sooner than its send plus the margin (see the class)."""
        waited, counted = self._wait_and_take()
        with self._lock:
            self.in_flight += 1
        try:
            yield waited
        finally:
            with self._lock:
                self.in_flight -= 1
                counted[0] = min(counted[0], max(self._clock(), counted[1]))

    def throttled(self, retry_after: float | None) -> None:
        """A call came back 429: send nothing until its Retry-After (default ``per``) has passed, count the call
        from now, and widen the margin, since the service counted more than this pacer thought."""
        now = self._clock()
        with self._lock:
            self.throttled_calls += 1
            wait = self.per if retry_after is None else retry_after
            self._blocked_until = max(self._blocked_until, now + wait)
            self._counted.append([now, now])
            self.margin = min(self.MAX_MARGIN, max(self.margin * 2, 0.25))

    def seconds_for(self, calls: int) -> float:
        """About how long ``calls`` more calls need under this pacer's budget from now (not their latency): the
        free slots go at once, the rest in rounds of ``limit``, one round per window, the first when the earliest
        count in the window leaves it, each later one ``per`` plus the margin after. The service counts the same
        way, so this is what any client would wait."""
        with self._lock:
            now = self._clock()
            live = sorted(c[0] for c in self._counted if now - c[0] < self.per)
            blocked = max(0.0, self._blocked_until - now)
            margin = self.margin
        free = max(0, self.limit - len(live))
        beyond = calls - free
        if beyond <= 0:
            return blocked
        # The window's occupants by count, earliest first: the calls in it now, and the free slots' calls, made at
        # once (each counting at most the margin after its send).
        occupants = sorted(live + [now + margin] * free)[-self.limit :]
        last = beyond - 1  # the last call waits for occupant (last % limit), once per round before it
        rounds = last // self.limit
        return blocked + max(
            0.0, occupants[last % self.limit] + self.per + (self.per + margin) * rounds - now
        )


_SHARED_PACERS: dict[tuple[str, str, str], AuditPacer] = {}
_SHARED_LOCK = threading.Lock()


def shared_pacer(settings: Settings) -> AuditPacer:
    """The process's one pacer for a caller identity (cloud or Graph root, tenant, client id).

    Graph's reporting limit is per app and tenant, so every client of that identity in this process (each app
    of ``provkit report --all-apps``, parallel notebook fetches) must draw on the same budget.
    """
    key = (settings.graph_root, (settings.tenant_id or "").lower(), (settings.client_id or "").lower())
    with _SHARED_LOCK:
        pacer = _SHARED_PACERS.get(key)
        if pacer is None:
            pacer = _SHARED_PACERS[key] = AuditPacer(cold_calls=5)
        return pacer
