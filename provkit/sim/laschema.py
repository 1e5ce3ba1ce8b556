"""The simulated workspace's two tables, ``AADProvisioningLogs`` and ``AuditLogs``: their documented columns and
the row each Graph provisioning entry or directory audit becomes."""

from __future__ import annotations

from typing import Any

from provkit.sim.laformat import dumps

PROVISIONING_TABLE = "AADProvisioningLogs"
AUDIT_TABLE = "AuditLogs"

# Column order and types of AADProvisioningLogs (reference 5.2, from the table reference).
PROVISIONING_COLUMNS: dict[str, str] = {
    "TenantId": "VARCHAR",
    "SourceSystem": "VARCHAR",
    "TimeGenerated": "TIMESTAMP",
    "OperationName": "VARCHAR",
    "OperationVersion": "VARCHAR",
    "Category": "VARCHAR",
    "ResultType": "VARCHAR",
    "ResultSignature": "VARCHAR",
    "ResultDescription": "VARCHAR",
    "DurationMs": "BIGINT",
    "AADTenantId": "VARCHAR",
    "ChangeId": "VARCHAR",
    "CycleId": "VARCHAR",
    "Id": "VARCHAR",
    "InitiatedBy": "VARCHAR",
    "JobId": "VARCHAR",
    "ModifiedProperties": "VARCHAR",
    "ProvisioningAction": "VARCHAR",
    "ProvisioningStatusInfo": "VARCHAR",
    "ProvisioningSteps": "VARCHAR",
    "ServicePrincipal": "VARCHAR",
    "SourceIdentity": "VARCHAR",
    "TargetIdentity": "VARCHAR",
    "TargetSystem": "VARCHAR",
    "Type": "VARCHAR",
}
# AuditLogs (Azure Monitor table reference); the dynamic columns hold JSON text.
AUDIT_COLUMNS: dict[str, str] = {
    "TenantId": "VARCHAR",
    "SourceSystem": "VARCHAR",
    "TimeGenerated": "TIMESTAMP",
    "OperationName": "VARCHAR",
    "OperationVersion": "VARCHAR",
    "Category": "VARCHAR",
    "ResultType": "VARCHAR",
    "ResultSignature": "VARCHAR",
    "ResultDescription": "VARCHAR",
    "DurationMs": "BIGINT",
    "CorrelationId": "VARCHAR",
    "Resource": "VARCHAR",
    "Level": "VARCHAR",
    "AdditionalDetails": "VARCHAR",
    "Id": "VARCHAR",
    "InitiatedBy": "VARCHAR",
    "LoggedByService": "VARCHAR",
    "Result": "VARCHAR",
    "ResultReason": "VARCHAR",
    "TargetResources": "VARCHAR",
    "AADTenantId": "VARCHAR",
    "ActivityDisplayName": "VARCHAR",
    "ActivityDateTime": "TIMESTAMP",
    "AADOperationType": "VARCHAR",
    "Type": "VARCHAR",
}
DYNAMIC_COLUMNS = {
    "InitiatedBy",
    "ModifiedProperties",
    "ProvisioningStatusInfo",
    "ProvisioningSteps",
    "ServicePrincipal",
    "SourceIdentity",
    "TargetIdentity",
    "TargetSystem",
    "AdditionalDetails",
    "TargetResources",
}


_dumps = dumps

# Where the workspace keeps each AADProvisioningLogs column (the tables a query sees are views that put them
# together, in PROVISIONING_COLUMNS order):
_CONSTANT = {
    "SourceSystem": "Azure AD",
    "OperationName": "Provisioning activity",
    "OperationVersion": "1.0",
    "Category": "ProvisioningLogs",
    "Type": PROVISIONING_TABLE,
}
_PER_APP = ("AADTenantId", "InitiatedBy", "JobId", "ServicePrincipal", "TargetSystem")  # one row per app
_PER_ENTRY = ("TimeGenerated", "Id", "ChangeId", "CycleId")  # one row per entry, with the (app, cycle, i) key
_SHAPE = (  # per entry too, taken from the entry's outcome (see _shape)
    "ResultType",
    "ResultSignature",
    "ResultDescription",
    "ProvisioningAction",
    "SourceIdentity",
    "TargetIdentity",
)
# Rendered only for the rows a query reads (a DuckDB function of the key): the bulk of an entry's JSON.
_LAZY = ("DurationMs", "ProvisioningStatusInfo", "ProvisioningSteps", "ModifiedProperties")
_INDEX = {name: n for n, name in enumerate(PROVISIONING_COLUMNS)}


def _cap_text(value: Any) -> str:
    text = str(value or "")
    return text[:1].upper() + text[1:]


def _shape(entry: dict) -> tuple:
    """The columns of an entry's row that follow from what happened to its object (the same for every entry
    with the same outcome): ResultType, ResultSignature, ResultDescription, ProvisioningAction, SourceIdentity,
    TargetIdentity (the order of :data:`_SHAPE`)."""
    info = entry.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    source = entry.get("sourceIdentity") or {}
    return (
        _cap_text(info.get("status")),
        error.get("errorCode") or "None",
        error.get("reason") or "",
        _cap_text(entry.get("provisioningAction")),
        _dumps(
            {
                "Id": source.get("id"),
                "Name": source.get("displayName"),
                "identityType": source.get("identityType"),
                "details": source.get("details") or {},
            }
        ),
        _dumps(entry.get("targetIdentity")),
    )


def la_row(entry: dict) -> tuple:
    """One AADProvisioningLogs row (in :data:`PROVISIONING_COLUMNS` order) for a Graph provisioning entry.

    Column meanings from reference 5.2: ResultType is the status (Success/Failure/Skipped), ResultSignature the
    error code, ResultDescription the reason, TenantId the workspace. inference: the JSON columns' key spelling
    (``ServicePrincipal.Id``/``.Name``, ``SourceIdentity.Id``/``.identityType``/``.details``) follows the docs'
    sample queries; the other JSON columns keep Graph's shapes. ``None`` stands for an absent error code.
    """
    info = entry.get("provisioningStatusInfo") or {}
    error = info.get("errorInformation") or {}
    sp = entry.get("servicePrincipal") or {}
    values = dict(zip(_SHAPE, _shape(entry), strict=True))
    values.update(_CONSTANT)
    values.update(
        TenantId=None,  # the workspace id, set at load
        TimeGenerated=entry["activityDateTime"],
        DurationMs=entry.get("durationInMilliseconds"),
        AADTenantId=entry.get("tenantId"),
        ChangeId=entry.get("changeId"),
        CycleId=entry.get("cycleId"),
        Id=entry.get("id"),
        InitiatedBy=_dumps(entry.get("initiatedBy")),
        JobId=entry.get("jobId"),
        ModifiedProperties=_dumps(entry.get("modifiedProperties") or []),
        ProvisioningStatusInfo=_dumps(
            {"status": str(info.get("status") or ""), "errorInformation": error or None}
        ),
        ProvisioningSteps=_dumps(entry.get("provisioningSteps") or []),
        ServicePrincipal=_dumps({"Id": sp.get("id"), "Name": sp.get("displayName")}),
        TargetSystem=_dumps(entry.get("targetSystem")),
    )
    return tuple(values[name] for name in PROVISIONING_COLUMNS)


def audit_row(audit: dict) -> tuple:
    """One AuditLogs row (in :data:`AUDIT_COLUMNS` order) for a Graph directoryAudit.

    inference: the mapping (OperationName = activityDisplayName, Result = result, ResultReason = resultReason,
    AdditionalDetails/InitiatedBy/TargetResources as JSON text) follows the table reference's column names.
    """
    return (
        None,
        "Azure AD",
        audit["activityDateTime"],
        audit.get("activityDisplayName"),
        "1.0",
        audit.get("category"),
        "0" if str(audit.get("result", "")).lower() == "success" else "1",
        "None",
        "",
        0,
        audit.get("correlationId"),
        "Microsoft.aadiam",
        "4",
        _dumps(audit.get("additionalDetails") or []),
        audit.get("id"),
        _dumps(audit.get("initiatedBy")),
        audit.get("loggedByService"),
        audit.get("result"),
        audit.get("resultReason"),
        _dumps(audit.get("targetResources") or []),
        None,
        audit.get("activityDisplayName"),
        audit["activityDateTime"],
        audit.get("operationType"),
        AUDIT_TABLE,
    )
