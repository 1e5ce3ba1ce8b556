"""The service is "on" but nothing shows: which of the reasons applies.

For a job that does not appear to start, exactly one of these fires (:func:`start_state` decides which):

- ``start.not-configured``: no provisioning job, or status NotConfigured (never configured or authorised).
- ``start.disabled``: the schedule is Disabled after the job ran (after 28 days in quarantine, or by hand).
- ``start.not-started``: the job exists but its first cycle never began (NotRun and no sign of work, or a
  Disabled schedule on a job that never ran).
- ``start.paused``: paused (status or schedule Paused); nothing runs until it is started again.
- ``start.failing-every-run``: the last runs failed as a whole (``countSuccessiveCompleteFailures`` >= 2).
- ``start.initial-cycle-running`` (info): the first cycle is still running; when it should end.

A quarantined job is left to the quarantine and credentials checks. An active job that runs gets none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.facts import Facts, as_time, job_value
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding, evidence_rows
from provkit.analysis.cycles import Eta
from provkit.analysis.cycles import initial_cycle_eta as eta_from_cycles
from provkit.formatting import ago, format_time

__all__ = ["CHECKS", "InitialCycleEta", "initial_cycle_eta", "start", "start_state"]

SECTION = SECTIONS["start"]
MIN_PER_OBJECT = 0.01  # documented sizing for "sync assigned": 0.01 to 0.08 minutes per object in scope
MAX_PER_OBJECT = 0.08
FAILING_RUNS = 2
QUARANTINE_DISABLES_AFTER = pd.Timedelta(days=28)


def _same(value: Any, text: str) -> bool:
    return isinstance(value, str) and value.lower() == text.lower()


def start_state(facts: Facts) -> tuple[str, str] | None:
    """(check id, why in words) for a job that does not appear to start, or None when the job runs (or is
    quarantined, which the quarantine checks explain)."""
    job = facts.job
    ev = facts.evidence
    if job is None:
        if ev.jobs is not None and ev.job is None and ev.source in ("graph", "simulator", "demo"):
            return "start.not-configured", "the app has no provisioning job"
        return None
    code, schedule = job_value(job, "status_code"), job_value(job, "schedule_state")
    ran = (
        job_value(job, "last_execution_began") is not None
        or job_value(job, "quarantine_series_began") is not None
        or facts.logs.entries > 0
    )
    if _same(code, "NotConfigured"):
        return (
            "start.not-configured",
            "the job status is NotConfigured: provisioning was never configured and run",
        )
    if _same(schedule, "Disabled"):
        if not ran:
            return "start.not-started", "the job exists with a Disabled schedule and has never run"
        return "start.disabled", f"the job's schedule is Disabled (status {code})"
    if _same(code, "Paused") or _same(schedule, "Paused"):
        return "start.paused", f"the job is paused (status {code}, schedule {schedule})"
    if _same(code, "Quarantine"):
        return None
    failures = job_value(job, "count_successive_complete_failures") or 0
    if _same(job_value(job, "last_execution_state"), "Failed") and failures >= FAILING_RUNS:
        return "start.failing-every-run", f"the last {failures} runs failed as a whole"
    if _same(code, "NotRun"):
        if job_value(job, "progress_total") is not None or facts.logs.entries > 0:
            return "start.initial-cycle-running", "the first cycle has started and has not finished yet"
        return "start.not-started", "the job is configured (NotRun) but shows no progress and no log entries"
    return None


# ---------------------------------------------------------------------------------------------------------
# initial cycle ETA


@dataclass(frozen=True)
class InitialCycleEta:
    """When the running initial cycle should end.

    ``eta`` extrapolates the progress observations (completed units over time); ``sizing_earliest`` and
    ``sizing_latest`` apply the documented 0.01 to 0.08 minutes per object in scope to ``objects`` from the
    cycle's start. Any of them may be None when the evidence does not allow it.
    """

    started: pd.Timestamp | None
    completed: int | None
    total: int | None
    units: str | None
    observed: pd.Timestamp | None
    eta: pd.Timestamp | None
    objects: int | None
    objects_basis: str
    sizing_earliest: pd.Timestamp | None
    sizing_latest: pd.Timestamp | None

    def as_rows(self) -> list[dict[str, Any]]:
        fields = (
            ("cycle_started", self.started),
            ("progress", f"{self.completed}/{self.total} {self.units or 'units'}" if self.total else None),
            ("progress_observed", self.observed),
            ("eta_from_progress", self.eta),
            ("objects_in_scope", self.objects),
            ("objects_basis", self.objects_basis or None),
            ("sizing_earliest_end", self.sizing_earliest),
            ("sizing_latest_end", self.sizing_latest),
        )
        return [{"field": k, "value": v} for k, v in fields if v is not None]


def _observations(facts: Facts) -> list[tuple[pd.Timestamp, int, int, str | None]]:
    """(time, completed, total, units) progress observations from the raw job and the snapshots."""
    seen: dict[pd.Timestamp, tuple[pd.Timestamp, int, int, str | None]] = {}
    status = (facts.evidence.job or {}).get("status") or {}
    for p in status.get("progress") or [] if isinstance(status, dict) else []:
        if not isinstance(p, dict):
            continue
        when = as_time(p.get("progressObservationDateTime"))
        try:
            done, total = int(p["completedUnits"]), int(p["totalUnits"])
        except (KeyError, TypeError, ValueError):
            continue
        if when is not None and total > 0:
            seen[when] = (when, done, total, p.get("units"))
    jobs = facts.evidence.jobs
    if jobs is not None and not jobs.empty and "progress_time" in jobs.columns:
        for row in jobs.itertuples(index=False):
            when = as_time(row.progress_time)
            if when is None or pd.isna(row.progress_total) or pd.isna(row.progress_completed):
                continue
            if int(row.progress_total) > 0:
                units = None if pd.isna(row.progress_units) else row.progress_units
                seen.setdefault(when, (when, int(row.progress_completed), int(row.progress_total), units))
    return sorted(seen.values(), key=lambda o: o[0])


def _objects_in_scope(facts: Facts, fraction: float | None, entries: int) -> tuple[int | None, str]:
    def assigned() -> int:
        groups = [g for g in facts.evidence.groups.values() if isinstance(g, dict)]
        members = sum(len(g.get("direct") or []) for g in groups)
        users = sum(
            1 for a in facts.evidence.assignments if str(a.get("principalType", "")).lower() == "user"
        )
        return users + len(groups) + members

    if facts.sync_assigned is not False and facts.has_assignment_facts:
        if facts.sync_assigned:
            return assigned(), "assigned users + groups + group members"
        return assigned(), (
            "assigned users + groups + group members, if the scope is 'Sync only assigned' (the scope is "
            "unknown; under 'Sync all' every user and group counts)"
        )
    if fraction and entries:
        return round(entries / fraction), "log entries of the cycle so far / share of progress done"
    return None, ""


def initial_cycle_eta(facts: Facts) -> InitialCycleEta:
    """The running initial cycle's start, progress, extrapolated end and documented sizing range."""
    started = None
    entries = 0
    last_cycle = facts.logs.last_cycle
    if last_cycle is not None:
        started, entries = as_time(last_cycle.first), last_cycle.entries
    observations = _observations(facts)
    completed = total = None
    units = observed = eta = None
    fraction = None
    if observations:
        observed, completed, total, units = observations[-1]
        fraction = completed / total if total else None
        same = [o for o in observations if o[2] == total]
        # Completed units count whole pages; the page in progress is on average half done.
        points = [(o[0], o[1] + 0.5 if o[1] < o[2] else o[1]) for o in same]
        if started is not None and len(points) == 1 and started < points[0][0]:
            points.insert(0, (started, 0))  # one observation: the rate since the cycle began
        first, last = points[0], points[-1]
        span = (last[0] - first[0]).total_seconds()
        if span > 0 and last[1] > first[1]:
            rate = (last[1] - first[1]) / span  # units per second
            eta = last[0] + pd.Timedelta(seconds=(total - last[1]) / rate)
    objects, basis = _objects_in_scope(facts, fraction, entries)
    earliest = latest = None
    if objects and started is not None:
        earliest = started + pd.Timedelta(minutes=MIN_PER_OBJECT * objects)
        latest = started + pd.Timedelta(minutes=MAX_PER_OBJECT * objects)
    return InitialCycleEta(started, completed, total, units, observed, eta, objects, basis, earliest, latest)


def _cycles_eta(facts: Facts) -> tuple[Eta | None, str | None]:
    """The ETA of :func:`provkit.analysis.cycles.initial_cycle_eta` (None when it has none), and why it is missing."""
    try:
        return eta_from_cycles(facts.evidence), None
    except Exception as exc:  # noqa: BLE001 - the ETA is a nicety: fall back to the simple estimate, and say so
        return None, f"cycle-based ETA unavailable ({type(exc).__name__}); simple estimate used"


def _eta_words(facts: Facts) -> tuple[list[str], list[dict[str, Any]]]:
    """Title parts and evidence rows for the running initial cycle: the cycles module's ETA (a likely end and
    a range from the progress observations, plus the documented sizing) when it has one, else
    :func:`initial_cycle_eta`. A row ``expected_end`` always carries the best single estimate."""
    now = facts.now
    parts = ["The initial cycle is still running"]
    eta, problem = _cycles_eta(facts)
    if eta is not None:
        start = getattr(eta, "cycle_start", None)
        if start is not None:
            parts.append(f"started {format_time(start)} ({ago(start, now)})")
        if getattr(eta, "total", None):
            parts.append(f"{eta.completed}/{eta.total} {eta.units or 'units'} done")
        if eta.likely is not None:
            text = f"expected to end around {format_time(eta.likely)} ({ago(eta.likely, now)})"
            if eta.earliest is not None and eta.latest is not None:
                text += f", between {format_time(eta.earliest)} and {format_time(eta.latest)}"
            parts.append(text)
        scope = eta.objects_in_scope
        if eta.sizing_earliest is not None and eta.sizing_latest is not None and scope:
            objects = f"{scope[0]:,}" if scope[0] == scope[1] else f"{scope[0]:,}-{scope[1]:,}"
            parts.append(
                f"documented sizing for {objects} objects: {format_time(eta.sizing_earliest)} to "
                f"{format_time(eta.sizing_latest)}"
            )
        data = eta.as_dict() if hasattr(eta, "as_dict") else dict(eta.__dict__)
        rows = [{"field": "expected_end", "value": eta.likely}]
        rows += [{"field": k, "value": v} for k, v in data.items() if v not in (None, "", [])]
        return parts, rows
    simple = initial_cycle_eta(facts)
    if simple.started is not None:
        parts.append(f"started {format_time(simple.started)} ({ago(simple.started, now)})")
    if simple.total:
        parts.append(f"{simple.completed}/{simple.total} {simple.units or 'units'} done")
    if simple.eta is not None:
        parts.append(f"expected to end around {format_time(simple.eta)} ({ago(simple.eta, now)})")
    if simple.sizing_earliest is not None and simple.sizing_latest is not None:
        parts.append(
            f"documented sizing for {simple.objects:,} objects: {format_time(simple.sizing_earliest)} to "
            f"{format_time(simple.sizing_latest)}"
        )
    rows = [{"field": "expected_end", "value": simple.eta}, *simple.as_rows()]
    if problem:
        rows.append({"field": "note", "value": problem})
    return parts, rows


# ---------------------------------------------------------------------------------------------------------
# findings


def _status_rows(job: pd.Series | None, names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"field": n, "value": job_value(job, n)} for n in names if job_value(job, n) is not None]


def _audit(facts: Facts, *words: str) -> dict[str, Any] | None:
    """The latest directory audit whose activity mentions all ``words`` (case-insensitive)."""
    found = None
    for a in facts.evidence.audits:
        activity = str(a.get("activityDisplayName", "")).lower()
        if all(w in activity for w in words):
            if found is None or str(a.get("activityDateTime", "")) > str(found.get("activityDateTime", "")):
                found = a
    return found


def _finding(
    check: str, severity: str, title: str, rows: list[dict[str, Any]], why: str, remedy: str, links: list[str]
) -> Finding:
    listed, omitted = evidence_rows(rows)
    return Finding(check, SECTION, severity, title, listed, why, remedy, links, omitted=omitted)


def start(facts: Facts) -> list[Finding]:
    """The one ``start.*`` finding that applies, if any."""
    state = start_state(facts)
    if state is None:
        return []
    check, reason = state
    job = facts.job
    now = facts.now
    links = [LINKS["config-problem"], LINKS["how-it-works"]]
    basic = (
        "status_code",
        "schedule_state",
        "schedule_interval",
        "last_execution_state",
        "last_execution_ended",
    )
    if check == "start.not-configured":
        return [
            _finding(
                check,
                "warning",
                f"Provisioning is not configured: {reason}",
                _status_rows(job, basic),
                "Without a configured and started job the service never evaluates anyone: no logs, no accounts.",
                "On the app's Provisioning page set the mode to Automatic, enter the admin credentials, Test "
                "Connection, save, map attributes and set the provisioning status to On.",
                links,
            )
        ]
    if check == "start.not-started":
        return [
            _finding(
                check,
                "warning",
                f"The job has not started its first cycle: {reason}",
                _status_rows(job, basic),
                "A configured job starts its first (initial) cycle shortly after it is turned on; nothing has "
                "been evaluated yet.",
                "Check that the provisioning status is On and save; or start the job (POST .../jobs/{id}/start). "
                "Then look for log entries within about 40 minutes.",
                links,
            )
        ]
    if check == "start.paused":
        audit = _audit(facts, "pause")
        rows = _status_rows(job, basic)
        when = ""
        if audit:
            rows.append({"field": "paused_at", "value": audit.get("activityDateTime")})
            who = ((audit.get("initiatedBy") or {}).get("user") or {}).get("userPrincipalName")
            if who:
                rows.append({"field": "paused_by", "value": who})
            when = f" since {format_time(audit.get('activityDateTime'))} ({ago(audit.get('activityDateTime'), now)})"
        return [
            _finding(
                check,
                "warning",
                f"Provisioning is paused{when}: no cycle runs until it is started again",
                rows,
                "While paused no changes reach the app; they are picked up when the job resumes. The cycle that "
                "was running when it was paused ran to completion.",
                "Start provisioning again (admin centre: Start provisioning; Graph: POST .../jobs/{id}/start). "
                "It resumes where it stopped, with its state intact.",
                links,
            )
        ]
    if check == "start.disabled":
        rows = _status_rows(
            job,
            basic
            + (
                "last_execution_error_code",
                "quarantine_reason",
                "quarantine_series_began",
                "quarantine_error_code",
                "count_successive_complete_failures",
            ),
        )
        series = as_time(job_value(job, "quarantine_series_began"))
        code = job_value(job, "quarantine_error_code") or job_value(job, "last_execution_error_code")
        audit = _audit(facts, "disable")
        detail = ""
        if series is not None:
            disabled_at = series + QUARANTINE_DISABLES_AFTER
            if audit:
                disabled_at = as_time(audit.get("activityDateTime")) or disabled_at
            rows.append({"field": "disabled_at", "value": disabled_at})
            days = (disabled_at - series).total_seconds() / 86400
            detail = (
                f" on {format_time(disabled_at)}, after {days:.0f} days in quarantine"
                f" ({job_value(job, 'quarantine_reason') or 'reason unknown'})"
            )
        title = f"The job is disabled{detail}"
        if code:
            title += f"; last error {code}"
        entry = lookup(code) if code else None
        remedy = "Fix the cause first"
        remedy += f" ({entry.fix})" if entry is not None else ""
        remedy += (
            ", then start the job again (admin centre: Start provisioning; Graph: POST .../jobs/{id}/start). "
            "Escrowed failures were dropped when it was disabled; restart it (clearing the watermark) if "
            "changes made while it was off must be re-evaluated."
        )
        return [
            _finding(
                check,
                "error",
                title,
                rows,
                "A disabled job runs no cycles at all; after more than four weeks in quarantine the service "
                "disables the job by itself.",
                remedy,
                [LINKS["quarantine"], *links],
            )
        ]
    if check == "start.failing-every-run":
        code = job_value(job, "last_execution_error_code")
        entry = lookup(code, job_value(job, "last_execution_error_message")) if code else None
        failures = job_value(job, "count_successive_complete_failures")
        title = f"The last {failures} runs failed as a whole"
        if code:
            title += f" with {entry.label if entry else code}"
        rows = _status_rows(
            job,
            basic
            + (
                "count_successive_complete_failures",
                "last_execution_error_code",
                "last_execution_error_message",
                "last_successful_ended",
            ),
        )
        return [
            _finding(
                check,
                "error",
                title,
                rows,
                "A run that fails as a whole processes nobody; if it goes on the service quarantines the job. "
                + (entry.meaning if entry else ""),
                (entry.fix if entry else "Read the last execution's error.")
                + " Then start the job, or wait for the next cycle.",
                [LINKS["quarantine"], *links],
            )
        ]
    # start.initial-cycle-running
    parts, eta_rows = _eta_words(facts)
    rows = _status_rows(job, ("status_code", "schedule_state")) + eta_rows
    return [
        _finding(
            check,
            "info",
            "; ".join(parts),
            rows,
            "Until the initial cycle ends, objects are processed one page at a time and the status stays "
            "NotRun; users later in the order are not provisioned yet. Incremental cycles (every 20-40 minutes) "
            "follow.",
            "Wait for the cycle to end. To provision a specific user now, use provision on demand. The progress "
            "bar counts pages, not users.",
            [LINKS["when-finish"], *links, LINKS["on-demand"]],
        )
    ]


CHECKS = (start,)
