"""Run every check over one app's evidence and return its findings in a stable order."""

from __future__ import annotations

from provkit.analysis.checks import (
    coverage,
    credentials,
    deprovision,
    quarantine,
    references,
    scim,
    scope,
    skipped,
    start,
    working,
)
from provkit.analysis.checks.credentials import ValidateCredentials
from provkit.analysis.checks.facts import gather
from provkit.analysis.checks.finding import Finding, sort_findings
from provkit.data.evidence import Evidence

__all__ = ["run_checks"]


def run_checks(
    evidence: Evidence, *, validate_credentials: ValidateCredentials | None = None
) -> list[Finding]:
    """Findings for one app, sorted by severity (error first), check id and title.

    Reads only the evidence. ``validate_credentials`` is None (credentials are not validated) or a callable
    that POSTs validateCredentials with the saved credentials; it is called once, only when given.
    """
    facts = gather(evidence)
    findings: list[Finding] = []
    for check in (
        *coverage.CHECKS,
        *working.CHECKS,
        *start.CHECKS,
        *skipped.CHECKS,
        *quarantine.CHECKS,
        *scope.CHECKS,
        *scim.CHECKS,
        *references.CHECKS,
        *deprovision.CHECKS,
    ):
        findings.extend(check(facts))
    findings.extend(credentials.credential_checks(facts, validate_credentials))
    return sort_findings(findings)
