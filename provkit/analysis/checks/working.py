"""Is provisioning working at all? The job's status in one line, and the failing objects grouped by error code.

Checks:
- ``working.summary`` (info): status code, last execution state and age, steady state, counts, recent
  failure rate.
- ``failures.by-code``: one finding per error code that objects are failing with now (their latest entry is
  a failure), with the catalog's meaning and fix. Severity follows the share of attempted objects failing
  (10 % or more, or 5,000 objects: error; otherwise warning; a code the service retries by itself and that
  affects under 10 %: info). The objects per code are counted over every object
  (:attr:`provkit.data.logsummary.LogSummary.failing_by_code`); the finding lists the newest
  :data:`~provkit.analysis.checks.finding.EVIDENCE_ROWS` and reads the catalog with the newest one's reason,
  so a source that sends only those (Log Analytics) gives the same finding.
"""

from __future__ import annotations

import pandas as pd

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.facts import Facts, job_value
from provkit.analysis.checks.finding import EVIDENCE_ROWS, LINKS, SECTIONS, Finding, evidence_rows
from provkit.data.logsummary import RECENT as LOGS_RECENT
from provkit.formatting import ago

__all__ = ["CHECKS", "failures_by_code", "summary"]

SECTION = SECTIONS["working"]
ERROR_SHARE = 0.10
ERROR_OBJECTS = 5_000
RECENT = LOGS_RECENT  # the span of the failure rate (counted in the evidence's log summary)


def summary(facts: Facts) -> list[Finding]:
    """``working.summary``: always one info finding describing the job and the logs."""
    job = facts.job
    now = facts.now
    rows: list[dict[str, object]] = []
    parts: list[str] = []
    if job is None:
        parts.append("No job status in the evidence")
    else:
        code, schedule = job_value(job, "status_code"), job_value(job, "schedule_state")
        parts.append(f"Job {code or 'unknown'} (schedule {schedule or 'unknown'})")
        state, began = job_value(job, "last_execution_state"), job_value(job, "last_execution_began")
        ended = job_value(job, "last_execution_ended")
        if state is not None:
            parts.append(f"last run {state} {ago(ended or began, now)}".rstrip())
        else:
            parts.append("no completed run yet")
        for name in (
            "status_code",
            "schedule_state",
            "schedule_interval",
            "last_execution_state",
            "last_execution_began",
            "last_execution_ended",
            "last_execution_error_code",
            "last_execution_count_imported",
            "last_execution_count_exported",
            "last_execution_count_escrowed",
            "last_successful_ended",
            "count_successive_complete_failures",
            "steady_state_first",
            "steady_state_last",
            "synchronized_entries",
            "quarantine_reason",
        ):
            value = job_value(job, name)
            if value is not None:
                rows.append({"field": name, "value": value})
        steady = job_value(job, "steady_state_last")
        rows.append(
            {"field": "steady_state_age", "value": ago(steady, now) if steady is not None else "never"}
        )
    logs = facts.logs
    if not logs.entries or logs.first is None or logs.last is None:
        parts.append("no log entries in the evidence")
    else:
        first, last = logs.first, logs.last
        hours = (last - first).total_seconds() / 3600
        span = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"
        parts.append(f"{logs.entries:,} log entries over {span}")
        # Most entries first; a tie in the order of the status names.
        for status, n in sorted(logs.by_status.items(), key=lambda item: (-item[1], item[0])):
            rows.append({"field": f"entries_{status}", "value": n})
        if logs.recent:
            rate = logs.recent_by_status.get("failure", 0) / logs.recent
            parts.append(f"{rate:.1%} of the last 24 h's {logs.recent:,} entries failed")
            rows.append({"field": "failure_rate_24h", "value": round(rate, 4)})
        else:
            parts.append("no entries in the last 24 h")
        rows.append({"field": "latest_entry", "value": last})
    listed, omitted = evidence_rows(rows)
    return [
        Finding(
            check="working.summary",
            section=SECTION,
            severity="info",
            title="; ".join(parts),
            evidence=listed,
            omitted=omitted,
            why="The job status and the logs together say whether the service runs, when it last ran and how "
            "many objects fail.",
            remedy="Read the other findings for anything that needs action. Steady state means the last cycle "
            "had nothing left to do.",
            links=[LINKS["config-problem"], LINKS["check-status"]],
        )
    ]


def _object_rows(frame: pd.DataFrame) -> pd.DataFrame:
    name = frame["reportable_identifier"].fillna(frame["source_name"])
    reason = frame["error_reason"].fillna("").astype(str).str.slice(0, 240)
    return pd.DataFrame(
        {
            "object_id": frame["source_id"].to_numpy(),
            "name": name.to_numpy(),
            "type": frame["source_type"].to_numpy(),
            "action": frame["action"].astype(object).to_numpy(),
            "time": frame["activity_time"].to_numpy(),
            "error_code": frame["error_code"].to_numpy(),
            "reason": reason.to_numpy(),
            "change_id": frame["change_id"].to_numpy(),
        }
    ).sort_values(["time", "object_id"], ascending=[False, True], kind="stable")


_SEE_ALSO = {
    "mandatoryfieldsmissing": "skipped.required-attribute-missing names the attribute and the users.",
    "missingvalues": "skipped.required-attribute-missing names the attribute and the users.",
    "importskipped": "skipped.matching-attribute-empty names the attribute and the objects.",
    "badrequest": "failures.scim-incompatible says what a SCIM endpoint refused and what to do for this job.",
    "unabletoresolvereferenceattributevalue": "references.unresolved splits managers from group members and "
    "says which referenced objects came into scope later.",
}


def _newest_reason(group: pd.DataFrame) -> str | None:
    """The reason the catalog lookup reads for a code: the newest failing object's (among objects failing at
    that same newest time, the greatest reason text); None when none of them gives one. The newest failing
    objects of each code always travel (with every object at the same instant), so every source gives the
    same one."""
    newest = group[group["activity_time"] == group["activity_time"].max()]
    reasons = newest["error_reason"].dropna().astype(str)
    reasons = reasons[reasons != ""]
    return str(reasons.max()) if len(reasons) else None


def failures_by_code(facts: Facts) -> list[Finding]:
    """``failures.by-code``: objects whose latest entry failed, one finding per error code."""
    latest = facts.latest
    if latest.empty:
        return []
    failing = latest[latest["status"] == "failure"]
    if failing.empty:
        return []
    # Objects the service tried to bring in line: exported, failed, or already matching (RedundantExport),
    # counted over every object's latest entry (the log summary's: the evidence may hold only the objects a
    # finding is about).
    logs = facts.logs
    attempted = (
        logs.objects_by_status.get("success", 0)
        + logs.objects_by_status.get("failure", 0)
        + logs.objects_by_skip_reason.get("redundantexport", 0)
    ) or (logs.objects or len(latest))
    entry_counts = facts.logs.failures_by_code
    # The failing objects per code, counted over every object's latest entry (the log summary's: a pushed-down
    # evidence holds only each code's newest failing objects, and whole those a check judges one by one).
    counted = logs.failing_by_code
    findings = []
    for code, group in failing.groupby(failing["error_code"].fillna(""), sort=True):
        entry = lookup(code or None, _newest_reason(group))
        objects = int(counted.get(code, 0)) or group["source_id"].nunique()
        share = objects / attempted
        if share >= ERROR_SHARE or objects >= ERROR_OBJECTS:
            severity = "error"
        elif entry.retried:
            severity = "info"
        else:
            severity = "warning"
        label = entry.label if code else "(no error code)"
        failed_entries = int(entry_counts.get(code, 0))
        title = (
            f"{label}: {objects:,} object{'s' if objects != 1 else ''} failing now ({share:.1%} of "
            f"{attempted:,} attempted), {failed_entries:,} failed entries in the logs"
        )
        newest = group.loc[group["activity_time"].nlargest(EVIDENCE_ROWS, keep="first").index]
        listed, _ = evidence_rows(_object_rows(newest))
        omitted = max(objects - len(listed), 0)
        why = entry.meaning
        if entry.retried:
            why += " The service retries it by itself."
        else:
            why += (
                " The service retries failed objects (escrows) each cycle, but they keep failing until the "
                "cause is fixed; enough of them quarantine the job."
            )
        remedy = entry.fix
        if entry.base and entry.base.lower() in _SEE_ALSO:
            remedy += " " + _SEE_ALSO[entry.base.lower()]
        elif entry.kind in ("credentials", "scim"):
            remedy += " See credentials.target-rejected."
        links = list(dict.fromkeys([entry.link, LINKS["analyze-logs"]]))
        findings.append(
            Finding(
                check="failures.by-code",
                section=SECTION,
                severity=severity,
                title=title,
                evidence=listed,
                omitted=omitted,
                count=objects,
                why=why,
                remedy=remedy,
                links=links,
            )
        )
    return findings


CHECKS = (summary, failures_by_code)
