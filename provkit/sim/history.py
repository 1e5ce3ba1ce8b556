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
    cycles: list[Cycle] = []
    audits: list[Audit] = []
    events = sorted(controls, key=lambda tc: tc[0])
    ev = 0
    t = origin
    need_initial = True
    first_initial = True
    broken = False
    cred_failing = False
    quarantine: Quarantine | None = None
    paused_at: int | None = None
    disabled_at: int | None = None
    pending_reason = ""
    consecutive_failures = 0

    def rng_for(no: int) -> random.Random:
        return random.Random(seed * 7_919 + app_index * 104_729 + no * 15_485_863)

    while True:
        # A restart or a resume acts promptly: the next cycle starts minutes after it, not at the next interval.
        last_end = cycles[-1].end if cycles else origin
        if ev < len(events) and last_end <= events[ev][0] < t and events[ev][1].kind in ("reset", "resume"):
            t = events[ev][0]
        # Apply the control events that happened before this cycle starts.
        while ev < len(events) and events[ev][0] <= t:
            when, control = events[ev]
            ev += 1
            if control.kind == "reset" or control.kind == "mapping-breaks":
                reason = control.reason or "restart"
                activity = RESTART if reason == "restart" else MAPPING_OR_SCOPE
                audits.append(Audit(when, activity, reason, {"WatermarkReset": "True"}, control.actor))
                need_initial = True
                pending_reason = reason
                if control.kind == "mapping-breaks":
                    broken = True
                if reason == "restart" and quarantine is not None:
                    # A restart clears the quarantine; credentials that are still bad put the job back
                    # into it at the next cycle (only a credentials update fixes them).
                    quarantine = None
                t = max(t, when + 2 * MINUTE)
            elif control.kind == "credential-failure":
                cred_failing = True
                audits.append(
                    Audit(when, SETTINGS, "credential-change", {"Secret": "SecretToken"}, control.actor)
                )
            elif control.kind == "pause":
                paused_at = when
                audits.append(Audit(when, STOP, "pause", actor=control.actor))
            elif control.kind == "resume":
                paused_at = None
                if quarantine is not None:
                    quarantine = None
                audits.append(Audit(when, START, "start", actor=control.actor))
                t = max(t, when + MINUTE)
            elif control.kind == "disable":
                disabled_at = when
                audits.append(Audit(when, STOP, "disable", actor=control.actor))
            elif control.kind == "scope-to-assigned":
                # inference: the audit's modified property names the SyncAll secret and its new value; the
                # documented mapping only says the activity is "Update provisioning setting or credentials".
                # Per the known issue the change does not take effect until a restart, so cycles go on as before.
                audits.append(Audit(when, SETTINGS, "scope-change", {"SyncAll": "False"}, control.actor))
        if paused_at is not None or disabled_at is not None:
            # Nothing runs until a resume event; jump to it if one exists.
            if ev < len(events) and events[ev][0] < now and disabled_at is None:
                t = events[ev][0]
                continue
            break
        if t >= now:
            break

        no = len(cycles)
        rng = rng_for(no)
        if quarantine is not None:
            # Quarantine attempts happen on the retry schedule, not the interval.
            t = max(t, quarantine.next_attempt)
            if t >= now or (ev < len(events) and events[ev][0] <= t):
                if t >= now:
                    break
                continue
            if t - quarantine.series_began >= QUARANTINE_DISABLE_AFTER:
                disabled_at = quarantine.series_began + QUARANTINE_DISABLE_AFTER
                audits.append(Audit(disabled_at, STOP, "quarantine-expired", actor="service"))
                break
        if quarantine is not None and cred_failing:
            cycle = Cycle(no, "incremental", "attempt", t, t + 20 * TICKS + rng.randrange(40 * TICKS), 0)
            cycle.state, (cycle.error_code, cycle.error_message) = "Failed", credential_error
        elif quarantine is not None and broken:
            n = broken_failures
            dur = int((20 + n * minutes_per_object * 60 * 0.5) * TICKS)
            cycle = Cycle(no, "incremental", "escrow-retry", t, t + dur, n)
        elif cred_failing:
            n = min(5, max(1, scope_size // 50))
            cycle = Cycle(no, "incremental", "cred-fail", t, t + 45 * TICKS + rng.randrange(30 * TICKS), n)
            cycle.failures, cycle.state = n, "Failed"
            cycle.error_code, cycle.error_message = credential_error
        elif need_initial:
            mode = "broken-initial" if broken else ("initial-first" if first_initial else "initial-reset")
            minutes = max(2.0, scope_size * minutes_per_object * (1.0 if mode == "initial-first" else 0.5))
            dur = int(minutes * MINUTE * (0.9 + 0.2 * rng.random()))
            cycle = Cycle(no, "initial", mode, t, t + dur, scope_size, reset_reason=pending_reason)
            need_initial = False
            first_initial = False
            pending_reason = ""
        else:
            lam = change_rate
            n = _poisson(rng, lam)
            dur = int((15 + rng.random() * 20 + n * minutes_per_object * 60) * TICKS)
            cycle = Cycle(no, "incremental", "incremental", t, t + dur, n)
        if cycle.mode not in ("attempt", "cred-fail"):
            cycle.failures, cycle.exported = counts(cycle)
            cycle.state = "EntryLevelErrors" if cycle.failures else "Succeeded"
        cycles.append(cycle)

        # Outcome of the cycle at its end.
        if cycle.end <= now:
            if cycle.mode == "cred-fail":
                consecutive_failures += 1
                quarantine = Quarantine(
                    reason="EncounteredQuarantineException",
                    series_began=cycle.end,
                    current_began=cycle.end,
                    next_attempt=cycle.end + RETRY_OFFSETS[0],
                    series_count=1,
                    error_code=credential_error[0],
                    error_message=credential_error[1],
                )
                audits.append(Audit(cycle.end, QUARANTINE, "EncounteredQuarantineException", actor="service"))
            elif cycle.mode == "attempt" and quarantine is not None:
                consecutive_failures += 1
                quarantine.series_count += 1
                quarantine.current_began = cycle.end
                quarantine.next_attempt = _next_attempt(quarantine.series_began, cycle.start)
            elif cycle.failures and escrow_threshold_reached(cycle.failures, max(cycle.entries, 1)):
                if quarantine is None:
                    quarantine = Quarantine(
                        reason="EncounteredEscrowProportionThreshold",
                        series_began=cycle.end,
                        current_began=cycle.end,
                        next_attempt=cycle.end + RETRY_OFFSETS[0],
                        series_count=1,
                        error_code="EncounteredEscrowProportionThreshold",
                        error_message=(
                            f"{cycle.failures} of {cycle.entries} provisioning events failed in the last cycle, "
                            "over the 40% escrow threshold; the job was quarantined."
                        ),
                    )
                    audits.append(
                        Audit(cycle.end, QUARANTINE, "EncounteredEscrowProportionThreshold", actor="service")
                    )
                else:
                    quarantine.series_count += 1
                    quarantine.current_began = cycle.end
                    quarantine.next_attempt = _next_attempt(quarantine.series_began, cycle.start)
                consecutive_failures = 0
            else:
                consecutive_failures = 0
        if quarantine is not None:
            t = max(cycle.end + MINUTE, quarantine.next_attempt)
        else:
            t = max(cycle.start + INTERVAL + rng.randrange(30 * TICKS), cycle.end + MINUTE)

    visible_audits = [a for a in audits if window_start <= a.time <= now]
    return Timeline(cycles, visible_audits, quarantine, paused_at, disabled_at)


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


__all__ = ["Cycle", "Timeline", "Audit", "Quarantine", "build_timeline", "escrow_threshold_reached"]
