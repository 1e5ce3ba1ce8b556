"""Reading a provisionOnDemand answer (a ``stringKeyStringValuePair``) in either documented shape.

- The v1.0 API page (``synchronization-synchronizationjob-provisionondemand.md``): ``key`` is the JSON of
  ``{"result": "Skipped", "details": {"errorCode", "errorMessage"}}`` and ``value`` the JSON of one object
  with ``provisioningSteps`` (``name``, ``type``, ``status``, ``description``, ``timestamp``, ``details``),
  ``statusInfo``, ``action``, ``changeId``, ``sourceIdentity`` ...
- The cross-tenant synchronization guide (reference 1.8): ``key``
  "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo" and ``value`` the JSON of a
  *list* of such objects.

:func:`read_on_demand` gives the result, the error code and message, and each object as a Graph-shaped
provisioningObjectSummary (v1.0 names: ``provisioningSteps[].provisioningStepType``, ``provisioningAction``,
``provisioningStatusInfo``), so :func:`provkit.tables.events_from_records` reads its scoping details like a
log entry's. inference: ``statusInfo`` in the list shape carrying the result (the guide shows the key only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OnDemandResult", "read_on_demand"]


@dataclass(frozen=True)
class OnDemandResult:
    """``result`` (Success, Skipped, Failure, or "unknown"), ``error_code`` and ``error_message`` (None when
    absent), and ``entries``: the objects of the answer as provisioningObjectSummary dicts."""

    result: str
    error_code: str | None = None
    error_message: str | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def words(self) -> str:
        """'provisionOnDemand: Skipped (RedundantExport: The state of the user ...)'."""
        tail = f" ({self.error_code}: {self.error_message})" if self.error_code else ""
        return f"provisionOnDemand: {self.result}{tail}"


def _loads(text: object) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return None


def _as_entry(obj: dict[str, Any], index: int) -> dict[str, Any]:
    steps = []
    for step in obj.get("provisioningSteps") or []:
        if not isinstance(step, dict):
            continue
        steps.append(
            {
                "name": step.get("name"),
                "provisioningStepType": step.get("provisioningStepType", step.get("type")),
                "status": step.get("status"),
                "description": step.get("description"),
                "details": step.get("details") or {},
            }
        )
    status = obj.get("statusInfo") if isinstance(obj.get("statusInfo"), dict) else {}
    source = obj.get("sourceIdentity") if isinstance(obj.get("sourceIdentity"), dict) else {}
    target = obj.get("targetIdentity") if isinstance(obj.get("targetIdentity"), dict) else {}
    return {
        "id": obj.get("changeId") or f"on-demand-{index}",
        "activityDateTime": obj.get("endTime") or obj.get("startTime"),
        "changeId": obj.get("changeId"),
        "provisioningAction": obj.get("action"),
        "provisioningStatusInfo": {
            "status": status.get("status"),
            "errorInformation": {"errorCode": status.get("errorCode"), "reason": status.get("reason")}
            if status.get("errorCode")
            else None,
        },
        "sourceIdentity": {
            "id": source.get("id"),
            "displayName": source.get("displayName") or obj.get("reportableIdentifier"),
            "identityType": source.get("identityType", source.get("type")),
        },
        "targetIdentity": {
            "id": target.get("id"),
            "displayName": target.get("displayName"),
            "identityType": target.get("identityType", target.get("type")),
        },
        "provisioningSteps": steps,
        "modifiedProperties": [p for p in obj.get("modifiedProperties") or [] if isinstance(p, dict)],
    }


def read_on_demand(answer: object) -> OnDemandResult:
    """The outcome of a provisionOnDemand call from its JSON answer (either documented shape)."""
    if not isinstance(answer, dict):
        return OnDemandResult("unknown")
    key = _loads(answer.get("key"))
    value = _loads(answer.get("value"))
    objects = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]
    entries = [_as_entry(obj, i) for i, obj in enumerate(objects)]
    if isinstance(key, dict):
        details = key.get("details") if isinstance(key.get("details"), dict) else {}
        return OnDemandResult(
            str(key.get("result") or "unknown"),
            details.get("errorCode") or None,
            details.get("errorMessage") or None,
            entries,
        )
    # The list shape: the outcome is in the objects' statusInfo.
    status = (
        objects[0].get("statusInfo") if objects and isinstance(objects[0].get("statusInfo"), dict) else {}
    )
    details = status.get("details") if isinstance(status.get("details"), dict) else {}
    code = details.get("errorCode") or status.get("errorCode")
    skip = next(
        (
            s["details"].get("SkipReason")
            for e in entries
            for s in e["provisioningSteps"]
            if isinstance(s.get("details"), dict) and s["details"].get("SkipReason")
        ),
        None,
    )
    return OnDemandResult(
        str(status.get("status") or "unknown"),
        code or skip,
        details.get("errorMessage") or status.get("reason") or None,
        entries,
    )
