"""Quarantine: is the job in it, how close the failures are to the escrow thresholds, and deletions held back.

Checks:
- ``quarantine.escrow-risk``: the latest cycle's failures against the documented thresholds (reference 3.4):
  5,000 failures before quarantine is evaluated at all; then more than 40 % of the events, or more than
  40,000 failures; 60,000 failures in absolute terms (reference failures included). Error when reached,
  warning when approaching (:func:`escrow_verdict`).
- ``quarantine.active`` (error): the job is quarantined: reason, series, next attempt, and when the service
  disables it (series began + 28 days).
- ``quarantine.too-many-deletes``: quarantined for TooManyDeletes (error), deletions staged in the logs
  (StagedDelete, warning), or a cycle that came within 80 % of the deletion threshold (warning).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.facts import QUARANTINE_FIELDS, Facts, as_time, job_value
from provkit.analysis.checks.finding import LINKS, SECTIONS, Finding, evidence_rows
from provkit.analysis.columns import is_in, rows_where
from provkit.formatting import ago, format_time

__all__ = ["CHECKS", "EscrowVerdict", "escrow_verdict", "quarantine_checks"]

SECTION = SECTIONS["quarantine"]
ESCROW_MINIMUM = 5_000
ESCROW_PROPORTION = 0.40
ESCROW_TOTAL = 40_000
ESCROW_ABSOLUTE = 60_000
DISABLED_AFTER = pd.Timedelta(days=28)
DELETE_WARNING_SHARE = 0.8


@dataclass(frozen=True)
class EscrowVerdict:
    """How a cycle's failures compare with the escrow thresholds.

    ``level`` is "reached" (the service would quarantine), "approaching" or "clear"; ``rule`` says which
    threshold decided it, in words.
    """

    failures: int
    total: int
    raw_failures: int
    level: str
    rule: str

    @property
    def share(self) -> float:
        return self.failures / self.total if self.total else 0.0


def escrow_verdict(failures: int, total: int, raw_failures: int | None = None) -> EscrowVerdict:
    """The documented quarantine rule for one cycle's escrowed failures.

    ``failures`` excludes reference failures (manager, group member); ``raw_failures`` includes them (for the
    60,000 absolute cap; defaults to ``failures``); ``total`` is the number of events in the cycle.
    """
    raw = max(raw_failures if raw_failures is not None else failures, failures)
    total = max(total, failures)
    share = failures / total if total else 0.0
    if raw > ESCROW_ABSOLUTE:
        return EscrowVerdict(
            failures, total, raw, "reached", f"more than {ESCROW_ABSOLUTE:,} failures in all"
        )
    if failures >= ESCROW_MINIMUM:
        if failures > ESCROW_TOTAL:
            return EscrowVerdict(failures, total, raw, "reached", f"more than {ESCROW_TOTAL:,} failures")
        if share > ESCROW_PROPORTION:
            return EscrowVerdict(
                failures,
                total,
                raw,
                "reached",
                f"over {ESCROW_PROPORTION:.0%} of events failed, with at least {ESCROW_MINIMUM:,} failures",
            )
        if share > 0.75 * ESCROW_PROPORTION or failures > 0.75 * ESCROW_TOTAL:
            return EscrowVerdict(failures, total, raw, "approaching", "close to the 40% or 40,000 threshold")
    elif failures >= ESCROW_MINIMUM // 2 and share > ESCROW_PROPORTION:
        return EscrowVerdict(
            failures,
            total,
            raw,
            "approaching",
            f"over {ESCROW_PROPORTION:.0%} of events failed; quarantine is evaluated from {ESCROW_MINIMUM:,} failures",
        )
    if raw > 0.75 * ESCROW_ABSOLUTE:
        return EscrowVerdict(
            failures, total, raw, "approaching", f"close to the {ESCROW_ABSOLUTE:,} absolute cap"
        )
    return EscrowVerdict(failures, total, raw, "clear", "under the thresholds")


def _latest_cycle_counts(facts: Facts) -> tuple[int, int, int, str, dict[str, Any]] | None:
    """(failures, total, raw failures, basis, rows) for the latest cycle: from the job status's last
    execution, else from the logs' latest cycle."""
    job = facts.job
    escrowed = job_value(job, "last_execution_count_escrowed")
    if escrowed is not None:
        raw = job_value(job, "last_execution_count_escrowed_raw") or escrowed
        total = max(
            int(job_value(job, "last_execution_count_imported") or 0),
            int(job_value(job, "last_execution_count_exports") or 0),
            int(escrowed),
        )
        basis = f"job status, last execution {job_value(job, 'last_execution_id') or ''}".strip()
        row = {
            "basis": basis,
            "cycle_began": job_value(job, "last_execution_began"),
            "cycle_ended": job_value(job, "last_execution_ended"),
        }
        return int(escrowed), total, int(raw), basis, row
    cycle = facts.logs.last_cycle
    if cycle is None:
        return None
    row = {"basis": f"logs, cycle {cycle.cycle_id}", "cycle_began": cycle.first, "cycle_ended": cycle.last}
    return cycle.failures, cycle.entries, cycle.failures, row["basis"], row


def _escrow_risk(facts: Facts) -> Finding | None:
    counts = _latest_cycle_counts(facts)
    if counts is None:
        return None
    failures, total, raw, _basis, row = counts
    verdict = escrow_verdict(failures, total, raw)
    if verdict.level == "clear":
        return None
    title = (
        f"The latest cycle's {verdict.failures:,} failures of {verdict.total:,} events ({verdict.share:.0%}) "
        + ("reach the escrow threshold" if verdict.level == "reached" else "approach the escrow threshold")
        + f": {verdict.rule}"
    )
    rows = [
        {
            **row,
            "failures": verdict.failures,
            "failures_raw": verdict.raw_failures,
            "events": verdict.total,
            "share": round(verdict.share, 4),
            "level": verdict.level,
            "rule": verdict.rule,
        },
    ]
    if job_value(facts.job, "escrows_pruned"):
        rows.append({"basis": "job status", "escrows_pruned": True})
    listed, omitted = evidence_rows(rows)
    return Finding(
        check="quarantine.escrow-risk",
        section=SECTION,
        severity="error" if verdict.level == "reached" else "warning",
        title=title,
        evidence=listed,
        omitted=omitted,
        count=verdict.failures,
        why="From 5,000 failures on, the service quarantines a job when over 40% of events fail or over "
        "40,000 fail (reference failures not counted), and always past 60,000. A quarantined job runs at "
        "most once a day.",
        remedy="Fix the most common failure first (see failures.by-code), then restart the job so the escrowed "
        "failures are retried at once.",
        links=[LINKS["quarantine"], LINKS["analyze-logs"]],
    )


def _quarantine_rows(facts: Facts, disabled_at: pd.Timestamp | None) -> list[dict[str, Any]]:
    names = QUARANTINE_FIELDS
    rows = [
        {"field": n, "value": job_value(facts.job, n)} for n in names if job_value(facts.job, n) is not None
    ]
    if disabled_at is not None:
        rows.append({"field": "disabled_if_not_fixed_by", "value": disabled_at})
    for audit in sorted(facts.evidence.audits, key=lambda a: str(a.get("activityDateTime", ""))):
        if "quarantine" in str(audit.get("activityDisplayName", "")).lower():
            rows.append(
                {
                    "field": "audit_quarantine",
                    "value": audit.get("activityDateTime"),
                    "reason": audit.get("resultReason"),
                }
            )
    return rows


def _active(facts: Facts) -> Finding | None:
    job = facts.job
    if str(job_value(job, "status_code") or "").lower() != "quarantine":
        return None
    now = facts.now
    reason = job_value(job, "quarantine_reason") or "Unknown"
    series = as_time(job_value(job, "quarantine_series_began"))
    next_attempt = job_value(job, "quarantine_next_attempt")
    count = job_value(job, "quarantine_series_count")
    disabled_at = series + DISABLED_AFTER if series is not None else None
    parts = [f"Quarantined ({reason})"]
    if series is not None:
        parts.append(f"since {format_time(series)} ({ago(series, now).replace(' ago', '')})")
    if count is not None:
        parts.append(f"evaluated {count} time{'s' if count != 1 else ''} in this series")
    if next_attempt is not None:
        parts.append(f"next attempt {format_time(next_attempt)} ({ago(next_attempt, now)})")
    if disabled_at is not None:
        left = (disabled_at - now).total_seconds() / 86400
        parts.append(
            f"the job is disabled on {format_time(disabled_at)} if not fixed ({max(left, 0):.1f} days left)"
        )
    entry = lookup(reason)
    error_code = job_value(job, "quarantine_error_code")
    error = lookup(error_code, job_value(job, "quarantine_error_message")) if error_code else None
    remedy = entry.fix
    if error is not None and error.base and error.base != entry.base:
        remedy += f" The quarantine error {error.label}: {error.fix}"
    remedy += (
        " Once fixed, start the job (POST .../start clears quarantine) or Restart provisioning (Graph: restart with "
        "resetScope 'QuarantineState, Escrows, Watermark'); a successful retry also lifts quarantine. Quarantine "
        "emails go once to the Notification Email address."
    )
    listed, omitted = evidence_rows(_quarantine_rows(facts, disabled_at))
    return Finding(
        check="quarantine.active",
        section=SECTION,
        severity="error",
        title="; ".join(parts),
        evidence=listed,
        omitted=omitted,
        why=f"{entry.meaning} A quarantined job is retried 6, 12 and 24 hours after the first failure, then once a "
        "day; after four weeks the service disables it.",
        remedy=remedy,
        links=[LINKS["quarantine"], LINKS["how-it-works"]],
    )


def _delete_threshold(facts: Facts) -> int | None:
    settings: Any = None
    if facts.evidence.job:
        settings = facts.evidence.job.get("synchronizationJobSettings")
    if settings is None and job_value(facts.job, "settings"):
        try:
            settings = json.loads(job_value(facts.job, "settings"))
        except ValueError:
            settings = None
    for item in settings or []:
        if (
            isinstance(item, dict)
            and str(item.get("name", "")).lower() == "quarantinetoomanydeletesthreshold"
        ):
            try:
                return int(item["value"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _too_many_deletes(facts: Facts) -> Finding | None:
    job = facts.job
    quarantined = (
        str(job_value(job, "quarantine_reason") or "").lower() == "toomanydeletes"
        and str(job_value(job, "status_code") or "").lower() == "quarantine"
    )
    threshold = _delete_threshold(facts)
    events = facts.events
    staged = rows_where(events, is_in(events, "action", ("stageddelete",))) if not events.empty else events
    peak = None
    if not events.empty and threshold:
        deletes = events[["cycle_id"]][is_in(events, "action", ("delete", "disable", "stageddelete"))]
        if not deletes.empty:
            per_cycle = deletes.groupby("cycle_id", observed=True).size()
            peak = (str(per_cycle.idxmax()), int(per_cycle.max()))
    near = peak is not None and threshold and peak[1] >= DELETE_WARNING_SHARE * threshold
    if not (quarantined or len(staged) or near):
        return None
    parts = []
    if quarantined:
        parts.append("Quarantined for too many deletes")
    if len(staged):
        parts.append(f"{len(staged):,} deletions staged (StagedDelete) and waiting for approval")
    if near and peak is not None:
        parts.append(f"a cycle deleted or disabled {peak[1]:,} objects against a threshold of {threshold:,}")
    rows: list[dict[str, Any]] = [{"field": "deletion_threshold", "value": threshold}]
    if peak is not None:
        rows.append({"field": "max_deletes_in_a_cycle", "value": peak[1], "cycle_id": peak[0]})
    for e in staged.sort_values("activity_time", ascending=False).itertuples(index=False):
        rows.append(
            {
                "time": e.activity_time,
                "object": e.reportable_identifier
                if isinstance(e.reportable_identifier, str)
                else e.source_name,
                "action": "stageddelete",
                "change_id": e.change_id,
            }
        )
    listed, omitted = evidence_rows(rows)
    return Finding(
        check="quarantine.too-many-deletes",
        section=SECTION,
        severity="error" if quarantined else "warning",
        title="; ".join(parts),
        evidence=listed,
        omitted=omitted,
        count=len(staged),
        why="The accidental-deletion threshold is evaluated per cycle; past it the job is quarantined and the "
        "deletions (and disables) wait for an admin.",
        remedy=lookup("TooManyDeletes").fix,
        links=[LINKS["accidental-deletions"], LINKS["quarantine"]],
    )


def quarantine_checks(facts: Facts) -> list[Finding]:
    """All ``quarantine.*`` findings."""
    return [f for f in (_escrow_risk(facts), _active(facts), _too_many_deletes(facts)) if f is not None]


CHECKS = (quarantine_checks,)
