"""The cycle summary of one app and its text for a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from provkit.analysis.cycles.context import Context
from provkit.analysis.cycles.eta import Eta, initial_cycle_eta
from provkit.analysis.cycles.reconstruct import cycles_table
from provkit.analysis.cycles.state import (
    ChangeEta,
    change_eta,
    incremental_durations,
    job_state,
    last_start,
)
from provkit.analysis.cycles.values import jsonable
from provkit.data.evidence import Evidence
from provkit.formatting import format_duration, format_time, text_or_none


@dataclass
class CycleSummary:
    """What the cycles say, in a few numbers. ``as_dict()`` gives JSON values (durations in seconds)."""

    app: str
    job_id: str | None
    state: str
    state_detail: str
    quarantine_reason: str | None
    interval: timedelta | None
    interval_source: str
    cycles: int
    logged_cycles: int
    inferred_cycles: int
    initial_cycles: int
    incremental_cycles: int
    unknown_cycles: int
    initial_start: datetime | None
    initial_duration: timedelta | None
    initial_duration_is_lower_bound: bool
    initial_reason: str | None
    incremental_p50: timedelta | None
    incremental_p90: timedelta | None
    incremental_max: timedelta | None
    incremental_basis: str
    last_cycle_start: datetime | None
    initial_eta: Eta | None
    change_eta: ChangeEta | None
    entries_without_cycle: int
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(self)


def summary(evidence: Evidence, cycles: pd.DataFrame | None = None) -> CycleSummary:
    """The cycle summary of one app: state, initial duration, incremental p50/p90/max, ETAs.

    The initial duration is the latest complete initial cycle's (a lower bound when only its log span is
    known); incremental percentiles use non-inferred, finished incremental cycles outside quarantine.
    """
    if cycles is None:
        cycles = cycles_table(evidence)
    ctx = Context.of(evidence)
    latest = ctx.latest()
    state, detail = job_state(latest, cycles)
    notes: list[str] = []
    initial = cycles[(cycles["kind"] == "initial") & ~cycles["running"]]
    last_initial = initial.iloc[-1] if len(initial) else None
    durations = incremental_durations(cycles)
    incremental = cycles[cycles["kind"] == "incremental"]
    measured = incremental.loc[durations.index]
    bounds = int(measured["duration_is_lower_bound"].sum())
    if len(durations):
        basis = f"{len(durations)} incremental cycles: {len(durations) - bounds} timed by the job status"
        if bounds:
            basis += f", {bounds} by their log span (lower bounds)"
    else:
        basis = "no finished incremental cycle with a known duration"
    if bounds and bounds == len(durations):
        notes.append("incremental durations are log spans (first to last entry): the real cycles are longer")
    if state == "Running initial cycle" and last_initial is None:
        notes.append("no initial cycle has completed yet")
    without = int(cycles.attrs.get("entries_without_cycle", 0))
    if without:
        notes.append(f"{without} log entries have no cycleId and are not placed in a cycle")
    pending = ctx.audits[(ctx.audits["kind"] == "reset") & (ctx.audits["time"] > last_start(cycles))]
    for audit in pending.itertuples():
        notes.append(
            f"watermark reset ({audit.reason}) at {format_time(audit.time)}: the next cycle is initial"
        )
    eta = initial_cycle_eta(evidence, cycles) if state in ("Running initial cycle", "NotRun") else None
    starts = cycles["start"].dropna()
    return CycleSummary(
        app=evidence.display_name,
        job_id=text_or_none(latest["job_id"], strip=True)
        if latest is not None
        else _first_text(cycles["job_id"]),
        state=state,
        state_detail=detail,
        quarantine_reason=text_or_none(latest.get("quarantine_reason"), strip=True)
        if latest is not None
        else None,
        interval=ctx.interval,
        interval_source=ctx.interval_source,
        cycles=len(cycles),
        logged_cycles=int((~cycles["inferred"]).sum()),
        inferred_cycles=int(cycles["inferred"].sum()),
        initial_cycles=int((cycles["kind"] == "initial").sum()),
        incremental_cycles=len(incremental),
        unknown_cycles=int((cycles["kind"] == "unknown").sum()),
        initial_start=None if last_initial is None else last_initial["start"],
        initial_duration=None if last_initial is None else last_initial["duration"],
        initial_duration_is_lower_bound=bool(
            last_initial is not None and last_initial["duration_is_lower_bound"]
        ),
        initial_reason=None if last_initial is None else last_initial["kind_reason"],
        incremental_p50=durations.quantile(0.5) if len(durations) else None,
        incremental_p90=durations.quantile(0.9) if len(durations) else None,
        incremental_max=durations.max() if len(durations) else None,
        incremental_basis=basis,
        last_cycle_start=starts.iloc[-1] if len(starts) else None,
        initial_eta=eta,
        change_eta=change_eta(evidence, cycles),
        entries_without_cycle=without,
        notes=notes,
    )


def _first_text(series: pd.Series) -> str | None:
    known = series.dropna()
    return text_or_none(known.iloc[0], strip=True) if len(known) else None


def format_cycles(cycles: pd.DataFrame, result: CycleSummary, *, last: int = 20) -> str:
    """The summary lines and the latest ``last`` cycles as a fixed-width table for a terminal."""
    lines = [f"{result.app} ({result.job_id or 'job id unknown'})"]
    lines.append(f"  state              {result.state}: {result.state_detail}")
    initial = format_duration(result.initial_duration, missing="-")
    if result.initial_duration is not None and result.initial_duration_is_lower_bound:
        initial = ">= " + initial
    started = f" (started {format_time(result.initial_start)})" if result.initial_start is not None else ""
    lines.append(f"  initial cycle      {initial}{started}")
    p50, p90, longest = (
        format_duration(value, missing="-")
        for value in (result.incremental_p50, result.incremental_p90, result.incremental_max)
    )
    lines.append(f"  incremental        p50 {p50}, p90 {p90}, max {longest} ({result.incremental_basis})")
    lines.append(
        f"  cycles             {result.cycles} ({result.logged_cycles} logged, {result.inferred_cycles} inferred; "
        f"{result.initial_cycles} initial), interval {format_duration(result.interval, missing='-')}"
    )
    eta = result.initial_eta
    if eta is not None:
        lines.append(
            f"  initial cycle ETA  {format_time(eta.likely)} (range {format_time(eta.earliest)} to "
            f"{format_time(eta.latest)}; sizing {format_time(eta.sizing_earliest)} to "
            f"{format_time(eta.sizing_latest)})"
        )
    change = result.change_eta
    if change is not None:
        if change.never:
            lines.append(f"  a change made now  never, until the job is started ({change.state})")
        elif change.likely is not None:
            condition = " if the cause is fixed" if change.only_if_fixed else ""
            lines.append(
                f"  a change made now  reaches the app about {format_time(change.likely)}{condition} "
                f"(between {format_time(change.earliest)} and {format_time(change.latest)})"
            )
        else:
            lines.append(f"  a change made now  {change.explanation}")
    lines.extend(f"  note: {note}" for note in result.notes)
    lines.append("")
    header = f"{'start (UTC)':<17} {'duration':>12} {'kind':<11} {'entries':>7} {'failed':>6} {'objects':>7}  notes"
    lines.append(header)
    lines.append("-" * len(header))
    for row in cycles.tail(last).itertuples():
        start = "-" if pd.isna(row.start) else row.start.strftime("%Y-%m-%d %H:%M")
        duration = format_duration(row.duration, missing="-")
        if row.duration_is_lower_bound and duration != "-":
            duration = ">=" + duration
        notes = []
        if row.reset_before:
            notes.append(f"reset: {row.reset_reason}")
        if row.inferred:
            notes.append(f"inferred ({row.timing_source})")
        if row.quarantine_attempt:
            notes.append("quarantine retry")
        if row.running:
            notes.append("running")
        if row.kind == "unknown":
            notes.append(row.kind_reason)
        lines.append(
            f"{start:<17} {duration:>12} {row.kind:<11} {row.entries:>7} {row.n_failure:>6} "
            f"{row.distinct_objects:>7}  {'; '.join(notes)}"
        )
    if len(cycles) > last:
        lines.append(f"({len(cycles) - last} earlier cycles not shown)")
    return "\n".join(lines)
