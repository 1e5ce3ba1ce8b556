"""Trends across cycles over long windows: initial-cycle durations over time and incremental p50/p90 by week.

They read a cycles table (:func:`provkit.analysis.cycles.cycles_table`), whichever source built it; over months of history
that table comes cheaply from a Log Analytics workspace, where the cycles are summarised in KQL. Failures by code
by day come from the workspace directly (:meth:`provkit.data.sources.loganalytics.LogAnalytics.failures_by_day`) or
from the events table (:func:`failures_by_day`).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["failures_by_day", "initial_durations", "incremental_by_week"]


def initial_durations(cycles: pd.DataFrame) -> pd.DataFrame:
    """One row per initial cycle, oldest first: ``start``, ``duration`` and whether it is a lower bound (timed by
    its log span) and still ``running``."""
    initial = cycles[(cycles["kind"] == "initial") & ~cycles["inferred"]]
    return initial[["start", "duration", "duration_is_lower_bound", "running"]].reset_index(drop=True)


def incremental_by_week(cycles: pd.DataFrame) -> pd.DataFrame:
    """Incremental cycles by ISO week (Monday 00:00 UTC): ``week``, ``cycles``, ``timed`` (with a duration),
    ``p50`` and ``p90`` of their durations. Cycles without a duration (inferred, single entry) count in
    ``cycles`` only."""
    inc = cycles[(cycles["kind"] == "incremental")].copy()
    columns = ["week", "cycles", "timed", "p50", "p90"]
    if inc.empty:
        return pd.DataFrame(columns=columns)
    start = inc["start"].dt.tz_convert("UTC").dt.tz_localize(None)
    monday = start.dt.normalize() - pd.to_timedelta(start.dt.day_of_week, unit="D")
    inc["week"] = monday.dt.tz_localize("UTC")
    rows = []
    for week, group in inc.groupby("week", sort=True):
        durations = group["duration"].dropna()
        rows.append(
            {
                "week": week,
                "cycles": len(group),
                "timed": len(durations),
                "p50": durations.quantile(0.5) if len(durations) else pd.NaT,
                "p90": durations.quantile(0.9) if len(durations) else pd.NaT,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def failures_by_day(events: pd.DataFrame) -> pd.DataFrame:
    """Failed entries by UTC day and error code: ``day``, ``code``, ``entries``; from an events table."""
    failed = events[events["status"] == "failure"]
    if failed.empty:
        return pd.DataFrame(columns=["day", "code", "entries"])
    day = failed["activity_time"].dt.floor("D")
    frame = (
        pd.DataFrame({"day": day, "code": failed["error_code"].fillna("").astype(str)})
        .groupby(["day", "code"], sort=True)
        .size()
        .reset_index(name="entries")
    )
    return frame
