"""The failures after the newest success, summarised in KQL for the findings mode of the loganalytics source.

When the target refuses the credentials (a credential outage) or the job piles up escrows until quarantine,
every export fails: tens of thousands of failed entries after the newest successful one. The checks read them
for counts, codes, HTTP statuses and the first time (``credentials.target-rejected``), and list the newest
:data:`EVIDENCE_ROWS`. So the workspace sends, instead of every such entry:

- the failures grouped by error code (``ResultSignature``) and the HTTP status their reason
  (``ResultDescription``) names, read in KQL by :func:`status_kql` from the patterns of
  :func:`provkit.data.httpstatus.http_status`: a row per group with its entries and first and last time, which
  become :attr:`~provkit.data.logsummary.LogSummary.failures_since_success` (from every other source,
  :meth:`~provkit.data.logsummary.LogSummary.from_events` computes the same);
- the newest :data:`EVIDENCE_ROWS` entries of each group whole (with every entry at the same instant as the
  last of them), so the entries a finding lists, the newest of the groups it judges rejecting, are among them
  whatever that judgement (made in Python, per group, by the catalog).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from provkit.data.httpstatus import PATTERNS, STATUS_NAMES
from provkit.data.logsummary import FailureGroup
from provkit.data.sources.files.formats import _NO_CODE

if TYPE_CHECKING:
    from provkit.data.sources.loganalytics import LogAnalytics

__all__ = ["EVIDENCE_ROWS", "HELPERS", "failures_since_success", "newest_of_groups", "status_kql"]

# The evidence rows a finding lists (provkit.analysis.checks.finding.EVIDENCE_ROWS; the data layer cannot
# import the checks, a test keeps the two equal).
EVIDENCE_ROWS = 50


def _quote(text: str) -> str:
    """A KQL string literal (single quotes; backslash and quote escaped)."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _when(moment: datetime) -> str:
    return f"datetime({moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')})"


# inference: KQL's regular expressions are RE2's (extract, matches regex); the status patterns are written in
# the syntax RE2 and Python's re read alike, and a test runs both over the same reason texts.
def status_kql(column: str = "ResultDescription") -> str:
    """KQL ``extend`` assignments ending in ``status_``: the HTTP status ``column``'s text names, as digits
    ("" when none), read as :func:`~provkit.data.httpstatus.http_status` reads it (the first pattern that
    matches; a status named by word through its table). Helper columns ``s0_``... are left for the caller to
    drop (:data:`HELPERS`). Python reads the patterns ASCII-only, as RE2 does."""
    parts = []
    for n, (pattern, folded) in enumerate(PATTERNS):
        assert "'" not in pattern  # a verbatim KQL string cannot hold a quote unescaped
        parts.append(f"s{n}_ = extract(@'{'(?i)' if folded else ''}{pattern}', 1, {column})")
    last = f"s{len(PATTERNS) - 1}_"
    named = ", ".join(f"tolower({last}) == {_quote(w)}, {_quote(str(s))}" for w, s in STATUS_NAMES.items())
    pick = f"case({named}, {last} matches regex @'^[1-5][0-9][0-9]$', {last}, '')"
    for n in reversed(range(len(PATTERNS) - 1)):
        pick = f"iff(isnotempty(s{n}_), s{n}_, {pick})"
    return ", ".join(parts) + f"\n| extend status_ = {pick}"


HELPERS = ", ".join(f"s{n}_" for n in range(len(PATTERNS)))


def failures_since_success(
    workspace: LogAnalytics,
    sp_id: str,
    window: tuple[datetime, datetime],
    last_success: datetime | None,
) -> tuple[tuple[FailureGroup, ...], list[dict[str, Any]]]:
    """The app's failed entries after ``last_success`` (all of them when None) as groups by error code and
    HTTP status (sorted as :meth:`~provkit.data.logsummary.LogSummary.from_events` sorts them), and the
    records of the newest :data:`EVIDENCE_ROWS` entries of each group (ties at the last one included): a row
    per group and at most about fifty entries per group travel, however many failed."""
    after = f" and TimeGenerated > {_when(last_success)}" if last_success is not None else ""
    failed = f"""{workspace._app_filter(sp_id)}
| where ResultType =~ 'Failure'{after}
| extend {status_kql()}
| project-away {HELPERS}"""
    groups = workspace.query(
        f"""{failed}
| summarize entries = count(), first_ = min(TimeGenerated), last_ = max(TimeGenerated)
    by code_ = ResultSignature, status_""",
        window,
    )
    if not len(groups):
        return (), []
    lets, where = newest_of_groups(
        "failed_", zip(groups["code_"], groups["status_"], groups["entries"], strict=True)
    )
    rows = workspace.query(
        f"""let failed_ = materialize({failed});
{lets}
failed_
| where {where}
| project-away status_
| order by TimeGenerated desc""",
        window,
    )
    return _groups(groups), workspace._records(rows)


def newest_of_groups(
    table: str, groups: Iterable[tuple[Any, Any, Any]], whole: Callable[[str, int | None], bool] | None = None
) -> tuple[str, str]:
    """KQL ``let`` statements and a ``where`` condition on ``table`` (rows with ``ResultSignature`` and the
    ``status_`` of :func:`status_kql`) that keep, of each group (code as the service writes it, status as
    digits or empty, rows), the newest :data:`EVIDENCE_ROWS` rows with every row at the same instant as the
    last of them; every row of a group that has no more, or that ``whole`` (given the code as the log summary
    holds it, "" for none, and the status as a number) says travels whole."""
    cuts: list[str] = []
    wanted: list[str] = []
    for code, status, rows in groups:
        same_code = (
            f"ResultSignature == {_quote(code)}"
            if isinstance(code, str) and code
            else "isempty(ResultSignature)"
        )
        same_status = (
            f"status_ == {_quote(status)}" if isinstance(status, str) and status else "isempty(status_)"
        )
        mine = f"{same_code} and {same_status}"
        name = "" if not isinstance(code, str) or code.strip().lower() in _NO_CODE else code
        number = int(status) if isinstance(status, str) and status.isdigit() else None
        if int(rows) <= EVIDENCE_ROWS or (whole is not None and whole(name, number)):
            wanted.append(f"({mine})")
            continue
        n = len(cuts)
        cuts.append(
            f"let cut{n}_ = toscalar({table} | where {mine} | top {EVIDENCE_ROWS} by TimeGenerated desc"
            " | summarize min(TimeGenerated));"
        )
        wanted.append(f"({mine} and TimeGenerated >= cut{n}_)")
    return "\n".join(cuts), " or ".join(dict.fromkeys(wanted)) or "false"


def _groups(frame: pd.DataFrame) -> tuple[FailureGroup, ...]:
    """The service's groups as the log summary holds them: no-error placeholders as "" (as the export reader
    reads them), so groups that differ only in the placeholder are one."""
    merged: dict[tuple[str, int | None], FailureGroup] = {}
    for code, status, entries, first, last in zip(
        frame["code_"], frame["status_"], frame["entries"], frame["first_"], frame["last_"], strict=True
    ):
        name = "" if not isinstance(code, str) or code.strip().lower() in _NO_CODE else code
        number = int(status) if isinstance(status, str) and status.isdigit() else None
        start, end = pd.Timestamp(first), pd.Timestamp(last)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
        key = (name, number)
        if key in merged:
            before = merged[key]
            start, end = min(start, before.first), max(end, before.last)
            entries = int(entries) + before.entries
        merged[key] = FailureGroup(name, number, int(entries), start, end)
    return tuple(merged[k] for k in sorted(merged, key=lambda k: (k[0], -1 if k[1] is None else k[1])))
