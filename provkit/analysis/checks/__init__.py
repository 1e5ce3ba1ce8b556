"""Troubleshooting checks: evidence in, findings out; the error-code catalog; one object's story.

    run_checks(evidence, validate_credentials=None) -> list[Finding]
    format_findings(findings) -> str, findings_json(findings) -> str
    lookup(code, reason=None) -> CatalogEntry
    explain(evidence, object) -> Explanation; format_explanation(explanation) -> str

Check ids (stable): working.summary, failures.by-code; start.not-configured, start.not-started,
start.initial-cycle-running, start.paused, start.disabled, start.failing-every-run; credentials.quarantined,
credentials.target-rejected, credentials.validation-failed, credentials.validated,
credentials.validation-not-run; skipped.scoping-filter, skipped.not-assigned, skipped.nested-group-only,
skipped.disabled-in-source, skipped.assignment-broken, skipped.required-attribute-missing,
skipped.matching-attribute-empty, skipped.group-matching-id-empty; quarantine.escrow-risk, quarantine.active,
quarantine.too-many-deletes; store.coverage-gaps; skipped.group-not-security-enabled; scope.sync-all,
scope.switch-needs-restart; failures.scim-incompatible; references.unresolved; deprovision.pending-hard-delete,
deprovision.unassigned-never-deleted, deprovision.skip-out-of-scope, deprovision.soft-delete-not-mapped.
"""

from provkit.analysis.checks.catalog import CatalogEntry, lookup
from provkit.analysis.checks.explain import Explanation, explain, format_explanation
from provkit.analysis.checks.finding import Finding, findings_json, format_findings
from provkit.analysis.checks.runner import run_checks

__all__ = [
    "CatalogEntry",
    "Explanation",
    "Finding",
    "explain",
    "findings_json",
    "format_explanation",
    "format_findings",
    "lookup",
    "run_checks",
]
