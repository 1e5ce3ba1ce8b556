"""The formats read from files: their names, the header spellings accepted for the admin center's CSV files
and Log Analytics exports, and the results of a read (:class:`Reject`, :class:`FileLoad`) with the plumbing
shared by the readers (notes, record context).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = (
    "admin-center-json",
    "admin-center-csv",
    "admin-center-csv-steps",
    "admin-center-csv-properties",
    "log-analytics-csv",
    "log-analytics-json",
    "graph-pages",
)

DOWNLOAD_LINK = "https://learn.microsoft.com/entra/identity/monitoring-health/howto-download-logs"
EXPECTED = (
    "expected a provisioning-log download from the admin center (JSON, or the CSV files), a Log Analytics "
    "AADProvisioningLogs export (CSV or JSON), or saved Graph /auditLogs/provisioning pages (JSON or JSONL), "
    "optionally gzip-compressed"
)

# --- alias tables ------------------------------------------------------------------------------------------------
# v1.0 path -> header spellings seen or plausible in admin-center CSV downloads (the headers are not documented).

ADMIN_CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("ID", "Activity ID", "Log ID", "Event ID"),
    "activityDateTime": (
        "Date",
        "Activity Date",
        "Activity Date Time",
        "Date (UTC)",
        "Date Time",
        "Time",
        "Timestamp",
        "Time Generated",
    ),
    "changeId": ("Change ID",),
    "cycleId": ("Cycle ID",),
    "jobId": ("Job ID",),
    "tenantId": ("Tenant ID",),
    "durationInMilliseconds": ("Duration (ms)", "Duration", "Duration In Milliseconds", "Duration Ms"),
    "provisioningAction": ("Action", "Provisioning Action"),
    "provisioningStatusInfo.status": ("Status", "Provisioning Status", "Result", "Result Type"),
    "provisioningStatusInfo.errorInformation.errorCode": ("Error Code", "Result Signature"),
    "provisioningStatusInfo.errorInformation.reason": (
        "Reason",
        "Status Reason",
        "Error Reason",
        "Failure Reason",
        "Error Description",
        "Error Message",
        "Result Description",
    ),
    "provisioningStatusInfo.errorInformation.additionalDetails": ("Additional Details",),
    "provisioningStatusInfo.errorInformation.errorCategory": ("Error Category",),
    "provisioningStatusInfo.errorInformation.recommendedAction": ("Recommended Action", "Recommendation"),
    "sourceIdentity.id": ("Source Identity ID", "Source ID", "Source Object ID"),
    "sourceIdentity.displayName": (
        "Source Identity Name",
        "Source Identity Display Name",
        "Source Display Name",
        "Source Name",
        "Source Identity",
    ),
    "sourceIdentity.identityType": ("Source Identity Type", "Source Type", "Source Object Type"),
    "sourceIdentity.details": ("Source Identity Details",),
    "targetIdentity.id": ("Target Identity ID", "Target ID", "Target Object ID"),
    "targetIdentity.displayName": (
        "Target Identity Name",
        "Target Identity Display Name",
        "Target Display Name",
        "Target Name",
        "Target Identity",
    ),
    "targetIdentity.identityType": ("Target Identity Type", "Target Type", "Target Object Type"),
    "targetIdentity.details": ("Target Identity Details",),
    "sourceSystem.id": ("Source System ID",),
    "sourceSystem.displayName": ("Source System", "Source System Name", "Source System Display Name"),
    "sourceSystem.details": ("Source System Details",),
    "targetSystem.id": ("Target System ID",),
    "targetSystem.displayName": ("Target System", "Target System Name", "Target System Display Name"),
    "targetSystem.details": ("Target System Details",),
    "servicePrincipal.id": ("Service Principal ID", "Service Principal Object ID"),
    "servicePrincipal.displayName": (
        "Service Principal Name",
        "Service Principal Display Name",
        "Service Principal",
        "Application",
        "Application Name",
        "App Name",
    ),
    "initiatedBy.displayName": ("Initiated By", "Initiated By Name", "Initiator", "Initiator Name"),
    "initiatedBy.id": ("Initiated By ID", "Initiator ID"),
    "initiatedBy.initiatorType": ("Initiated By Type", "Initiator Type"),
}
"""Main CSV file: v1.0 path -> accepted header spellings (compared ignoring case, spaces and punctuation)."""

ADMIN_CSV_STEP_COLUMNS: dict[str, tuple[str, ...]] = {
    "changeId": ("Change ID",),
    "_order": ("Step Number", "Step No", "Step Order", "Step Index", "Step Sequence", "Order", "Sequence"),
    "name": ("Step Name", "Name", "Event Name"),
    "provisioningStepType": ("Step Type", "Type", "Provisioning Step Type"),
    "status": ("Step Status", "Status", "Result"),
    "description": ("Step Description", "Description"),
    "details": ("Details", "Step Details"),
}
"""``_ProvisioningSteps`` CSV file: step field -> accepted header spellings (``_order`` orders the steps)."""

ADMIN_CSV_PROPERTY_COLUMNS: dict[str, tuple[str, ...]] = {
    "changeId": ("Change ID",),
    "displayName": (
        "Property Name",
        "Modified Property Name",
        "Modified Property",
        "Property",
        "Attribute",
        "Attribute Name",
        "Display Name",
        "Name",
    ),
    "oldValue": ("Old Value", "Previous Value", "Old"),
    "newValue": ("New Value", "New", "Value"),
}
"""``_ModifiedProperties`` CSV file: property field -> accepted header spellings."""

# Log Analytics AADProvisioningLogs columns (reference section 5.2), keyed by normalised header.
_LA_SCALARS = {
    "id": "id",
    "timegenerated": "activityDateTime",
    "changeid": "changeId",
    "cycleid": "cycleId",
    "jobid": "jobId",
    "aadtenantid": "tenantId",
    "durationms": "durationInMilliseconds",
    "provisioningaction": "provisioningAction",
    "action": "provisioningAction",
    # TenantId in Log Analytics is the workspace, not the Entra tenant: kept apart so nobody mixes them up.
    "tenantid": "logAnalyticsWorkspaceId",
}
_LA_JSON = {
    "initiatedby": "initiatedBy",
    "modifiedproperties": "modifiedProperties",
    "provisioningstatusinfo": "provisioningStatusInfo",
    "provisioningsteps": "provisioningSteps",
    "serviceprincipal": "servicePrincipal",
    "sourceidentity": "sourceIdentity",
    "targetidentity": "targetIdentity",
    "targetsystem": "targetSystem",
    "sourcesystem": "sourceSystem",
}
_LA_STATUS = {"resulttype": "status", "resultsignature": "errorCode", "resultdescription": "reason"}
_LA_MARKERS = frozenset(
    {"resulttype", "resultsignature", "resultdescription", "aadtenantid", "operationname", "durationms"}
)
# Placeholders Log Analytics writes in ResultSignature when there is no error.
_NO_CODE = frozenset({"", "none", "null", "n/a", "-"})

_V1_FIELDS = (
    "id",
    "activityDateTime",
    "changeId",
    "cycleId",
    "durationInMilliseconds",
    "initiatedBy",
    "jobId",
    "modifiedProperties",
    "provisioningAction",
    "provisioningStatusInfo",
    "provisioningSteps",
    "servicePrincipal",
    "sourceIdentity",
    "targetIdentity",
    "sourceSystem",
    "targetSystem",
    "tenantId",
)
_TOP_ALIASES = {
    "action": "provisioningAction",
    "statusinfo": "provisioningStatusInfo",
    "durationms": "durationInMilliseconds",
    "steps": "provisioningSteps",
}
_ERROR_FIELDS = ("errorCode", "reason", "additionalDetails", "errorCategory", "recommendedAction")
_ERROR_KEYS = frozenset(f.lower() for f in _ERROR_FIELDS)


# --- public results ----------------------------------------------------------------------------------------------


@dataclass
class Reject:
    """A record that could not be read: where it is (``line`` 1-based, ``record`` its 1-based ordinal) and why."""

    file: str
    line: int | None
    record: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f", line {self.line}"
        if self.record is not None:
            where += f" (record {self.record})"
        return f"{where}: {self.reason}"


@dataclass
class FileLoad:
    """What :func:`read_files` read: Graph-shaped records, the records it could not read, and notes.

    ``read`` counts event records attempted, so ``read == kept + len(rejects)``. Rows of a CSV steps or
    properties file that attach to no event (orphan change id, unreadable row) are in ``detail_rejects``;
    files that could not be read at all (only with ``on_unreadable="report"``) are in ``unreadable``.
    ``origins[i]`` says where ``records[i]`` came from, as a Reject-shaped place whose reason is empty.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    read: int = 0
    warnings: list[str] = field(default_factory=list)
    detail_rejects: list[Reject] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    origins: list[Reject] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return len(self.records)


# --- internal plumbing -------------------------------------------------------------------------------------------


class _Bad(Exception):
    """A record cannot be read; the message is the reason shown to the user."""


class _Notes:
    """Warnings aggregated by (file, message) so a problem repeated on 10,000 rows is one line, with examples."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], list[int | None]] = {}

    def add(self, file: str, message: str, line: int | None = None) -> None:
        self._lines.setdefault((file, message), []).append(line)

    def render(self) -> list[str]:
        out = []
        for (file, message), lines in self._lines.items():
            known = sorted({n for n in lines if n is not None})
            text = f"{file}: {message}"
            if known:
                shown = ", ".join(str(n) for n in known[:5])
                more = f" and {len(known) - 5} more" if len(known) > 5 else ""
                text += f" (line{'s' if len(known) > 1 else ''} {shown}{more})"
            elif len(lines) > 1:
                text += f" ({len(lines)} times)"
            out.append(text)
        return out


@dataclass
class _Ctx:
    """Where a record is, for warnings about it."""

    file: str
    line: int | None
    notes: _Notes

    def warn(self, message: str) -> None:
        self.notes.add(self.file, message, self.line)


@dataclass
class _Text:
    """A decoded input file."""

    path: Path
    name: str  # the path as the user gave it
    inner_name: str  # file name without .gz, for role hints
    text: str
    truncated: bool  # the gzip stream ended early


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


@functools.lru_cache(maxsize=4096)
def _norm(header: str) -> str:
    """Header key: Log Analytics' ' [UTC]' suffix dropped, then lower case letters and digits only."""
    header = re.sub(r"\s*\[[^\]]*\]\s*$", "", header.strip().lstrip("\ufeff"))
    return re.sub(r"[^0-9a-z]", "", header.lower())


def _alias_index(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    index: dict[str, str] = {}
    for path, spellings in table.items():
        for spelling in (path, path.replace(".", " "), *spellings):
            index.setdefault(_norm(spelling), path)
    return index


_MAIN_INDEX = _alias_index(ADMIN_CSV_COLUMNS)
_STEP_INDEX = _alias_index(ADMIN_CSV_STEP_COLUMNS)
_PROPERTY_INDEX = _alias_index(ADMIN_CSV_PROPERTY_COLUMNS)
_STEP_ONLY = {
    _norm(h) for h in ("Step Name", "Step Type", "Step Status", "Step Description", "Step Details")
} | {_norm(h) for h in ADMIN_CSV_STEP_COLUMNS["_order"][:5]}
_PROPERTY_ONLY = {_norm(h) for h in ("Property Name", "Modified Property Name", "Modified Property")} | {
    _norm(h) for h in ("Old Value", "New Value", "Previous Value")
}
