"""Plotly figures for the workbook: cycles, log volume, errors, initial-cycle progress and quarantine, and the
trends of long windows (initial-cycle durations over time, incremental p50/p90 by week, failures by code by day,
drawn from :mod:`provkit.analysis.trends`).

Every figure has a title that says what it shows and axis titles with units. Figures built from log entries
draw from aggregates (counts per day, per code), never a point per entry, so a million entries make a figure
of a few kilobytes. Figures built from the cycles table draw one point per cycle (a thousand or so).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

import provkit.analysis.cycles as cyc
from provkit.analysis import trends
from provkit.data.evidence import Evidence
from provkit.data.tables import ACTIONS, STATUSES

__all__ = [
    "cycle_durations",
    "entries_vs_duration",
    "events_per_day",
    "failures_by_day",
    "incremental_by_week",
    "incremental_distribution",
    "initial_durations",
    "initial_progress",
    "quarantine_timeline",
    "top_error_codes",
]

KIND_COLOURS = {"initial": "#d62728", "incremental": "#1f77b4", "unknown": "#7f7f7f"}
STATUS_COLOURS = {"success": "#2ca02c", "failure": "#d62728", "skipped": "#7f7f7f", "warning": "#ff7f0e"}
# The legend sits to the right of the plot, top-aligned: below it, it overlapped the x-axis title in JupyterLab.
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "legend": {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"},
}


# Log-axis ticks for durations in minutes, labelled as a reader says them.
_DURATION_TICKS = (
    (1 / 60, "1 s"),
    (5 / 60, "5 s"),
    (10 / 60, "10 s"),
    (0.5, "30 s"),
    (1, "1 min"),
    (2, "2 min"),
    (5, "5 min"),
    (15, "15 min"),
    (30, "30 min"),
    (60, "1 h"),
    (120, "2 h"),
    (240, "4 h"),
    (720, "12 h"),
    (1440, "1 d"),
    (4320, "3 d"),
    (10080, "7 d"),
)


def _log_axis(figure: go.Figure) -> None:
    """A log y-axis of durations in minutes, labelled as 10 s, 30 s, 1 min, 5 min, 1 h, 1 d: plotly's own log
    labels (5, 2, 10, 5, 2, 1) were easy to misread."""
    figure.update_yaxes(
        type="log", tickvals=[v for v, _ in _DURATION_TICKS], ticktext=[t for _, t in _DURATION_TICKS]
    )


def _minutes(durations: pd.Series) -> pd.Series:
    return durations.dt.total_seconds() / 60


def _figure(title: str, x: str, y: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(title={"text": title}, xaxis_title=x, yaxis_title=y, **_LAYOUT)
    return figure


def _empty_note(figure: go.Figure, text: str) -> go.Figure:
    figure.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    return figure


def cycle_durations(cycles: pd.DataFrame) -> go.Figure:
    """Duration of every cycle over time (log scale), initial and incremental told apart.

    Hollow markers are lower bounds (log span: first to last entry); filled ones come from the job status.
    Dotted vertical lines mark watermark resets (restart, attribute-mapping or scoping change). Inferred cycles
    (no log entries, no timing) are not drawn; the title counts them.
    """
    timed = cycles[cycles["duration"].notna()]
    inferred = int((cycles["inferred"] & cycles["duration"].isna()).sum())
    title = "Cycle durations: initial vs incremental cycles"
    if inferred:
        title += f" ({inferred} inferred empty cycles without timing not drawn)"
    figure = _figure(title, "Cycle start (UTC)", "Duration (log scale, seconds to days; data in minutes)")
    _log_axis(figure)
    for kind, colour in KIND_COLOURS.items():
        for lower_bound in (False, True):
            part = timed[(timed["kind"] == kind) & (timed["duration_is_lower_bound"] == lower_bound)]
            if part.empty:
                continue
            figure.add_trace(
                go.Scatter(
                    x=part["start"],
                    y=_minutes(part["duration"]).clip(lower=1 / 60),
                    mode="markers",
                    name=f"{kind} ({'log span, lower bound' if lower_bound else 'job status'})",
                    marker={
                        "color": colour,
                        "size": 9 if kind == "initial" else 6,
                        "symbol": "circle-open" if lower_bound else "circle",
                    },
                    customdata=part[["entries", "kind_reason"]].to_numpy(),
                    hovertemplate="%{x}<br>%{y:.1f} min<br>%{customdata[0]} entries<br>%{customdata[1]}"
                    "<extra></extra>",
                )
            )
    for row in cycles[cycles["reset_before"]].itertuples():
        figure.add_vline(x=row.start, line_dash="dot", line_color=KIND_COLOURS["initial"])
        figure.add_annotation(
            x=row.start,
            y=1,
            yref="paper",
            text=f"reset: {row.reset_reason}",
            showarrow=False,
            yanchor="bottom",
        )
    if timed.empty:
        _empty_note(figure, "no cycle with a known duration")
    return figure


def incremental_distribution(cycles: pd.DataFrame) -> go.Figure:
    """Histogram of incremental cycle durations with p50 and p90 lines (quarantine retries and running cycles
    left out)."""
    mask = (
        (cycles["kind"] == "incremental")
        & cycles["duration"].notna()
        & ~cycles["quarantine_attempt"]
        & ~cycles["running"]
    )
    minutes = _minutes(cycles.loc[mask, "duration"])
    bounds = int(cycles.loc[mask, "duration_is_lower_bound"].sum())
    # Say how the drawn cycles relate to all incremental cycles, so the count matches the notebook's verdict.
    total = int((cycles["kind"] == "incremental").sum())
    title = f"Incremental cycle durations: {len(minutes)} of {total} incremental cycles"
    left_out = total - len(minutes)
    notes = []
    if left_out:
        notes.append(f"{left_out} without a duration, running or quarantine retries left out")
    if bounds:
        notes.append(f"{bounds} drawn are lower bounds from log spans")
    if notes:
        title += "<br><sup>" + "; ".join(notes) + "</sup>"
    figure = _figure(title, "Duration (minutes)", "Cycles")
    if minutes.empty:
        return _empty_note(figure, "no finished incremental cycle with a known duration")
    figure.add_trace(go.Histogram(x=minutes, nbinsx=40, name="incremental cycles", marker_color="#1f77b4"))
    for q, dash in ((0.5, "dash"), (0.9, "dot")):
        value = float(minutes.quantile(q))
        figure.add_vline(x=value, line_dash=dash, line_color="#333")
        figure.add_annotation(
            x=value,
            y=1,
            yref="paper",
            text=f"p{int(q * 100)} {value:.1f} min",
            showarrow=False,
            yanchor="bottom",
        )
    return figure


def entries_vs_duration(cycles: pd.DataFrame) -> go.Figure:
    """Log entries of each cycle against its duration: initial cycles sit far to the right."""
    timed = cycles[cycles["duration"].notna() & (cycles["entries"] > 0)]
    figure = _figure(
        "Log entries per cycle vs cycle duration", "Log entries in the cycle", "Duration (minutes)"
    )
    for kind, colour in KIND_COLOURS.items():
        part = timed[timed["kind"] == kind]
        if part.empty:
            continue
        figure.add_trace(
            go.Scatter(
                x=part["entries"],
                y=_minutes(part["duration"]),
                mode="markers",
                name=kind,
                marker={"color": colour},
                hovertemplate="%{x} entries<br>%{y:.1f} min<extra></extra>",
            )
        )
    if timed.empty:
        _empty_note(figure, "no logged cycle with a known duration")
    return figure


def events_per_day(events: pd.DataFrame, by: str = "action") -> go.Figure:
    """Stacked bars of log entries per UTC day, by ``action`` or by ``status`` (one bar segment per value)."""
    if by not in ("action", "status"):
        raise ValueError(f"by must be 'action' or 'status', not {by!r}")
    title = f"Provisioning log entries per day, by {by}"
    figure = _figure(title, "Day (UTC)", "Log entries")
    figure.update_layout(barmode="stack")
    if events.empty:
        return _empty_note(figure, "no log entries")
    day = events["activity_time"].dt.floor("D")
    values = events[by].astype("category").cat.add_categories(["(missing)"]).fillna("(missing)")
    counts = pd.crosstab(day, values)
    known = ACTIONS if by == "action" else STATUSES
    order = [v for v in known if v in counts.columns] + sorted(c for c in counts.columns if c not in known)
    for value in order:
        column = counts[value]
        if not column.any():
            continue
        colour = STATUS_COLOURS.get(value) if by == "status" else None
        figure.add_trace(go.Bar(x=counts.index, y=column.to_numpy(), name=str(value), marker_color=colour))
    return figure


def top_error_codes(events: pd.DataFrame, n: int = 10) -> go.Figure:
    """The ``n`` most frequent error codes in the log entries as horizontal bars (most frequent on top),
    split by the entries' status: skipped entries carry codes too (e.g. ``EntryJoiningPropertyValueIsMissing``)."""
    has_code = events["error_code"].notna() & (events["error_code"].astype(str).str.len() > 0)
    coded = events.loc[has_code, ["error_code", "status"]]
    top = coded["error_code"].value_counts().head(n)
    figure = _figure(
        f"Top {n} error codes in the provisioning logs, by entry status", "Log entries", "Error code"
    )
    figure.update_layout(barmode="stack")
    if top.empty:
        return _empty_note(figure, "no error codes in the logs")
    coded = coded[coded["error_code"].isin(top.index)]
    status = coded["status"].astype(str).where(coded["status"].notna(), "(missing)")
    counts = pd.crosstab(coded["error_code"].astype(str), status).reindex([str(c) for c in top.index[::-1]])
    order = [v for v in STATUSES if v in counts.columns] + sorted(
        c for c in counts.columns if c not in STATUSES
    )
    for value in order:
        figure.add_trace(
            go.Bar(
                x=counts[value].to_numpy(),
                y=counts.index.tolist(),
                orientation="h",
                name=value,
                marker_color=STATUS_COLOURS.get(value),
            )
        )
    figure.update_layout(height=max(300, 40 * len(counts) + 150))
    return figure


def initial_progress(evidence: Evidence, eta: cyc.Eta | None) -> go.Figure:
    """The running initial cycle's progress observations (share of units done) and its ETA band.

    The darker band is the ETA range from the progress (or the logs), the lighter one the documented sizing
    (0.01-0.08 min per object in scope); the dashed line runs from the cycle's start to the likely end.
    """
    observations = cyc.progress_observations(evidence)
    figure = _figure("Initial cycle progress and estimated end", "Time (UTC)", "Completed (% of units)")
    figure.update_yaxes(range=[0, 105])
    if eta is not None and eta.cycle_start is not None:
        observations = observations[observations["time"] >= pd.Timestamp(eta.cycle_start)]
    if len(observations):
        share = observations["completed"] / observations["total"] * 100
        units = observations["units"].dropna()
        figure.add_trace(
            go.Scatter(
                x=observations["time"],
                y=share,
                mode="markers+lines",
                name=f"observed ({units.iloc[-1] if len(units) else 'units'})",
                marker={"color": "#1f77b4"},
            )
        )
    if eta is None:
        return _empty_note(figure, "no initial cycle is running" if observations.empty else "no ETA")
    if eta.sizing_earliest is not None and eta.sizing_latest is not None:
        figure.add_vrect(
            x0=eta.sizing_earliest,
            x1=eta.sizing_latest,
            fillcolor="#ff7f0e",
            opacity=0.1,
            line_width=0,
            annotation_text="documented sizing",
            annotation_position="bottom left",
        )
    if eta.earliest is not None and eta.latest is not None:
        figure.add_vrect(
            x0=eta.earliest,
            x1=eta.latest,
            fillcolor="#d62728",
            opacity=0.2,
            line_width=0,
            annotation_text="ETA range",
            annotation_position="top left",
        )
    if eta.likely is not None and eta.cycle_start is not None:
        figure.add_trace(
            go.Scatter(
                x=[eta.cycle_start, eta.likely],
                y=[0, 100],
                mode="lines",
                line={"dash": "dash", "color": "#d62728"},
                name=f"likely end ({eta.likely_method})",
            )
        )
    return figure


def quarantine_timeline(evidence: Evidence, cycles: pd.DataFrame | None = None) -> go.Figure:
    """Quarantine episodes as bars, the documented retry schedule as markers (filled when a run was seen),
    the next attempt and the date the job is or will be disabled (seriesBegan + 28 days)."""
    timeline = cyc.quarantine_timeline(evidence, cycles)
    figure = _figure(
        "Quarantine episodes and the documented retry schedule", "Time (UTC)", "Quarantine episode"
    )
    if timeline.episodes.empty:
        return _empty_note(figure, "no quarantine in the evidence")
    now = pd.Timestamp(evidence.now)
    labels = []
    for episode in timeline.episodes.itertuples():
        label = f"{episode.series_began:%Y-%m-%d} {episode.reason or 'quarantine'}"
        labels.append(label)
        end = episode.ended if not pd.isna(episode.ended) else now
        figure.add_trace(
            go.Scatter(
                x=[episode.series_began, end],
                y=[label, label],
                mode="lines",
                line={"width": 14, "color": "#ff7f0e"},
                name="quarantined" + (f" (ended: {episode.ended_by})" if episode.ended_by else " (ongoing)"),
            )
        )
        attempts = timeline.attempts[timeline.attempts["series_began"] == episode.series_began]
        ongoing = pd.isna(episode.ended)
        groups = (
            ("retry seen", attempts["passed"] & attempts["observed"], "circle", "#333"),
            (
                "scheduled retry (no run seen)",
                attempts["passed"] & ~attempts["observed"],
                "circle-open",
                "#333",
            ),
            ("retries ahead if nothing changes", ~attempts["passed"] & ongoing, "line-ns-open", "#999"),
        )
        for name, mask, symbol, colour in groups:
            part = attempts[mask]
            if part.empty:
                continue
            figure.add_trace(
                go.Scatter(
                    x=part["time"],
                    y=[label] * len(part),
                    mode="markers",
                    marker={"symbol": symbol, "size": 9, "color": colour},
                    name=name,
                )
            )
    if timeline.next_attempt is not None:
        figure.add_trace(
            go.Scatter(
                x=[timeline.next_attempt],
                y=[labels[-1]],
                mode="markers",
                marker={"symbol": "star", "size": 14, "color": "#d62728"},
                name="next attempt",
            )
        )
    if timeline.disable_at is not None:
        figure.add_vline(x=timeline.disable_at, line_dash="dash", line_color="#d62728")
        text = "disabled" if timeline.disabled else "disabled if nothing changes"
        figure.add_annotation(
            x=timeline.disable_at, y=1, yref="paper", text=text, showarrow=False, yanchor="bottom"
        )
    return figure


# ---- trends over long windows (provkit.analysis.trends) ------------------------------------------------
def initial_durations(cycles: pd.DataFrame) -> go.Figure:
    """Initial-cycle durations over time (log scale), one point per initial cycle that wrote entries: a trend
    across restarts and watermark resets. Hollow markers are lower bounds (log span); a running cycle's point
    is its duration so far."""
    frame = trends.initial_durations(cycles)
    timed = frame[frame["duration"].notna()]
    figure = _figure(
        f"Initial-cycle durations over time: {len(timed)} initial cycles",
        "Initial cycle start (UTC)",
        "Duration (log scale, seconds to days; data in minutes)",
    )
    _log_axis(figure)
    if timed.empty:
        return _empty_note(figure, "no initial cycle with a known duration")
    figure.add_trace(
        go.Scatter(
            x=timed["start"],
            y=_minutes(timed["duration"]).clip(lower=1 / 60),
            mode="lines+markers",
            name="initial cycles",
            line={"color": KIND_COLOURS["initial"], "dash": "dot"},
            marker={
                "color": KIND_COLOURS["initial"],
                "size": 9,
                "symbol": [
                    "circle-open" if bound else "circle" for bound in timed["duration_is_lower_bound"]
                ],
            },
            customdata=[
                ("running, so far" if run else ("log span, lower bound" if bound else "job status"))
                for run, bound in zip(timed["running"], timed["duration_is_lower_bound"], strict=True)
            ],
            hovertemplate="%{x}<br>%{y:.1f} min (%{customdata})<extra></extra>",
        )
    )
    return figure


def incremental_by_week(cycles: pd.DataFrame) -> go.Figure:
    """Incremental-cycle durations by ISO week (Monday, UTC): p50 and p90 lines, the week's cycle count in the
    hover. A p90 creeping up towards the schedule's interval means a backlog building."""
    weeks = trends.incremental_by_week(cycles)
    weeks = weeks[weeks["timed"] > 0]
    figure = _figure(
        f"Incremental cycles by week: p50 and p90 durations over {len(weeks)} weeks",
        "Week starting (Monday, UTC)",
        "Duration (log scale, seconds to days; data in minutes)",
    )
    _log_axis(figure)
    if weeks.empty:
        return _empty_note(figure, "no incremental cycle with a known duration")
    counts = weeks[["cycles", "timed"]].to_numpy()
    for column, dash in (("p50", "solid"), ("p90", "dash")):
        figure.add_trace(
            go.Scatter(
                x=weeks["week"],
                y=_minutes(weeks[column]).clip(lower=1 / 60),
                mode="lines+markers",
                name=column,
                line={"color": KIND_COLOURS["incremental"], "dash": dash},
                customdata=counts,
                hovertemplate=f"week of %{{x|%Y-%m-%d}}<br>{column} %{{y:.1f}} min<br>"
                "%{customdata[1]} of %{customdata[0]} cycles timed<extra></extra>",
            )
        )
    return figure


def failures_by_day(failures: pd.DataFrame, n: int = 8) -> go.Figure:
    """Failed entries per UTC day, stacked by error code (the ``n`` most frequent codes, the rest as "other").

    ``failures`` has ``day``, ``code`` and ``entries``: :func:`provkit.analysis.trends.failures_by_day` of an
    events table, or the same aggregate summarised in KQL by a Log Analytics workspace.
    """
    figure = _figure("Failed provisioning entries per day, by error code", "Day (UTC)", "Failed entries")
    figure.update_layout(barmode="stack")
    if failures.empty:
        return _empty_note(figure, "no failed entries")
    codes = failures["code"].fillna("").astype(str).replace("", "(no code)")
    top = failures.groupby(codes)["entries"].sum().sort_values(ascending=False).head(n).index
    grouped = (
        failures.assign(code=codes.where(codes.isin(top), "other"))
        .groupby(["day", "code"], sort=True)["entries"]
        .sum()
        .unstack(fill_value=0)
    )
    for code in [*top, *(["other"] if "other" in grouped.columns else [])]:
        figure.add_trace(go.Bar(x=grouped.index, y=grouped[code].to_numpy(), name=str(code)))
    return figure
