"""synchronizationJob dicts to the jobs table, one row per job per status snapshot."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from provkit.data.tables.convert import _EMPTY, _as_dict, _encode, _frame
from provkit.data.tables.schema import _COUNTERS, _JOB_ENUMS, JOB_COLUMNS
from provkit.data.tables.times import _NS_MIN, parse_graph_time

# ---------------------------------------------------------------------------------------------------------
# Synchronization jobs

_KNOWN_JOB_FIELDS = frozenset({"id", "templateId", "schedule", "status", "synchronizationJobSettings"})
_KNOWN_STATUS_FIELDS = frozenset(
    {
        "code",
        "countSuccessiveCompleteFailures",
        "escrowsPruned",
        "steadyStateFirstAchievedTime",
        "steadyStateLastAchievedTime",
        "troubleshootingUrl",
        "synchronizedEntryCountByType",
        "progress",
        "lastExecution",
        "lastSuccessfulExecution",
        "lastSuccessfulExecutionWithExports",
        "quarantine",
    }
)


def _never(value: object) -> bool:
    """A time that says "never": missing, empty, or .NET's DateTime.MinValue (0001-01-01)."""
    return value in (None, "") or (isinstance(value, str) and value.startswith("0001-01-01"))


def _execution(row: dict[str, Any], prefix: str, execution: object, *, full: bool) -> None:
    run = _as_dict(execution)
    # The documented job "just after start": a lastExecution that has not happened yet (state Failed, both
    # times 0001-01-01, activityIdentifier null, error code "None"). It is no run: no state, no error.
    not_run = _never(run.get("timeBegan")) and _never(run.get("timeEnded"))
    row[f"{prefix}_id"] = run.get("activityIdentifier") or None
    row[f"{prefix}_state"] = None if not_run else run.get("state")
    row[f"{prefix}_began"] = run.get("timeBegan")
    row[f"{prefix}_ended"] = run.get("timeEnded")
    if full:
        error = _as_dict(run.get("error"))
        code = error.get("code")
        # error.code "None" with an empty message is the documented "no error"
        no_error = not_run or (isinstance(code, str) and code.strip().lower() in ("", "none"))
        row[f"{prefix}_error_code"] = None if no_error else code
        row[f"{prefix}_error_message"] = None if no_error else (error.get("message") or None)
        for key, suffix in _COUNTERS.items():
            row[f"{prefix}_{suffix}"] = run.get(key)


def _latest_progress(progress: object) -> dict[str, Any]:
    observations = [p for p in (progress if isinstance(progress, list) else []) if isinstance(p, dict)]
    if not observations:
        return _EMPTY

    def observed(p: dict[str, Any]) -> pd.Timestamp:
        ts = parse_graph_time(p.get("progressObservationDateTime"))
        return _NS_MIN if ts is pd.NaT else ts

    return max(observations, key=observed)


def _entry_total(counts: object) -> int:
    total = 0
    for item in counts if isinstance(counts, list) else []:
        value = item.get("value") if isinstance(item, dict) else None
        try:
            total += int(value) if value is not None else 0
        except (TypeError, ValueError):
            continue
    return total


def _job_row(job: dict[str, Any]) -> dict[str, Any]:
    schedule = _as_dict(job.get("schedule"))
    status = _as_dict(job.get("status"))
    quarantine = _as_dict(status.get("quarantine"))
    quarantine_error = _as_dict(quarantine.get("error"))
    progress = _latest_progress(status.get("progress"))
    settings = job.get("synchronizationJobSettings")
    # Unknown fields in the order sent (a set difference would order them differently in every process).
    extra = {k: v for k, v in job.items() if k not in _KNOWN_JOB_FIELDS}
    extra |= {f"status.{k}": v for k, v in status.items() if k not in _KNOWN_STATUS_FIELDS}
    row: dict[str, Any] = {
        "job_id": job.get("id"),
        "template_id": job.get("templateId"),
        "status_code": status.get("code"),
        "schedule_state": schedule.get("state"),
        "schedule_interval": schedule.get("interval"),
        "schedule_expiration": schedule.get("expiration"),
        "count_successive_complete_failures": status.get("countSuccessiveCompleteFailures"),
        "escrows_pruned": status.get("escrowsPruned"),
        "steady_state_first": status.get("steadyStateFirstAchievedTime"),
        "steady_state_last": status.get("steadyStateLastAchievedTime"),
        "quarantine_reason": quarantine.get("reason") or None,
        # "" for a date is documented in quarantine examples: no date
        "quarantine_current_began": quarantine.get("currentBegan") or None,
        "quarantine_next_attempt": quarantine.get("nextAttempt") or None,
        "quarantine_series_began": quarantine.get("seriesBegan") or None,
        "quarantine_series_count": quarantine.get("seriesCount"),
        "quarantine_error_code": None
        if str(quarantine_error.get("code") or "").strip().lower() in ("", "none")
        else quarantine_error.get("code"),
        "quarantine_error_message": quarantine_error.get("message") or None,
        "quarantine_tenant_actionable": quarantine_error.get("tenantActionable"),
        "progress_completed": progress.get("completedUnits"),
        "progress_total": progress.get("totalUnits"),
        "progress_time": progress.get("progressObservationDateTime"),
        "progress_units": progress.get("units"),
        "synchronized_entries": _entry_total(status.get("synchronizedEntryCountByType")),
        "settings": None if settings is None else _encode(settings),
        "troubleshooting_url": status.get("troubleshootingUrl") or None,  # "" and null both mean none
        "extra": _encode(extra) if extra else "",
    }
    _execution(row, "last_execution", status.get("lastExecution"), full=True)
    _execution(row, "last_successful", status.get("lastSuccessfulExecution"), full=False)
    _execution(
        row, "last_successful_with_exports", status.get("lastSuccessfulExecutionWithExports"), full=False
    )
    return row


def jobs_from_records(
    jobs: Iterable[object],
    *,
    snapshot_time: datetime,
    service_principal_id: str,
    service_principal_name: str | None = None,
) -> pd.DataFrame:
    """One row per synchronizationJob dict, stamped with the snapshot time and its service principal.

    ``snapshot_time`` should be timezone-aware (a naive value is taken as UTC). Jobs that are not objects
    or have no ``id`` are left out and listed in ``frame.attrs["rejects"]`` as (position, reason).
    """
    snapshot = parse_graph_time(snapshot_time)
    data: dict[str, list[Any]] = {name: [] for name in JOB_COLUMNS}
    rejects: list[tuple[int, str]] = []
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            rejects.append((index, f"not a JSON object (got {type(job).__name__})"))
            continue
        if not job.get("id"):
            rejects.append((index, "missing id"))
            continue
        row = _job_row(job)
        row["snapshot_time"] = snapshot
        row["service_principal_id"] = service_principal_id
        row["service_principal_name"] = service_principal_name
        for name, values in data.items():
            values.append(row[name])
    frame = _frame(data, JOB_COLUMNS, _JOB_ENUMS)
    frame.attrs["rejects"] = rejects
    return frame
