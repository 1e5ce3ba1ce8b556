"""Credentials not working: quarantined for credentials, the target refusing them, and (on request) a live
validation of the saved credentials.

Checks:
- ``credentials.quarantined`` (error): the job is in quarantine because of credentials or the connection
  (reason EncounteredQuarantineException, or a credential or SCIM error on the quarantine).
- ``credentials.target-rejected`` (error): the target refused the credentials or is not SCIM-compatible
  (401/403/404, Unauthorized, InvalidCredentials, CredentialValidationUnavailable, ServiceIncompatible ...),
  in the job status or in log entries newer than the latest successful entry. Its counts, codes, HTTP
  statuses and first time come from the log summary's failures by code and status
  (:attr:`~provkit.data.logsummary.LogSummary.failures_since_success`, judged here per group); the entries it
  lists (the newest) from the entries held, so it is the same from every entry as from a source that sends
  only each group's newest entries (Log Analytics' findings mode).
- ``credentials.validation-failed`` (error): only when the caller passed ``validate_credentials``, a callable
  that POSTs validateCredentials with the saved credentials; the saved credentials were refused.
- ``credentials.validated`` (info): the same call succeeded.
- ``credentials.validation-not-run`` (info or warning): credentials are suspect and validation was not asked
  for (how to run it), or the call could not be made (why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from provkit.analysis.checks.catalog import CatalogEntry, http_status, lookup
from provkit.analysis.checks.facts import QUARANTINE_FIELDS, Facts, job_value
from provkit.analysis.checks.finding import EVIDENCE_ROWS, LINKS, SECTIONS, Finding, evidence_rows
from provkit.analysis.columns import by_value, is_in, rows_where
from provkit.data.logsummary import FailureGroup
from provkit.errors import GraphError, ProvkitError
from provkit.formatting import ago, format_time

__all__ = [
    "CHECKS",
    "ValidateCredentials",
    "credential_checks",
    "rejected_entries",
    "rejected_groups",
    "saved_credentials_validator",
]

SECTION = SECTIONS["credentials"]
ValidateCredentials = Callable[[], Any]
"""Performs POST .../jobs/{id}/validateCredentials with ``useSavedCredentials: true``; returns on success
(204) and raises :class:`~provkit.errors.GraphError` when Graph refuses."""

_REJECTING_KINDS = frozenset({"credentials", "scim"})
_REJECTING_STATUS = frozenset({401, 403, 404})
_LINKS = [LINKS["config-problem"], LINKS["scim-compatibility"], LINKS["quarantine"]]


def _rejects(entry: CatalogEntry, text: str | None) -> bool:
    """Whether a code (with its message) says the target refused the credentials or is incompatible."""
    if entry.kind in _REJECTING_KINDS:
        return True
    return not entry.known and http_status(text) in _REJECTING_STATUS


def _status_rejection(facts: Facts) -> list[dict[str, Any]]:
    """Rows for credential or SCIM errors in the job status (last execution, current quarantine)."""
    job = facts.job
    rows: dict[str, dict[str, Any]] = {}
    for prefix, where in (("last_execution_error", "last execution"), ("quarantine_error", "quarantine")):
        code, message = job_value(job, f"{prefix}_code"), job_value(job, f"{prefix}_message")
        if code and _rejects(lookup(code, message), message):
            if code in rows:  # the same error on the last execution and on the quarantine: one row
                rows[code]["where"] = rows[code]["where"][:-1] + f", {where})"
                continue
            rows[code] = {
                "where": f"job status ({where})",
                "error_code": code,
                "http_status": http_status(message),
                "message": (message or "")[:300],
            }
    return list(rows.values())


def _rejects_group(code: str, status: int | None) -> bool:
    """Whether failures with this error code ("" for none) and HTTP status (from their reason) say the target
    refused the credentials: the code's kind, or for a code the catalog does not know, a 401, 403 or 404."""
    entry = lookup(code or None)
    return entry.kind in _REJECTING_KINDS or (not entry.known and status in _REJECTING_STATUS)


def rejected_groups(facts: Facts) -> list[FailureGroup]:
    """The log summary's failures newer than the latest successful entry (an older one was fixed since) whose
    code and HTTP status say the target refused the credentials (or is not SCIM-compatible): counts, codes,
    statuses and first times over every entry, whichever entries the evidence holds."""
    return [g for g in facts.logs.failures_since_success if _rejects_group(g.code, g.status)]


def rejected_entries(facts: Facts) -> pd.DataFrame:
    """The failed log entries the evidence holds that :func:`rejected_groups` counts, newest first (ties by
    entry id). From every entry that is all of them; a pushed-down evidence (Log Analytics' findings mode)
    holds at least the newest :data:`~provkit.analysis.checks.finding.EVIDENCE_ROWS` of each group, so the
    newest of them all are always among these."""
    events = facts.events
    if events.empty:
        return events
    failed = is_in(events, "status", ("failure",))
    if not failed.any():
        return events.iloc[:0]
    # Decided once per distinct code (and reason), then spread to the rows: a million entries stay columns.
    entries: dict[str | None, CatalogEntry] = {}

    def entry(code: str | None) -> CatalogEntry:
        if code not in entries:
            entries[code] = lookup(code or None)
        return entries[code]

    codes = events["error_code"]
    keep = failed & by_value(codes, lambda c: entry(c).kind in _REJECTING_KINDS)
    unknown = failed & by_value(codes, lambda c: not entry(c).known)
    if unknown.any():  # an unknown code rejects when its reason names 401, 403 or 404
        reasons = events["error_reason"].iloc[np.flatnonzero(unknown)]
        keep[unknown] = by_value(reasons, lambda r: http_status(r or "") in _REJECTING_STATUS)
    # The newest success of every entry (the log summary's: the evidence may hold only the failures after it).
    newest = facts.logs.last_by_status.get("success")
    if newest is not None and not pd.isna(newest):
        times = events["activity_time"].to_numpy(dtype="datetime64[ns]")
        keep &= times > pd.Timestamp(newest).tz_convert("UTC").tz_localize(None).to_datetime64()
    rejected = rows_where(events, keep)
    order = ["activity_time", "id"] if "id" in rejected else ["activity_time"]
    return rejected.sort_values(order, ascending=[False, True][: len(order)], kind="stable")


def _quarantined(facts: Facts) -> Finding | None:
    job = facts.job
    if (
        not isinstance(job_value(job, "status_code"), str)
        or job_value(job, "status_code").lower() != "quarantine"
    ):
        return None
    reason = job_value(job, "quarantine_reason") or ""
    code, message = job_value(job, "quarantine_error_code"), job_value(job, "quarantine_error_message")
    entry = lookup(code, message) if code else None
    credential = str(reason).lower() == "encounteredquarantineexception" or (
        entry is not None and _rejects(entry, message)
    )
    if not credential:
        return None
    status = http_status(message)
    since = job_value(job, "quarantine_series_began")
    title = f"Quarantined for credentials or connection since {format_time(since)} ({ago(since, facts.now)})"
    if code:
        title += f": {code}"
    if status:
        title += f" (the target answered HTTP {status})"
    names = (
        *QUARANTINE_FIELDS,
        "quarantine_tenant_actionable",
        "count_successive_complete_failures",
    )
    rows = [{"field": n, "value": job_value(job, n)} for n in names if job_value(job, n) is not None]
    listed, omitted = evidence_rows(rows)
    fix = entry.fix if entry is not None else lookup("EncounteredQuarantineException").fix
    return Finding(
        check="credentials.quarantined",
        section=SECTION,
        severity="error",
        title=title,
        evidence=listed,
        omitted=omitted,
        why="The service cannot authenticate to the app (or reach it), so every call fails and nothing is "
        "provisioned; quarantined jobs retry at most once a day and are disabled after four weeks."
        + (f" {entry.meaning}" if entry is not None else ""),
        remedy=fix + " On the Provisioning page: re-enter the Tenant URL and Secret Token (or re-authorize), "
        "Test Connection, save; then start the job (it leaves quarantine) or restart it.",
        links=_LINKS,
    )


def _target_rejected(facts: Facts) -> Finding | None:
    status_rows = _status_rejection(facts)
    groups = rejected_groups(facts)
    total = sum(g.entries for g in groups)
    if not status_rows and not total:
        return None
    parts = []
    if total:
        by_code: dict[str, int] = {}
        for g in groups:
            by_code[g.code or "(no code)"] = by_code.get(g.code or "(no code)", 0) + g.entries
        statuses = sorted({g.status for g in groups if g.status})
        text = ", ".join(
            f"{n} x {c}" for c, n in sorted(by_code.items(), key=lambda item: (-item[1], item[0]))
        )
        parts.append(
            f"{total:,} log entries since {format_time(min(g.first for g in groups))} ({text}"
            + (f"; HTTP {', '.join(map(str, statuses))}" if statuses else "")
            + ")"
        )
    for row in status_rows:
        parts.append(
            f"{row['where']}: {row['error_code']}"
            + (f" (HTTP {row['http_status']})" if row["http_status"] else "")
        )
    rows = list(status_rows)
    # The rows listed come from the entries held (the newest); how many there are, from the summary.
    entries = rejected_entries(facts).head(EVIDENCE_ROWS - len(rows)) if total else facts.events.iloc[:0]
    for e in entries.itertuples(index=False):
        rows.append(
            {
                "where": "log entry",
                "time": e.activity_time,
                "object": e.reportable_identifier
                if isinstance(e.reportable_identifier, str)
                else e.source_name,
                "error_code": e.error_code,
                "http_status": http_status(e.error_reason if isinstance(e.error_reason, str) else None),
                "message": (e.error_reason if isinstance(e.error_reason, str) else "")[:300],
                "change_id": e.change_id,
            }
        )
    listed, _ = evidence_rows(rows)
    omitted = len(status_rows) + total - len(listed)
    codes = [g.code for g in groups] + [r["error_code"] for r in status_rows]
    scim = any(lookup(c).kind == "scim" for c in codes if c)
    remedy = (
        "Check the Tenant URL and the Secret Token (valid and unexpired; the app's tutorial says whether it "
        "expects a 'Bearer' prefix), the admin account's rights in the app, and that the endpoint is reachable. "
        "Re-enter them, Test Connection and save. A 404 on a list or filter query means the Tenant URL is wrong "
        "or the endpoint is not SCIM-compliant."
    )
    if scim:
        remedy += " For SCIM incompatibility the app's developer must fix the endpoint (see the SCIM guide)."
    return Finding(
        check="credentials.target-rejected",
        section=SECTION,
        severity="error",
        title="The target app refused the provisioning credentials or requests: " + "; ".join(parts),
        evidence=listed,
        omitted=omitted,
        count=total,
        why="While the target refuses the credentials every export fails; enough such failures quarantine the "
        "job, and four weeks of quarantine disable it.",
        remedy=remedy,
        links=_LINKS + [LINKS["scim"]],
    )


def _graph_refused_credentials(exc: GraphError) -> bool:
    """Whether Graph's answer to validateCredentials says the credentials are bad (not that the call failed)."""
    if exc.status in (400, 409, 422):
        return True
    return bool(exc.code) and lookup(exc.code).kind in _REJECTING_KINDS and exc.status not in (403, 404, 429)


def _validation(facts: Facts, validate: ValidateCredentials) -> Finding:
    asked = (
        "The saved credentials were validated at the caller's request (POST validateCredentials with "
        "useSavedCredentials true); this changes nothing in the tenant."
    )
    try:
        result = validate()
    except GraphError as exc:
        if not _graph_refused_credentials(exc):
            return Finding(
                check="credentials.validation-not-run",
                section=SECTION,
                severity="warning",
                title=f"Could not validate the saved credentials: Graph answered {exc.status or ''} "
                f"{exc.code or ''}".rstrip(),
                evidence=[{"status": exc.status, "code": exc.code, "message": exc.message[:300]}],
                why="The validation call itself failed, so it says nothing about the credentials.",
                remedy=exc.remedy
                or "validateCredentials needs Synchronization.ReadWrite.All (or Application.ReadWrite.OwnedBy); "
                "grant it, or use Test Connection on the Provisioning page.",
                links=[LINKS["config-problem"]],
            )
        entry = lookup(exc.code, exc.message)
        status = http_status(exc.message)
        return Finding(
            check="credentials.validation-failed",
            section=SECTION,
            severity="error",
            title=f"Validating the saved credentials failed: {exc.code or 'error'}"
            + (f" (the target answered HTTP {status})" if status else ""),
            evidence=[{"status": exc.status, "code": exc.code, "message": exc.message[:300]}],
            why=asked + " The app refused them: " + entry.meaning,
            remedy=entry.fix
            + " Then validate again (provkit diagnose --validate-credentials) before starting the job.",
            links=_LINKS,
        )
    except ProvkitError as exc:
        return Finding(
            check="credentials.validation-not-run",
            section=SECTION,
            severity="warning",
            title=f"Could not validate the saved credentials: {exc.message[:200]}",
            evidence=[{"error": type(exc).__name__, "message": exc.message[:300]}],
            why="The validation call itself failed, so it says nothing about the credentials.",
            remedy=exc.remedy or "Fix the sign-in or permission problem and try again.",
            links=[LINKS["config-problem"]],
        )
    if result is False:
        return Finding(
            check="credentials.validation-failed",
            section=SECTION,
            severity="error",
            title="Validating the saved credentials failed",
            why=asked + " The app refused them.",
            remedy="Re-enter the Tenant URL and Secret Token (or re-authorize), Test Connection and save.",
            links=_LINKS,
        )
    quarantined = str(job_value(facts.job, "status_code") or "").lower() == "quarantine"
    return Finding(
        check="credentials.validated",
        section=SECTION,
        severity="info",
        title="The saved credentials validated successfully",
        why=asked,
        remedy="Credentials are not the problem now."
        + (" Start the job (POST .../start) so it leaves quarantine at once." if quarantined else ""),
        links=[LINKS["config-problem"]],
    )


def saved_credentials_validator(client: Any, service_principal_id: str, job_id: str) -> ValidateCredentials:
    """The ``validate_credentials`` callable for :func:`run_checks`: POST validateCredentials with the saved
    credentials. It changes nothing in the tenant, but it does reach the target app, so callers run it only
    behind an explicit flag."""
    path = f"/servicePrincipals/{service_principal_id}/synchronization/jobs/{job_id}/validateCredentials"

    def validate() -> Any:
        return client.post(path, json={"useSavedCredentials": True}, changes_tenant=False)

    return validate


def credential_checks(facts: Facts, validate_credentials: ValidateCredentials | None = None) -> list[Finding]:
    """All ``credentials.*`` findings. ``validate_credentials`` is called only when given."""
    findings = [f for f in (_quarantined(facts), _target_rejected(facts)) if f is not None]
    if validate_credentials is not None:
        findings.append(_validation(facts, validate_credentials))
    elif findings:
        findings.append(
            Finding(
                check="credentials.validation-not-run",
                section=SECTION,
                severity="info",
                title="The saved credentials were not validated (not asked for)",
                why="A live validation tells whether the saved credentials work now, e.g. after someone "
                "renewed the token.",
                remedy="Run `provkit diagnose --app APP --validate-credentials` to POST validateCredentials with "
                "the saved credentials (read-only for the tenant; needs Synchronization.ReadWrite.All), or use "
                "Test Connection on the Provisioning page.",
                links=[LINKS["config-problem"]],
            )
        )
    return findings


CHECKS = (credential_checks,)
