"""Findings: what a check concluded, with the evidence, why it matters, what to do and where to read more.

A :class:`Finding` is plain data (JSON-serialisable through :meth:`Finding.as_dict`). Lists of findings are
ordered by severity (error first), then check id, then title, so reports and tests see a stable order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

__all__ = [
    "EVIDENCE_ROWS",
    "Finding",
    "LINKS",
    "SECTIONS",
    "SEVERITIES",
    "evidence_rows",
    "findings_json",
    "format_findings",
    "jsonable",
    "sort_findings",
]

SEVERITIES = ("info", "warning", "error")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

EVIDENCE_ROWS = 50
"""At most this many evidence rows are kept on a finding; ``Finding.omitted`` counts the rest."""

_LEARN = "https://learn.microsoft.com/en-us/entra/identity"
LINKS = {
    "config-problem": f"{_LEARN}/app-provisioning/application-provisioning-config-problem",
    "no-users": f"{_LEARN}/app-provisioning/application-provisioning-config-problem-no-users-provisioned",
    "quarantine": f"{_LEARN}/app-provisioning/application-provisioning-quarantine-status",
    "how-it-works": f"{_LEARN}/app-provisioning/how-provisioning-works",
    "known-issues": f"{_LEARN}/app-provisioning/known-issues",
    "analyze-logs": f"{_LEARN}/monitoring-health/howto-analyze-provisioning-logs",
    "when-finish": f"{_LEARN}/app-provisioning/application-provisioning-when-will-provisioning-finish-specific-user",
    "check-status": f"{_LEARN}/app-provisioning/check-status-user-account-provisioning",
    "scoping": f"{_LEARN}/app-provisioning/define-conditional-rules-for-provisioning-user-accounts",
    "attributes": f"{_LEARN}/app-provisioning/customize-application-attributes",
    "accidental-deletions": f"{_LEARN}/app-provisioning/accidental-deletions",
    "scim-compatibility": f"{_LEARN}/app-provisioning/application-provisioning-config-problem-scim-compatibility",
    "scim": f"{_LEARN}/app-provisioning/use-scim-to-provision-users-and-groups",
    "on-demand": f"{_LEARN}/app-provisioning/provision-on-demand",
    "skip-out-of-scope": f"{_LEARN}/app-provisioning/skip-out-of-scope-deletions",
    "assign-groups": f"{_LEARN}/enterprise-apps/assign-user-or-group-access-portal",
    "group-app-role": "https://learn.microsoft.com/en-us/graph/api/group-post-approleassignments",
    "deprovisioning": f"{_LEARN}/app-provisioning/how-provisioning-works#deprovisioning",
    "scim-validator": f"{_LEARN}/app-provisioning/scim-validator-tutorial",
    "functions": f"{_LEARN}/app-provisioning/functions-for-customizing-application-data",
}

# Section titles of the troubleshooting guide the checks follow.
SECTIONS = {
    "working": "How to see if provisioning is working",
    "start": "Provisioning service doesn't appear to start",
    "credentials": "Can't save configuration due to app credentials not working",
    "skipped": "Users are skipped and not provisioned even though they're assigned",
    "quarantine": "Application provisioning in quarantine status",
    "scope": "Provisioning scope: sync all or only assigned",
    "deprovisioning": "Users are not disabled or deleted in the app",
    "references": "Manager and group member references",
    "scim": "The SCIM endpoint refuses the Entra SCIM client's requests",
}


@dataclass
class Finding:
    """One conclusion of one check.

    ``check`` is a stable id (``skipped.nested-group-only``); ``title`` names the situation in one line, with
    numbers; ``evidence`` holds at most :data:`EVIDENCE_ROWS` rows (users, entries or status fields) and
    ``omitted`` counts the rows left out; ``count`` is how many objects or entries the finding is about (0
    when it is about the job as a whole).
    """

    check: str
    section: str
    severity: str
    title: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    why: str = ""
    remedy: str = ""
    links: list[str] = field(default_factory=list)
    count: int = 0
    omitted: int = 0

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {self.severity!r}")

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for error."""
        return _RANK[self.severity]

    def as_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (times as ISO-8601 text, missing values as None)."""
        return {
            "check": self.check,
            "section": self.section,
            "severity": self.severity,
            "title": self.title,
            "count": self.count,
            "evidence": [jsonable(row) for row in self.evidence],
            "evidence_omitted": self.omitted,
            "why": self.why,
            "remedy": self.remedy,
            "links": list(self.links),
        }


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings ordered by severity (error first), then check id, then title."""
    return sorted(findings, key=lambda f: (-f.rank, f.check, f.title))


def jsonable(value: Any) -> Any:
    """``value`` with pandas and datetime values turned into JSON types (NA and NaT become None)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, pd.Timedelta | timedelta):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, bool | str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evidence_rows(
    rows: pd.DataFrame | Sequence[Mapping[str, Any]], limit: int = EVIDENCE_ROWS
) -> tuple[list[dict[str, Any]], int]:
    """(at most ``limit`` rows as JSON-ready dicts, how many were left out)."""
    if isinstance(rows, pd.DataFrame):
        total = len(rows)
        records = rows.head(limit).to_dict("records")
    else:
        total = len(rows)
        records = [dict(r) for r in list(rows)[:limit]]
    return [jsonable(r) for r in records], max(0, total - limit)


def findings_json(findings: Iterable[Finding]) -> str:
    """The findings as a JSON array (sorted, indented)."""
    return json.dumps([f.as_dict() for f in sort_findings(findings)], indent=2, ensure_ascii=False)


_MARK = {"error": "ERROR", "warning": "WARN", "info": "info"}


def _row_text(row: Mapping[str, Any]) -> str:
    parts = []
    for key, value in jsonable(row).items():
        if value is None or value == "":
            continue
        text = str(value)
        parts.append(f"{key}={text if len(text) <= 100 else text[:97] + '...'}")
    return ", ".join(parts)


def format_findings(findings: Iterable[Finding], *, rows: int = 5) -> str:
    """A readable text report: a table (severity, check, title), then for each finding a few evidence rows,
    why it matters, what to do and where to read more."""
    ordered = sort_findings(findings)
    if not ordered:
        return "No findings."
    check_width = max(len(f.check) for f in ordered)
    lines = [f"{'severity':<8}  {'check':<{check_width}}  title", "-" * (check_width + 60)]
    for f in ordered:
        lines.append(f"{_MARK[f.severity]:<8}  {f.check:<{check_width}}  {f.title}")
    for f in ordered:
        lines += ["", f"[{_MARK[f.severity]}] {f.check}: {f.title}", f"  Section: {f.section}"]
        for row in f.evidence[:rows]:
            lines.append(f"  - {_row_text(row)}")
        more = len(f.evidence) - rows + f.omitted if len(f.evidence) > rows else f.omitted
        if more > 0:
            lines.append(f"  ... and {more} more")
        if f.why:
            lines.append(f"  Why it matters: {f.why}")
        if f.remedy:
            lines.append(f"  What to do: {f.remedy}")
        for link in f.links:
            lines.append(f"  See: {link}")
    return "\n".join(lines)
