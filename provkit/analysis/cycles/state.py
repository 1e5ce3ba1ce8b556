"""The job's state, when a change made now reaches the app, and the quarantine timeline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.cycles.context import Context, attempt_times
from provkit.analysis.cycles.eta import initial_cycle_eta, running_initial
from provkit.analysis.cycles.reconstruct import cycles_table
from provkit.analysis.cycles.rules import ATTEMPT_TOLERANCE, DOCUMENTED_INCREMENTAL
from provkit.analysis.cycles.values import as_utc, jsonable, same_text
from provkit.data.evidence import Evidence
from provkit.formatting import format_duration, format_time, text_or_none


def job_state(latest: pd.Series | None, cycles: pd.DataFrame) -> tuple[str, str]:
    """(state, detail) from the latest job status: Active, Running initial cycle, Quarantine, Paused,
    Disabled, NotRun, NotConfigured, Unknown (no snapshot), or an unknown status code as sent."""
    if latest is None:
        return "Unknown", "no job-status snapshot (logs only): the job's state is not known"
    code = text_or_none(latest.get("status_code"), strip=True) or ""
    if same_text(latest.get("schedule_state"), "Disabled"):
        return "Disabled", f"schedule state Disabled (status code {code or 'not given'})"
    if code.lower() == "quarantine":
        reason = text_or_none(latest.get("quarantine_reason"), strip=True) or "reason not given"
        error = text_or_none(latest.get("quarantine_error_code"), strip=True)
        # The escrow quarantine records the same text as reason and error code: say it once.
        return "Quarantine", reason + (f" ({error})" if error and error.lower() != reason.lower() else "")
    if code.lower() == "paused" or same_text(latest.get("schedule_state"), "Paused"):
        return "Paused", "paused (usually by an admin); start resumes where it stopped"
    if code.lower() == "notconfigured":
        return "NotConfigured", "provisioning was never configured or run"
    if running_initial(cycles) is not None:
        return "Running initial cycle", "the initial cycle is running: every object in scope is evaluated"
    if code.lower() == "notrun":
        return "NotRun", "configured, but its first run has not completed"
    if code.lower() == "active":
        return "Active", "running periodically"
    return code or "Unknown", "status code not documented: kept as sent"


@dataclass
class ChangeEta:
    """When a change made now in Entra ID reaches the app, and under what condition.

    ``never`` is True when nothing will run until someone acts (paused, disabled, not configured);
    ``only_if_fixed`` is True when the next run is a quarantine retry that succeeds only if the cause is fixed.
    """

    state: str
    earliest: datetime | None
    likely: datetime | None
    latest: datetime | None
    never: bool
    only_if_fixed: bool
    basis: str
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return jsonable(self)


def incremental_durations(cycles: pd.DataFrame) -> pd.Series:
    mask = (
        (cycles["kind"] == "incremental")
        & ~cycles["running"]
        & ~cycles["quarantine_attempt"]
        & cycles["duration"].notna()
    )
    return cycles.loc[mask, "duration"]


def _incremental_stats(cycles: pd.DataFrame) -> tuple[pd.Timedelta, pd.Timedelta, str]:
    durations = incremental_durations(cycles)
    if len(durations) >= 3:
        return (
            durations.quantile(0.5),
            durations.quantile(0.9),
            f"p50/p90 of {len(durations)} recent incremental cycles",
        )
    return DOCUMENTED_INCREMENTAL[0], DOCUMENTED_INCREMENTAL[1], "documented incremental duration (10-30 min)"


def change_eta(evidence: Evidence, cycles: pd.DataFrame | None = None) -> ChangeEta:
    """When will a change made now (``evidence.now``) reach the app?

    Active: the next cycle on the interval, plus the recent incremental duration (p50 likely, p90 latest).
    Running initial cycle: after it ends, by the first incremental cycle. Quarantine: the next attempt, which
    succeeds only if the cause is fixed. Paused, disabled, not configured: never until someone starts the job.
    """
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = Context.of(evidence)
    now = ctx.now
    latest = ctx.latest()
    state, detail = job_state(latest, cycles)
    p50, p90, basis = _incremental_stats(cycles)
    interval = ctx.interval
    if state in ("Paused", "Disabled", "NotConfigured"):
        what = {
            "Paused": "The job is paused: no change reaches the app until it is started again (start resumes "
            "where it stopped; the current cycle, if any, ran to completion).",
            "Disabled": "The job is disabled: nothing reaches the app until it is started again. "
            + (
                "It was disabled after four weeks in quarantine: fix the cause first, then restart."
                if latest is not None and not pd.isna(latest.get("quarantine_series_began"))
                else "Start it (or restart it to clear the watermark)."
            ),
            "NotConfigured": "Provisioning is not configured: nothing reaches the app until it is configured "
            "and started.",
        }[state]
        return ChangeEta(state, None, None, None, True, False, detail, what)
    if state == "Quarantine":
        next_attempt = latest.get("quarantine_next_attempt") if latest is not None else pd.NaT
        if (pd.isna(next_attempt) or next_attempt < now) and len(ctx.episodes):
            # Not given, or already past at ``now`` (an older snapshot): the documented schedule's next slot.
            upcoming = [t for t in attempt_times(ctx.episodes["series_began"].iloc[-1]) if t > now]
            next_attempt = upcoming[0] if upcoming else next_attempt
        if pd.isna(next_attempt):
            return ChangeEta(
                state,
                None,
                None,
                None,
                False,
                True,
                detail,
                "The job is quarantined and the next attempt is not known. A change reaches the app only "
                "after the cause is fixed and the job is restarted.",
            )
        start = max(as_utc(next_attempt), now)
        attempts = cycles.loc[cycles["quarantine_attempt"] & ~cycles["running"], "duration"].dropna()
        if len(attempts):
            # A retry re-runs the failed changes: earlier retries say how long that takes.
            p50, p90 = attempts.quantile(0.5), attempts.quantile(0.9)
            basis = f"p50/p90 of {len(attempts)} earlier quarantine retries"
        return ChangeEta(
            state,
            start,
            start + p50,
            start + p90,
            False,
            True,
            f"next quarantine attempt + {basis}",
            f"The job is quarantined ({detail}). The next attempt is at {format_time(start)}; the change reaches "
            "the app then only if the cause is fixed. Otherwise retries continue daily and the job is disabled "
            "28 days after the series began. Fixing the cause and restarting runs an initial cycle now.",
        )
    if state == "Running initial cycle":
        eta = initial_cycle_eta(evidence, cycles)
        if eta is None or eta.likely is None:
            return ChangeEta(
                state,
                None,
                None,
                None,
                False,
                False,
                detail,
                "The initial cycle is running and its end cannot be estimated yet; the change reaches the app "
                "in the first incremental cycle after it ends.",
            )
        earliest = eta.earliest or eta.likely
        latest_end = (eta.latest or eta.likely) + interval + p90
        return ChangeEta(
            state,
            earliest,
            eta.likely + p50,
            latest_end,
            False,
            False,
            f"initial-cycle ETA ({eta.likely_method}) + {basis}",
            f"The initial cycle is running (likely to end {format_time(eta.likely)}); the change reaches the app "
            "in the first incremental cycle after it, unless the initial cycle reaches the object first.",
        )
    if state == "NotRun":
        return ChangeEta(
            state,
            None,
            None,
            None,
            False,
            False,
            detail,
            "The job's first cycle has not run yet; the change reaches the app in the first (initial) cycle.",
        )
    # Active (or an unknown state): the next cycle on the interval.
    known = cycles[cycles["start"].notna()]
    if len(known):
        last = known.iloc[-1]
        next_start = last["start"] + interval
        if not pd.isna(last["end"]):
            next_start = max(next_start, last["end"])
        if next_start < now:
            missed = math.ceil((now - next_start) / interval)
            next_start = next_start + interval * missed
        how = f"the last cycle started {format_time(last['start'])}; interval {format_duration(interval, missing='-')}"
        earliest, likely, latest_end = next_start, next_start + p50, next_start + p90
    else:
        how = f"no cycle seen: the next starts within one interval ({format_duration(interval, missing='-')})"
        earliest, likely, latest_end = now, now + interval / 2 + p50, now + interval + p90
    pending = ctx.audits[(ctx.audits["kind"] == "reset") & (ctx.audits["time"] > last_start(cycles))]
    text = f"The job is active: the next cycle starts about {format_time(earliest)} ({how}) and picks up the change."
    if len(pending):
        text += " A watermark reset is pending: the next cycle is an initial cycle and will take longer."
    return ChangeEta(state, earliest, likely, latest_end, False, False, f"next cycle start + {basis}", text)


def last_start(cycles: pd.DataFrame) -> pd.Timestamp:
    starts = cycles["start"].dropna()
    return starts.iloc[-1] if len(starts) else pd.Timestamp.min.tz_localize("UTC")


@dataclass
class QuarantineTimeline:
    """Quarantine episodes and their documented retry schedule.

    ``episodes``: one row per series (series_began, reason, error_code, error_message, current_began,
    next_attempt, series_count, ended, ended_by, disable_at, source). ``attempts``: the retry schedule of each
    episode (series_began, attempt, time, passed, observed: a cycle was seen within 30 minutes of it).
    ``next_attempt`` and ``disable_at`` describe the current episode (None when the job is not quarantined).
    """

    quarantined: bool
    reason: str | None
    error_code: str | None
    error_message: str | None
    series_began: datetime | None
    next_attempt: datetime | None
    disable_at: datetime | None
    disabled: bool
    episodes: pd.DataFrame
    attempts: pd.DataFrame

    def as_dict(self) -> dict[str, Any]:
        return jsonable(self)


def quarantine_timeline(evidence: Evidence, cycles: pd.DataFrame | None = None) -> QuarantineTimeline:
    """Quarantine episodes, their retry schedules (6 h, 12 h, 24 h, then daily), the next attempt and the date
    the job is (or will be) disabled if nothing changes: seriesBegan + 28 days."""
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = Context.of(evidence)
    episodes = ctx.episodes
    seen = cycles[cycles["timing_source"] != "retry-schedule"]
    starts = seen["start"].dropna().to_numpy(dtype="datetime64[ns]")
    tolerance = ATTEMPT_TOLERANCE.to_timedelta64()
    rows = []
    for episode in episodes.itertuples():
        for k, when in enumerate(attempt_times(episode.series_began), start=1):
            if not pd.isna(episode.ended) and when > episode.ended:
                break
            point = when.tz_convert(None).to_datetime64()
            observed = bool(len(starts)) and bool(np.min(np.abs(starts - point)) <= tolerance)
            rows.append(
                {
                    "series_began": episode.series_began,
                    "attempt": k,
                    "time": when,
                    "passed": when <= ctx.now,
                    "observed": observed,
                }
            )
    attempts = pd.DataFrame(rows, columns=["series_began", "attempt", "time", "passed", "observed"])
    latest = ctx.latest()
    state, _ = job_state(latest, cycles)
    current = episodes[episodes["ended"].isna()] if len(episodes) else episodes
    disabled = state == "Disabled"
    if disabled and len(episodes):
        last_episode = episodes.iloc[-1]
        reason, code, message = (
            last_episode["reason"],
            last_episode["error_code"],
            last_episode["error_message"],
        )
        return QuarantineTimeline(
            False,
            reason,
            code,
            message,
            last_episode["series_began"],
            None,
            last_episode["ended"] if not pd.isna(last_episode["ended"]) else last_episode["disable_at"],
            True,
            episodes,
            attempts,
        )
    if state == "Quarantine" and len(current):
        episode = current.iloc[-1]
        next_attempt = episode["next_attempt"]
        if pd.isna(next_attempt) or next_attempt < ctx.now:
            upcoming = [t for t in attempt_times(episode["series_began"]) if t > ctx.now]
            next_attempt = upcoming[0] if upcoming else pd.NaT
        return QuarantineTimeline(
            True,
            episode["reason"],
            episode["error_code"],
            episode["error_message"],
            episode["series_began"],
            None if pd.isna(next_attempt) else next_attempt,
            episode["disable_at"],
            False,
            episodes,
            attempts,
        )
    return QuarantineTimeline(False, None, None, None, None, None, None, disabled, episodes, attempts)
