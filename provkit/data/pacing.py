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

    Graph counts reporting calls (``/auditLogs``) per app and tenant: 5 per 10 s, any request type, throttled
    ones included (reference 6.1, throttling-limits); the simulator does the same, counting each call when it
    arrives. So a slot is taken when a call is sent and frees ``per`` + ``margin`` seconds later, whatever the
    answer's duration. The former accounting (a slot held until ``per`` after the answer) lost one answer time
    (about 0.5 s for a 1,000-entry page) every ``limit`` calls: 5 % of the rate, for nothing.

    The service counts a call when it arrives, some time after the pacer let it go; the margin covers a later
    call arriving sooner after its send than an earlier one did. Measured on the simulator under heavy load (2
    cores, load average 8 to 12; ``bench/bench_fetch.py`` prints the tightest span of 6 consecutive arrivals, in
    the first window and after it): calls of the first window arrived up to 0.39 s late (a process warming up,
    other reads starting), later ones up to 0.19 s (a 0.15-s margin met a 429 there; 0.05 s had on a busy machine
    before). So the first ``cold_calls`` calls after the pacer was idle count from their answer (the service
    has counted a call by the time it answers), but no later than ``cold_margin`` (0.25 s) after their send, as
    a loaded machine's answers take seconds; every call frees its slot ``margin`` (0.25 s) after that count.
    That covers 0.5 s of lateness in the first window and 0.25 s after it, for about 0.25 s once and 0.25 s a
    window (1.75 s over a 7-window fetch).

    When a 429 comes back anyway, the service's count and ours disagree: :meth:`throttled` holds every call until
    the Retry-After has passed, counts that call from its answer, and widens ``margin`` (up to ``MAX_MARGIN``),
    so later calls stay clear.

    One pacer per caller identity (:func:`shared_pacer`, with ``cold_calls=limit``) keeps every fetch in a
    process under one budget. ``cold_calls`` is 0 by default, so a pacer built for a test counts every call from
    its send. Thread-safe; waits use ``sleep`` and ``clock``.
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
        # When each call inside the window was counted, oldest first; one-item lists, so that a cold call's
        # count can move to its answer.
        self._counted: deque[list[float]] = deque()
        self._since_idle = 0  # calls taken since the window was last empty
        self._blocked_until = 0.0  # after a 429: nothing is sent before this
        self.calls = 0
        self.throttled_calls = 0

    def _take(self) -> tuple[float | None, list[float] | None]:
        """Under the lock: (None, the call's count) when a call may go now (its slot is taken), else (seconds to
        wait, None)."""
        now = self._clock()
        if now < self._blocked_until:
            return self._blocked_until - now, None
        span = self.per + self.margin
        while self._counted and now - self._counted[0][0] >= span:
            self._counted.popleft()
        if len(self._counted) < self.limit:
            self._since_idle = 0 if not self._counted else self._since_idle
            self._since_idle += 1
            counted = [now]
            self._counted.append(counted)
            self.calls += 1
            return None, counted
        return max(span - (now - self._counted[0][0]), 0.001), None

    def _wait_and_take(self) -> tuple[float, list[float]]:
        waited = 0.0
        while True:
            with self._lock:
                wait, counted = self._take()
                cold = self._since_idle <= self.cold_calls
            if counted is not None:
                return waited, counted if cold else []
            assert wait is not None
            self._sleep(wait)
            waited += wait

    def wait_for_slot(self) -> float:
        """Wait until a call may be sent, take its slot (counted from now), and return the seconds waited."""
        return self._wait_and_take()[0]

    @contextlib.contextmanager
    def slot(self) -> Iterator[float]:
        """Wait for a slot and yield the seconds waited; send the call inside. The slot frees ``per`` (+ margin)
        after it was taken, or, for a cold call (see the class), after the call's answer (when the block ends), at
        most ``cold_margin`` after it was taken."""
        waited, cold = self._wait_and_take()
        try:
            yield waited
        finally:
            if cold:
                with self._lock:
                    sent = cold[0]
                    cold[0] = min(max(sent, self._clock()), sent + self.cold_margin)

    def throttled(self, retry_after: float | None) -> None:
        """A call came back 429: send nothing until its Retry-After (default ``per``) has passed, count the call
        from now, and widen the margin, since the service counted more than this pacer thought."""
        now = self._clock()
        with self._lock:
            self.throttled_calls += 1
            wait = self.per if retry_after is None else retry_after
            self._blocked_until = max(self._blocked_until, now + wait)
            self._counted.append([now])
            self.margin = min(self.MAX_MARGIN, max(self.margin * 2, 0.25))

    def seconds_for(self, calls: int) -> float:
        """About how long ``calls`` more calls need under this pacer's budget from now (not their latency): the
        free slots go at once, the rest in rounds of ``limit``, one round per window, the first when the oldest
        call in the window leaves it. The service counts the same way, so this is what any client would wait."""
        with self._lock:
            now = self._clock()
            span = self.per + self.margin
            live = sorted(c[0] for c in self._counted if now - c[0] < span)
            blocked = max(0.0, self._blocked_until - now)
        free = max(0, self.limit - len(live))
        beyond = calls - free
        if beyond <= 0:
            return blocked
        # The window's occupants, oldest first: the calls in it now, and the free slots' calls, made at once.
        occupants = (live + [now] * free)[-self.limit :]
        last = beyond - 1  # the last call waits for occupant (last % limit), once per round before it
        return blocked + max(0.0, occupants[last % self.limit] + span * (last // self.limit + 1) - now)


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
