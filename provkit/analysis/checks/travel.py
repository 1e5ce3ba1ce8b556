"""Which failing objects a check judges one by one: the rule a source that summarises the logs itself (Log
Analytics' findings mode) is handed, so that it sends those whole and only counts the rest.

``failures.by-code`` counts the failing objects per error code (:attr:`provkit.data.logsummary.LogSummary.
failing_by_code`) and lists the newest of each code, so of most codes only the newest
:data:`~provkit.analysis.checks.finding.EVIDENCE_ROWS` objects need travel. Three checks judge every failing
object of a kind, reading its reason, steps or modified properties:

- ``references.unresolved`` (:func:`provkit.analysis.checks.references.reference_failures`): every
  UnableToResolveReferenceAttributeValue failure (the referenced object, whether it came into scope later);
- ``failures.scim-incompatible`` (:func:`provkit.analysis.checks.scim.scim_refusals`): every failure with a
  BadRequest code or whose reason names HTTP 400 (what the SCIM endpoint refused, from its modified
  properties);
- ``skipped.required-attribute-missing`` (:func:`provkit.analysis.checks.skipped.classify`): every
  MandatoryFieldsMissing / MissingValues failure (the attribute, from the steps).
"""

from __future__ import annotations

from provkit.analysis.checks.catalog import lookup
from provkit.analysis.checks.references import CODE as REFERENCE_CODE
from provkit.analysis.checks.skipped import _REQUIRED_CODES

__all__ = ["judged_one_by_one"]


def judged_one_by_one(code: str, status: int | None) -> bool:
    """Whether a check judges each failing object whose latest entry has this error code ("" for none) and
    whose reason names this HTTP status (None for none): such objects travel whole. The codes are read as the
    checks read them (the catalog's base code, case-insensitive)."""
    base = lookup(code or None).base if code else None
    name = (base or code or "").lower()
    return name == REFERENCE_CODE or name in _REQUIRED_CODES or base == "BadRequest" or status == 400
