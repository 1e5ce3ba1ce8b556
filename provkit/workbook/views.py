"""Tables and names the notebooks show about one app's evidence: the job's state in a row, the latest failures,
the entries the app refused for credentials, skip reasons with what they mean, watermark resets, an object's name,
and which trends a window holds enough of to draw (:func:`trend_gaps`).

Each takes evidence (or a cycle table) and returns a pandas DataFrame or text: no display, no fetch.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from provkit.analysis import trends
from provkit.analysis.checks.credentials import rejected_entries
from provkit.analysis.checks.facts import gather
from provkit.data.evidence import Evidence
from provkit.formatting import format_duration, format_time

__all__ = [
    "SKIP_MEANINGS",
    "credential_failures",
    "first_skipped_user",
    "latest_failures",
    "object_name",
    "skip_reasons",
    "status_row",
    "trend_gaps",
    "trends_text",
    "watermark_resets",
]

TRENDS = ("initial", "weekly", "failures")
"""The trend charts of a long window: initial-cycle durations over time, incremental p50/p90 by week, failures
by code by day (:mod:`provkit.workbook.charts`)."""


def status_row(evidence: Evidence) -> dict[str, Any]:
    """The job's state in one row: status code, schedule, last execution, quarantine, entries in the window."""
    job = evidence.job or {}
    status = job.get("status") or {}
    last = status.get("lastExecution") or {}
    quarantine = status.get("quarantine") or {}
    window = evidence.window
    return {
        "app": evidence.display_name,
        "status": status.get("code"),
        "schedule": (job.get("schedule") or {}).get("state"),
        "last_execution": last.get("state"),
        "last_ended": last.get("timeEnded"),
        "quarantine": quarantine.get("reason"),
        "entries": evidence.entry_count,
        "window": f"{window[0]:%Y-%m-%d %H:%M} .. {window[1]:%Y-%m-%d %H:%M} UTC" if window else None,
    }


_FAILURE_COLUMNS = [
    "activity_time",
    "source_name",
    "action",
    "error_code",
    "error_reason",
    "change_id",
]


def latest_failures(evidence: Evidence, n: int = 10) -> pd.DataFrame:
    """The ``n`` most recent failed entries: time, object, action, error code and reason, change id."""
    events = evidence.events
    failed = events[events["status"].astype(str) == "failure"]
    return (
        failed.sort_values("activity_time", ascending=False).head(n)[_FAILURE_COLUMNS].reset_index(drop=True)
    )


def credential_failures(evidence: Evidence, n: int = 20) -> pd.DataFrame:
    """Failed entries whose error says the app refused the credentials, latest first (at most ``n``)."""
    rejected = rejected_entries(gather(evidence))
    if rejected.empty:
        return pd.DataFrame(columns=_FAILURE_COLUMNS)
    return (
        rejected.sort_values("activity_time", ascending=False)
        .head(n)[_FAILURE_COLUMNS]
        .reset_index(drop=True)
    )


# What each logged skip reason means and whether it needs anyone, from Microsoft's troubleshooting guide and
# provisioning-logs how-to (skip reasons and error codes; the RedundantExport text is provisionOnDemand's
# documented answer: "The state of the user in both the source and target systems already match.").
SKIP_MEANINGS = {
    "redundantexport": "Nothing to do: the app already holds the same values, so no change was sent. Not an error.",
    "noteffectivelyentitled": (
        "Not assigned as far as the service can tell (no direct assignment, a nested group, a broken assignment, "
        "a disabled account) or, as the service words it, out of scope: see the findings below."
    ),
    "entryjoiningpropertyvalueismissing": (
        "The matching attribute is empty on the user or group: fill it in, or fix the matching attribute."
    ),
    "importskipped": (
        "The user lacks the matching property, so scoping, matching and export could not be evaluated."
    ),
    "entrysynchronizationskipped": "Out of scope, or already in the app with no change required.",
}


def skip_reasons(evidence: Evidence) -> pd.DataFrame:
    """Skipped entries and distinct objects per logged skip reason, most objects first, with what each reason
    means (``meaning``; empty for a reason the guide does not describe)."""
    events = evidence.events
    skipped = events[events["status"].astype(str) == "skipped"]
    if skipped.empty:
        return pd.DataFrame(columns=["skip_reason", "entries", "objects", "meaning"])
    reason = skipped["skip_reason"].astype(object).where(skipped["skip_reason"].notna(), "(none logged)")
    table = skipped.assign(skip_reason=reason).groupby("skip_reason", dropna=False)
    out = pd.DataFrame({"entries": table.size(), "objects": table["source_id"].nunique()})
    out = out.sort_values(["objects", "entries"], ascending=False).reset_index()
    out["meaning"] = [SKIP_MEANINGS.get(str(r).lower(), "") for r in out["skip_reason"]]
    return out


def first_skipped_user(evidence: Evidence) -> str | None:
    """The object id of the user most recently skipped, or None."""
    events = evidence.events
    skipped = events[(events["status"].astype(str) == "skipped") & events["source_id"].notna()]
    users = skipped[skipped["source_type"].astype(str).str.lower().str.contains("user")]
    if users.empty:
        return None
    return str(users.sort_values("activity_time").iloc[-1]["source_id"])


def watermark_resets(cycle_table: pd.DataFrame) -> pd.DataFrame:
    """The cycles that followed a watermark reset: start (UTC), kind, reason, duration (``1 h 01 min``; a ``≥``
    marks a lower bound from the log span) and entries."""
    columns = ["start", "kind", "reset_reason", "duration", "entries", "kind_reason"]
    resets = cycle_table[cycle_table["reset_before"]].reset_index(drop=True)
    out = resets[columns].copy()
    out["start"] = [format_time(v, missing="unknown") for v in resets["start"]]
    bound = resets.get("duration_is_lower_bound", pd.Series(False, index=resets.index)).fillna(False)
    out["duration"] = [
        ("≥ " if is_bound and text else "") + text
        for text, is_bound in zip((format_duration(v) for v in resets["duration"]), bound, strict=True)
    ]
    return out


def object_name(evidence: Evidence, object_id: str) -> str:
    """An object as a reader knows it: ``Name <upn>`` from its log entries, else its id."""
    events = evidence.events
    rows = events[events["source_id"].astype(str) == str(object_id)]
    if rows.empty:
        return str(object_id)
    last = rows.sort_values("activity_time").iloc[-1]
    name = last["source_name"] if pd.notna(last["source_name"]) else None
    upn = last["reportable_identifier"] if pd.notna(last["reportable_identifier"]) else None
    if name and upn and "@" in str(upn) and str(upn).lower() != str(name).lower():
        return f"{name} <{upn}>"
    return str(name or upn or object_id)


def trend_gaps(evidence: Evidence, cycle_table: pd.DataFrame) -> dict[str, str | None]:
    """For each of :data:`TRENDS`, None when the evidence holds enough to draw a trend (two points or more),
    else what is missing, in a sentence."""
    window = evidence.window
    days = (window[1] - window[0]).total_seconds() / 86400 if window else 0.0
    initial = trends.initial_durations(cycle_table)
    timed_initial = int(initial["duration"].notna().sum())
    weeks = trends.incremental_by_week(cycle_table)
    timed_weeks = int((weeks["timed"] > 0).sum()) if len(weeks) else 0
    gaps: dict[str, str | None] = {name: None for name in TRENDS}
    if timed_initial < 2:
        gaps["initial"] = (
            f"initial-cycle durations over time: {timed_initial} timed initial cycle(s) in the window, a trend "
            "needs two or more (each restart, mapping or scoping change starts one)"
        )
    if timed_weeks < 2 or days < 14:  # two partial weeks of a 7-day window are no trend
        gaps["weekly"] = (
            f"incremental p50/p90 by week: the window spans {days:.1f} days, {timed_weeks} week(s) with timed "
            "incremental cycles; two weeks or more are needed"
        )
    if days < 2:
        gaps["failures"] = (
            f"failures by code by day: the window spans {days:.1f} days; two days or more are needed"
        )
    return gaps


def trends_text(evidence: Evidence, gaps: dict[str, str | None]) -> str:
    """What the trend charts below cover and, for those not drawn, what is missing and how to get it."""
    window = evidence.window
    days = (window[1] - window[0]).total_seconds() / 86400 if window else 0.0
    missing = [text for text in gaps.values() if text]
    if not missing:
        return f"Trends over {days:.0f} days: every trend chart is drawn."
    if (evidence.source or "").lower() == "loganalytics":
        how = 'Widen the window (since = "90d", or start and end): the workspace keeps what its retention allows.'
    else:
        how = (
            'Widen the window (since = "90d", or start and end). Graph keeps 30 days of provisioning logs; a Log '
            "Analytics workspace fed by Entra's diagnostic settings keeps up to two years: set workspace to its id."
        )
    return "Not drawn: " + "; ".join(missing) + ". " + how
