"""An app's provisioning history: cycles, watermark resets, quarantine, and the log entries of each cycle.

The service's documented behaviour (reference section 3) drives the timeline:
- an initial cycle evaluates every object in scope and lasts ``0.01-0.08 min x objects`` (a per-app rate);
- incremental cycles then start every interval (PT40M) and process only the changes since the watermark, so they
  are short, and a cycle with no changes leaves no log entries;
- a restart, an attribute-mapping change or a scoping change clears the watermark (a directory audit records it)
  and the next cycle is initial again;
- a quarantine is retried 6 h, 12 h and 24 h after the first failure, then every 24 h; after 28 days the job is
  disabled; the escrow thresholds (5,000 minimum; over 40 % or over 40,000; 60,000 absolute) decide it;
- pausing lets the running cycle finish.

Cycles are computed once per horizon (cheap: a few thousand small objects); log entries are produced on demand
from (app, cycle, index) so no entry is ever held in memory longer than a page.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from provkit.sim.scenarios import Control
from provkit.sim.timefmt import TICKS

MINUTE = 60 * TICKS
HOUR = 60 * MINUTE
DAY = 24 * HOUR
INTERVAL = 40 * MINUTE
RETRY_OFFSETS = (6 * HOUR, 12 * HOUR, 24 * HOUR)  # then every 24 h
QUARANTINE_DISABLE_AFTER = 28 * DAY

ESCROW_MINIMUM = 5_000
ESCROW_PROPORTION = 0.40
ESCROW_TOTAL = 40_000
ESCROW_ABSOLUTE = 60_000


def escrow_threshold_reached(failures: int, total: int) -> bool:
    """The documented quarantine rule for escrowed failures (reference 3.4)."""
    if failures > ESCROW_ABSOLUTE:
        return True
    if failures < ESCROW_MINIMUM:
        return False
    return failures > ESCROW_TOTAL or (total > 0 and failures / total > ESCROW_PROPORTION)


@dataclass
class Cycle:
    no: int
    kind: str  # initial | incremental
    mode: str  # initial-first | initial-reset | incremental | cred-fail | attempt | broken-initial | escrow-retry
    start: int  # ticks
    end: int  # ticks (may lie after now: the cycle is running)
    entries: int  # log entries the whole cycle writes
    reset_reason: str = ""  # watermark reset that preceded this cycle
    failures: int = 0
    exported: int = 0
    state: str = "Succeeded"  # Succeeded | Failed | EntryLevelErrors
    error_code: str | None = None
    error_message: str | None = None
    # Subjects of scheduled changes appended to this cycle's entries
    extra: list = field(default_factory=list)
    # failures that are unresolved references (counted raw, not toward quarantine)
    reference_failures: int = 0
    # unresolved references still held in escrow after their cycle (in the raw count only)
    reference_escrows: int = 0

    def entry_time(self, i: int) -> int:
        return self.start + ((2 * i + 1) * (self.end - self.start)) // (2 * self.entries)

    def entries_before(self, ticks: int) -> int:
        """How many of this cycle's entries have a time strictly before ``ticks``."""
        if self.entries == 0 or ticks <= self.start:
            return 0
        if ticks > self.end:
            return self.entries
        span = self.end - self.start
        # entry_time(i) < ticks  <=>  (2i+1) span < 2 (ticks - start) * entries (up to floor rounding)
        guess = max(0, min(self.entries, ((2 * (ticks - self.start) * self.entries) // span + 1) // 2))
        while guess > 0 and self.entry_time(guess - 1) >= ticks:
            guess -= 1
        while guess < self.entries and self.entry_time(guess) < ticks:
            guess += 1
        return guess


@dataclass
class Audit:
    time: int
    activity: str
    reason: str
    details: dict[str, str] = field(default_factory=dict)
    actor: object = None  # None: an admin in the portal; "service": the provisioning service; else the caller


# The documented Account Provisioning activity names (reference-audit-activities.md; reference 1.8).
RESTART = "Enable/restart provisioning configuration"
START = "Enable/start provisioning configuration"
STOP = "Disable/pause provisioning configuration"
MAPPING_OR_SCOPE = "Update attribute mappings or scope"
SETTINGS = "Update provisioning setting or credentials"
QUARANTINE = "Quarantine"


@dataclass
class Quarantine:
    reason: str
    series_began: int
    current_began: int
    next_attempt: int
    series_count: int
    error_code: str
    error_message: str


@dataclass
class Timeline:
    cycles: list[Cycle]
    audits: list[Audit]
    quarantine: Quarantine | None  # active at now
    paused_at: int | None
    disabled_at: int | None
    starts: list[int] = field(default_factory=list)
    unassigned: set[str] = field(default_factory=set)  # assigned groups removed from the app by now

    def __post_init__(self) -> None:
        self.starts = [c.start for c in self.cycles]

    def cycles_between(self, lower: int | None, upper: int | None) -> range:
        """Indexes of cycles that may hold entries with time in [lower, upper]."""
        lo = 0
        if lower is not None:
            lo = max(0, bisect.bisect_right(self.starts, lower) - 1)
            while lo < len(self.cycles) and self.cycles[lo].end < lower:
                lo += 1
        hi = len(self.cycles)
        if upper is not None:
            hi = bisect.bisect_right(self.starts, upper)
        return range(lo, max(lo, hi))


def build_timeline(
    *,
    seed: int,
    app_index: int,
    origin: int,
    now: int,
    window_start: int,
    controls: list[tuple[int, Control]],
    scope_size: int,
    minutes_per_object: float,
    change_rate: float,
    broken_failures: int,
    credential_error: tuple[str, str],
    counts: Callable[[Cycle], tuple[int, int]],
) -> Timeline:
    """Walk the job's life from ``origin`` to ``now`` and return its cycles, audits and state at ``now``.

    ``controls`` are (time, Control) pairs; ``scope_size`` is the number of objects an initial cycle evaluates;
    ``broken_failures`` is how many objects fail after a mapping breaks (escrow scenario); ``counts`` gives a
    cycle's (failures, exported) from its log entries, so the job status agrees with the logs.
    """
    walk = _JobWalk(
        seed=seed,
        app_index=app_index,
        now=now,
        events=sorted(controls, key=lambda tc: tc[0]),
        scope_size=scope_size,
        minutes_per_object=minutes_per_object,
        change_rate=change_rate,
        broken_failures=broken_failures,
        credential_error=credential_error,
        counts=counts,
    )
    walk.run(origin)
    visible_audits = [a for a in walk.audits if window_start <= a.time <= now]
    return Timeline(walk.cycles, visible_audits, walk.quarantine, walk.paused_at, walk.disabled_at)


@dataclass
class _JobWalk:
    """The job's state while :func:`build_timeline` walks its life: one method per step of the walk.

    Each loop turn applies the control events due before the next cycle (:meth:`apply_controls`), decides whether
    anything runs (pause, disable, quarantine retry schedule), makes the cycle the job's state calls for
    (:meth:`next_cycle`) and settles its outcome at its end (:meth:`settle`: quarantine entered, retried or left).
    """

    seed: int
    app_index: int
    now: int
    events: list[tuple[int, Control]]
    scope_size: int
    minutes_per_object: float
    change_rate: float
    broken_failures: int
    credential_error: tuple[str, str]
    counts: Callable[[Cycle], tuple[int, int]]
    cycles: list[Cycle] = field(default_factory=list)
    audits: list[Audit] = field(default_factory=list)
    ev: int = 0  # the next control event to apply
    need_initial: bool = True
    first_initial: bool = True
    broken: bool = False
    cred_failing: bool = False
    quarantine: Quarantine | None = None
    paused_at: int | None = None
    disabled_at: int | None = None
    pending_reason: str = ""
    consecutive_failures: int = 0

    def rng_for(self, no: int) -> random.Random:
        return random.Random(self.seed * 7_919 + self.app_index * 104_729 + no * 15_485_863)

    def run(self, origin: int) -> None:
        t = origin
        while True:
            # A restart or a resume acts promptly: the next cycle starts minutes after it, not at the next interval.
            last_end = self.cycles[-1].end if self.cycles else origin
            upcoming = self._next_event_time()
            if (
                upcoming is not None
                and last_end <= upcoming < t
                and self.events[self.ev][1].kind in ("reset", "resume")
            ):
                t = self.events[self.ev][0]
            t = self.apply_controls(t)
            if self.paused_at is not None or self.disabled_at is not None:
                # Nothing runs until a resume event; jump to it if one exists.
                upcoming = self._next_event_time()
                if upcoming is not None and upcoming < self.now and self.disabled_at is None:
                    t = self.events[self.ev][0]
                    continue
                return
            if t >= self.now:
                return
            if self.quarantine is not None:
                # Quarantine attempts happen on the retry schedule, not the interval.
                t = max(t, self.quarantine.next_attempt)
                if t >= self.now:
                    return
                upcoming = self._next_event_time()
                if upcoming is not None and upcoming <= t:
                    continue
                if t - self.quarantine.series_began >= QUARANTINE_DISABLE_AFTER:
                    self.disabled_at = self.quarantine.series_began + QUARANTINE_DISABLE_AFTER
                    self.audits.append(Audit(self.disabled_at, STOP, "quarantine-expired", actor="service"))
                    return
            rng = self.rng_for(len(self.cycles))
            cycle = self.next_cycle(t, rng)
            self.cycles.append(cycle)
            if cycle.end <= self.now:
                self.settle(cycle)
            if self.quarantine is not None:
                t = max(cycle.end + MINUTE, self.quarantine.next_attempt)
            else:
                t = max(cycle.start + INTERVAL + rng.randrange(30 * TICKS), cycle.end + MINUTE)

    def _next_event_time(self) -> int | None:
        """The time of the next control event not yet applied, None when all are."""
        return self.events[self.ev][0] if self.ev < len(self.events) else None

    def apply_controls(self, t: int) -> int:
        """Apply the control events that happened by ``t`` (before this cycle starts); return the new ``t``."""
        while (upcoming := self._next_event_time()) is not None and upcoming <= t:
            when, control = self.events[self.ev]
            self.ev += 1
            if control.kind == "reset" or control.kind == "mapping-breaks":
                reason = control.reason or "restart"
                activity = RESTART if reason == "restart" else MAPPING_OR_SCOPE
                self.audits.append(Audit(when, activity, reason, {"WatermarkReset": "True"}, control.actor))
                self.need_initial = True
                self.pending_reason = reason
                if control.kind == "mapping-breaks":
                    self.broken = True
                if reason == "restart" and self.quarantine is not None:
                    # A restart clears the quarantine; credentials that are still bad put the job back
                    # into it at the next cycle (only a credentials update fixes them).
                    self.quarantine = None
                t = max(t, when + 2 * MINUTE)
            elif control.kind == "credential-failure":
                self.cred_failing = True
                self.audits.append(
                    Audit(when, SETTINGS, "credential-change", {"Secret": "SecretToken"}, control.actor)
                )
            elif control.kind == "pause":
                self.paused_at = when
                self.audits.append(Audit(when, STOP, "pause", actor=control.actor))
            elif control.kind == "resume":
                self.paused_at = None
                if self.quarantine is not None:
                    self.quarantine = None
                self.audits.append(Audit(when, START, "start", actor=control.actor))
                t = max(t, when + MINUTE)
            elif control.kind == "disable":
                self.disabled_at = when
                self.audits.append(Audit(when, STOP, "disable", actor=control.actor))
            elif control.kind == "scope-to-assigned":
                # inference: the audit's modified property names the SyncAll secret and its new value; the
                # documented mapping only says the activity is "Update provisioning setting or credentials".
                # Per the known issue the change does not take effect until a restart, so cycles go on as before.
                self.audits.append(Audit(when, SETTINGS, "scope-change", {"SyncAll": "False"}, control.actor))
        return t

    def next_cycle(self, t: int, rng: random.Random) -> Cycle:
        """The cycle the job's state calls for, starting at ``t``."""
        no = len(self.cycles)
        if self.quarantine is not None and self.cred_failing:
            cycle = Cycle(no, "incremental", "attempt", t, t + 20 * TICKS + rng.randrange(40 * TICKS), 0)
            cycle.state, (cycle.error_code, cycle.error_message) = "Failed", self.credential_error
        elif self.quarantine is not None and self.broken:
            n = self.broken_failures
            dur = int((20 + n * self.minutes_per_object * 60 * 0.5) * TICKS)
            cycle = Cycle(no, "incremental", "escrow-retry", t, t + dur, n)
        elif self.cred_failing:
            n = min(5, max(1, self.scope_size // 50))
            cycle = Cycle(no, "incremental", "cred-fail", t, t + 45 * TICKS + rng.randrange(30 * TICKS), n)
            cycle.failures, cycle.state = n, "Failed"
            cycle.error_code, cycle.error_message = self.credential_error
        elif self.need_initial:
            mode = (
                "broken-initial"
                if self.broken
                else ("initial-first" if self.first_initial else "initial-reset")
            )
            share = 1.0 if mode == "initial-first" else 0.5
            minutes = max(2.0, self.scope_size * self.minutes_per_object * share)
            dur = int(minutes * MINUTE * (0.9 + 0.2 * rng.random()))
            cycle = Cycle(no, "initial", mode, t, t + dur, self.scope_size, reset_reason=self.pending_reason)
            self.need_initial = False
            self.first_initial = False
            self.pending_reason = ""
        else:
            n = _poisson(rng, self.change_rate)
            dur = int((15 + rng.random() * 20 + n * self.minutes_per_object * 60) * TICKS)
            cycle = Cycle(no, "incremental", "incremental", t, t + dur, n)
        if cycle.mode not in ("attempt", "cred-fail"):
            cycle.failures, cycle.exported = self.counts(cycle)
            cycle.state = "EntryLevelErrors" if cycle.failures else "Succeeded"
        return cycle

    def settle(self, cycle: Cycle) -> None:
        """The outcome of a finished cycle: the job enters quarantine, stays in it (one more attempt) or not."""
        if cycle.mode == "cred-fail":
            self.consecutive_failures += 1
            code, message = self.credential_error
            self._enter_quarantine(cycle, "EncounteredQuarantineException", code, message)
        elif cycle.mode == "attempt" and self.quarantine is not None:
            self.consecutive_failures += 1
            self._retry(cycle)
        elif cycle.failures and escrow_threshold_reached(cycle.failures, max(cycle.entries, 1)):
            if self.quarantine is None:
                message = (
                    f"{cycle.failures} of {cycle.entries} provisioning events failed in the last cycle, "
                    "over the 40% escrow threshold; the job was quarantined."
                )
                reason = "EncounteredEscrowProportionThreshold"
                self._enter_quarantine(cycle, reason, reason, message)
            else:
                self._retry(cycle)
            self.consecutive_failures = 0
        else:
            self.consecutive_failures = 0

    def _enter_quarantine(self, cycle: Cycle, reason: str, code: str, message: str) -> None:
        self.quarantine = Quarantine(
            reason=reason,
            series_began=cycle.end,
            current_began=cycle.end,
            next_attempt=cycle.end + RETRY_OFFSETS[0],
            series_count=1,
            error_code=code,
            error_message=message,
        )
        self.audits.append(Audit(cycle.end, QUARANTINE, reason, actor="service"))

    def _retry(self, cycle: Cycle) -> None:
        assert self.quarantine is not None
        self.quarantine.series_count += 1
        self.quarantine.current_began = cycle.end
        self.quarantine.next_attempt = _next_attempt(self.quarantine.series_began, cycle.start)


def _next_attempt(series_began: int, last_attempt: int) -> int:
    for offset in RETRY_OFFSETS:
        if series_began + offset > last_attempt:
            return series_began + offset
    days = (last_attempt - series_began) // DAY + 1
    return series_began + days * DAY


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


__all__ = [
    "Cycle",
    "Timeline",
    "Audit",
    "Quarantine",
    "Subject",
    "build_timeline",
    "escrow_threshold_reached",
]


@dataclass(frozen=True)
class Subject:
    """An object an app's cycle evaluates, and what the app makes of it."""

    kind: str  # User | Group
    index: int
    category: str  # ok, not-assigned, nested-only, disabled, broken, scope-fail, matching-empty, ...
