"""When the running initial cycle will end: progress observations, documented sizing and the log rate."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.cycles.context import Context, snapshots_of
from provkit.analysis.cycles.reconstruct import cycles_table
from provkit.analysis.cycles.rules import SIZING_MINUTES_PER_OBJECT
from provkit.analysis.cycles.values import as_utc, jsonable, same_text
from provkit.analysis.syncscope import sync_scope_of
from provkit.data.evidence import Evidence
from provkit.formatting import format_time, text_or_none


@dataclass
class Eta:
    """When the running initial cycle will end: a range and the method behind each bound.

    ``earliest``/``likely``/``latest`` come from the job's progress observations when there are any
    (``progress`` method: a linear fit for ``likely``, the fastest and slowest observed rates for the bounds),
    else from the log entries so far and the documented sizing. ``sizing_earliest``/``sizing_latest`` are
    always the documented 0.01-0.08 minutes per object in scope, counted from the cycle's start.
    """

    cycle_start: datetime | None
    earliest: datetime | None
    likely: datetime | None
    latest: datetime | None
    earliest_method: str
    likely_method: str
    latest_method: str
    sizing_earliest: datetime | None
    sizing_latest: datetime | None
    objects_in_scope: tuple[int, int] | None
    objects_in_scope_source: str
    observations: int
    completed: int | None
    total: int | None
    units: str | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(self)


def _progress_observations(evidence: Evidence, snapshots: pd.DataFrame) -> pd.DataFrame:
    """Every progress observation known: the latest job JSON's list plus each snapshot's latest one."""
    rows = []
    status = (evidence.job or {}).get("status") if isinstance(evidence.job, dict) else None
    for item in (status or {}).get("progress") or []:
        if not isinstance(item, dict):
            continue
        rows.append(
            {
                "time": as_utc(item.get("progressObservationDateTime")),
                "completed": item.get("completedUnits"),
                "total": item.get("totalUnits"),
                "units": text_or_none(item.get("units"), strip=True),
            }
        )
    if not snapshots.empty and "progress_time" in snapshots:
        for row in snapshots[snapshots["progress_time"].notna()].itertuples():
            rows.append(
                {
                    "time": as_utc(row.progress_time),
                    "completed": row.progress_completed,
                    "total": row.progress_total,
                    "units": text_or_none(row.progress_units, strip=True),
                }
            )
    frame = pd.DataFrame(rows, columns=["time", "completed", "total", "units"])
    frame = frame[frame["time"].notna()]
    frame["completed"] = pd.to_numeric(frame["completed"], errors="coerce")
    frame["total"] = pd.to_numeric(frame["total"], errors="coerce")
    frame = frame[(frame["total"] > 0) & frame["completed"].notna()]
    frame = frame.drop_duplicates("time").sort_values("time", kind="stable").reset_index(drop=True)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def progress_observations(evidence: Evidence) -> pd.DataFrame:
    """The job's progress observations (time, completed, total, units), oldest first, without duplicates:
    the latest job JSON's whole list plus the latest observation kept in each job-status snapshot."""
    return _progress_observations(evidence, snapshots_of(evidence))


def _assigned_count(evidence: Evidence) -> int | None:
    """The documented sizing count: assigned users + groups + group members (direct members only)."""
    if not evidence.assignments:
        return None
    users = groups = members = 0
    for assignment in evidence.assignments:
        kind = text_or_none(assignment.get("principalType"), strip=True) or ""
        if kind.lower() == "user":
            users += 1
        elif kind.lower() == "group":
            groups += 1
            facts = evidence.groups.get(str(assignment.get("principalId"))) or {}
            members += len(facts.get("direct") or [])
    return users + groups + members


def running_initial(cycles: pd.DataFrame) -> pd.Series | None:
    running = cycles[cycles["running"] & (cycles["kind"] == "initial")]
    return None if running.empty else running.iloc[-1]


def initial_cycle_eta(evidence: Evidence, cycles: pd.DataFrame | None = None) -> Eta | None:
    """When the initial cycle that is running now will end, or None when no initial cycle is running.

    Assumes ``completedUnits`` counts whole units (pages) done, so the true share lies in [c, c+1) / total, and
    that the rate so far continues. The cycle's start is its first log entry (or the first observation).
    The steps: the running cycle and its observations, the objects in scope, the documented sizing, the
    estimate from the progress observations (else the log rate, else the sizing), and finally the range made
    consistent with what is known (still running at the latest snapshot; likely within the range).
    """
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = Context.of(evidence)
    running = _running_cycle(evidence, ctx, cycles)
    if running is None:
        return None
    start, cycle_id, observations = running
    notes: list[str] = []
    logged = _CycleLog.of(evidence, cycle_id)
    scope, scope_source = _objects_in_scope(evidence, observations, logged, notes)
    sizing = _sizing(start, scope)
    estimate = _Estimate()
    if len(observations):
        _from_progress(estimate, observations, start, ctx.horizon, notes)
    if estimate.likely is None and scope is not None and logged.entries > 1:
        _from_log_rate(estimate, start, scope, logged)
    _from_sizing(estimate, sizing)
    _consistent(estimate, ctx.horizon, notes)
    return Eta(
        cycle_start=start,
        earliest=estimate.earliest,
        likely=estimate.likely,
        latest=estimate.latest,
        earliest_method=estimate.methods[0] or "none",
        likely_method=estimate.methods[1] or "none",
        latest_method=estimate.methods[2] or "none",
        sizing_earliest=sizing[0],
        sizing_latest=sizing[1],
        objects_in_scope=scope,
        objects_in_scope_source=scope_source,
        observations=len(observations),
        completed=estimate.completed,
        total=estimate.total,
        units=estimate.units,
        notes=notes,
    )


def _running_cycle(
    evidence: Evidence, ctx: Context, cycles: pd.DataFrame
) -> tuple[pd.Timestamp, Any, pd.DataFrame] | None:
    """(start, cycle id, progress observations since the start) of the running initial cycle; a job whose
    first run has not completed (NotRun) with progress observations counts, from its first observation."""
    cycle = running_initial(cycles)
    observations = _progress_observations(evidence, ctx.snapshots)
    if cycle is None:
        latest = ctx.latest()
        if latest is None or not same_text(latest.get("status_code"), "NotRun") or observations.empty:
            return None
        start, cycle_id = observations["time"].iloc[0], None
    else:
        start, cycle_id = cycle["start"], cycle["cycle_id"]
    return start, cycle_id, observations[observations["time"] >= start]


@dataclass(frozen=True)
class _CycleLog:
    """What the ETA reads of the running cycle's log entries: how many, the distinct objects logged so far and
    by a moment, and the newest entry's time."""

    entries: int
    seen: int
    newest: Any
    _seen_by: Callable[[Any], int]

    def seen_by(self, moment: Any) -> int:
        return self._seen_by(moment)

    @classmethod
    def of(cls, evidence: Evidence, cycle_id: Any) -> _CycleLog:
        """From the log summary's newest cycle when it is this one and counts its objects (the same on every
        source, a workspace's summarised in KQL: :class:`~provkit.data.logsummary.LastCycle`), else from the
        entries (exact). The summary counts the objects logged by a moment from their first-seen minutes: exact
        when the moment is at or after the newest entry (a job status read now) or on a minute's start, else it
        leaves out the objects first logged in that minute before the moment."""
        if cycle_id is None:
            return cls(0, 0, None, lambda _moment: 0)
        last = evidence.summarise_logs().last_cycle
        if last is not None and last.cycle_id == str(cycle_id) and last.first_seen is not None:
            return cls(
                last.entries, last.objects or 0, last.last, lambda moment: last.objects_by(moment) or 0
            )
        # The running cycle is not the newest entry's: should not happen (a running cycle logs the newest entry),
        # but a source may summarise otherwise. Its entries then.
        events = evidence.events
        mine = events[events["cycle_id"] == cycle_id] if len(events) else events.iloc[:0]
        ids = mine["source_id"]
        ids = ids[ids.notna() & (ids.astype(object) != "")]
        times = mine.loc[ids.index, "activity_time"]
        return cls(
            len(mine),
            int(ids.nunique()),
            mine["activity_time"].max() if len(mine) else None,
            lambda moment: int(ids[(times <= moment).to_numpy(dtype=bool)].nunique()),
        )


def _objects_in_scope(
    evidence: Evidence, observations: pd.DataFrame, logged: _CycleLog, notes: list[str]
) -> tuple[tuple[int, int] | None, str]:
    """(low, high) objects in scope and where the figure comes from: the assignments (unless the logs say
    'sync all'), else the objects logged so far over the completed share, else the objects logged so far (a
    lower bound, with a note)."""
    # The scope setting is not readable from Graph: the logs may settle it (provkit.analysis.syncscope).
    sync_all = sync_scope_of(evidence).sync_all
    assigned = _assigned_count(evidence) if sync_all is not True else None
    if assigned:
        source = "assignments (users + groups + group members)"
        if sync_all is None:
            source += " if the scope is 'Sync only assigned' (unknown; under 'Sync all' every user and group)"
        return (assigned, assigned), source
    if len(observations) and logged.entries:
        obs = observations.iloc[-1]
        c, units_total = int(obs["completed"]), int(obs["total"])
        seen = logged.seen_by(obs["time"])
        if c > 0 and seen > 0:
            low = math.floor(seen * units_total / min(c + 1, units_total))
            high = math.ceil(seen * units_total / c)
            return (low, high), (
                f"{seen} distinct objects logged by {format_time(obs['time'])} / completed share {c}-{c + 1} "
                f"of {units_total}"
            )
    if logged.entries:
        seen = logged.seen
        notes.append(
            "objects in scope unknown: sizing uses the objects logged so far, so it is a lower bound"
        )
        return (seen, seen), f"at least the {seen} distinct objects logged so far (a lower bound)"
    return None, "unknown"


def _sizing(start: pd.Timestamp, scope: tuple[int, int] | None) -> tuple[Any, Any]:
    """The documented 0.01-0.08 minutes per object in scope, from the cycle's start (None, None unknown)."""
    if scope is None:
        return None, None
    return (
        start + pd.Timedelta(minutes=SIZING_MINUTES_PER_OBJECT[0] * scope[0]),
        start + pd.Timedelta(minutes=SIZING_MINUTES_PER_OBJECT[1] * scope[1]),
    )


@dataclass
class _Estimate:
    """The range being built, the method behind each bound, and the last observation's counts."""

    earliest: Any = None
    likely: Any = None
    latest: Any = None
    methods: list[str] = field(default_factory=lambda: ["", "", ""])
    completed: int | None = None
    total: int | None = None
    units: str | None = None


def _from_progress(
    estimate: _Estimate,
    observations: pd.DataFrame,
    start: pd.Timestamp,
    still_running_at: pd.Timestamp,
    notes: list[str],
) -> None:
    """The range from the progress observations: the fastest and slowest observed rates for the bounds, a
    linear fit through the start and the observations for the likely end."""
    last = observations.iloc[-1]
    total = int(last["total"])
    estimate.completed, estimate.total, estimate.units = int(last["completed"]), total, last["units"]
    minutes = ((observations["time"] - start).dt.total_seconds() / 60).to_numpy()
    done = observations["completed"].to_numpy(dtype=float)
    t_last, c_last = float(minutes[-1]), float(done[-1])
    if c_last >= total:
        notes.append("the last observation shows every unit completed: the cycle is finishing")
        estimate.earliest = estimate.likely = estimate.latest = max(last["time"], still_running_at)
        estimate.methods = ["progress (complete)"] * 3
        return
    if t_last <= 0:
        notes.append("the only progress observation is at the cycle's start: no rate yet")
        return
    # Rates: overall so far (with the unit rounding) and between consecutive observations.
    rates = [c_last / t_last, (c_last + 1) / t_last]
    gaps = np.diff(minutes)
    steps = np.diff(done)
    rates += [s / g for s, g in zip(steps.tolist(), gaps.tolist(), strict=True) if g > 0]
    positive = [r for r in rates if r > 0]
    remaining = total - c_last
    units = estimate.units or "units"
    if positive:
        fastest, slowest = max(positive), min(positive)
        estimate.earliest = last["time"] + pd.Timedelta(minutes=max(remaining - 1, 0) / fastest)
        estimate.latest = last["time"] + pd.Timedelta(minutes=remaining / slowest)
        estimate.methods[0] = f"progress: fastest observed rate ({fastest:.3g} {units}/min)"
        estimate.methods[2] = f"progress: slowest observed rate ({slowest:.3g} {units}/min)"
    # Linear fit through the start (0 done) and the observations (mid-unit, as c is rounded down).
    xs = np.r_[0.0, minutes]
    ys = np.r_[0.0, np.minimum(done + 0.5, total)]
    slope, intercept = np.polyfit(xs, ys, 1) if len(xs) > 2 else (ys[-1] / xs[-1], 0.0)
    if slope > 0:
        estimate.likely = start + pd.Timedelta(minutes=(total - intercept) / slope)
        estimate.methods[1] = f"progress: linear fit of {len(observations)} observation(s)"


def _from_log_rate(
    estimate: _Estimate, start: pd.Timestamp, scope: tuple[int, int], logged: _CycleLog
) -> None:
    """The likely end at the rate objects were logged so far, for the middle of the objects in scope."""
    span = (logged.newest - start).total_seconds() / 60
    seen = logged.seen
    if span > 0 and seen > 0:
        middle = (scope[0] + scope[1]) / 2
        estimate.likely = start + pd.Timedelta(minutes=span * middle / seen)
        estimate.methods[1] = f"log rate: {seen / span:.3g} objects/min so far, {middle:.0f} objects in scope"


def _from_sizing(estimate: _Estimate, sizing: tuple[Any, Any]) -> None:
    """The documented sizing for a bound nothing else gave, and the middle of the range for the likely end."""
    if estimate.earliest is None and sizing[0] is not None:
        estimate.earliest, estimate.methods[0] = sizing[0], "sizing: 0.01 min per object in scope"
    if estimate.latest is None and sizing[1] is not None:
        estimate.latest, estimate.methods[2] = sizing[1], "sizing: 0.08 min per object in scope"
    if estimate.likely is None and estimate.earliest is not None and estimate.latest is not None:
        estimate.likely = estimate.earliest + (estimate.latest - estimate.earliest) / 2
        estimate.methods[1] = "middle of the range"


def _consistent(estimate: _Estimate, still_running_at: pd.Timestamp, notes: list[str]) -> None:
    """The cycle was still running at the latest snapshot, so it cannot end before that; and the range holds
    the likely end (a log rate faster than the documented sizing could put it before the earliest)."""
    moved = format_time(still_running_at)
    if estimate.earliest is not None and estimate.earliest < still_running_at:
        notes.append(f"earliest moved to the latest snapshot ({moved}): still running then")
        estimate.earliest = still_running_at
    if estimate.likely is not None and estimate.likely < still_running_at:
        notes.append(f"likely moved to the latest snapshot ({moved}): still running then")
        estimate.likely = still_running_at
    if estimate.latest is not None and estimate.earliest is not None and estimate.latest < estimate.earliest:
        estimate.latest = estimate.earliest
    if estimate.likely is not None and estimate.earliest is not None and estimate.likely < estimate.earliest:
        notes.append(
            f"likely moved to the earliest end ({format_time(estimate.earliest)}): the likely estimate "
            f"({estimate.methods[1]}) fell before it"
        )
        estimate.likely = estimate.earliest
    if estimate.likely is not None and estimate.latest is not None and estimate.likely > estimate.latest:
        notes.append(
            f"likely moved to the latest end ({format_time(estimate.latest)}): the likely estimate "
            f"({estimate.methods[1]}) fell after it"
        )
        estimate.likely = estimate.latest
