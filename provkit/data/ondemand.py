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
``provisioningStatusInfo``), so :func:`provkit.data.tables.events_from_records` reads its scoping details like a
log entry's. inference: ``statusInfo`` in the list shape carrying the result (the guide shows the key only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provkit.errors import ConfigError

__all__ = [
    "MAX_GROUP_MEMBERS",
    "OAUTH_APPS_NEEDING_STOP",
    "OnDemandResult",
    "format_on_demand",
    "on_demand_request",
    "read_on_demand",
]

MAX_GROUP_MEMBERS = 5
"""provision-on-demand.md: "The on-demand provisioning request API can only accept a single group with up to 5
members at a time"."""

OAUTH_APPS_NEEDING_STOP = ("gsuite", "googleapps", "box", "workplace", "facebookatwork", "slack")
"""Template ids (as substrings, any case) of apps the documentation names as using OAuth, whose job must be
stopped before provisioning on demand: G Suite, Box, Workplace by Facebook, Slack (provision-on-demand.md)."""

_LINK = "https://learn.microsoft.com/en-us/entra/identity/app-provisioning/provision-on-demand"


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
    status = _object(obj.get("statusInfo"))
    source = _object(obj.get("sourceIdentity"))
    target = _object(obj.get("targetIdentity"))
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


def _object(value: object) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (odd shapes are read as absent)."""
    return value if isinstance(value, dict) else {}


def read_on_demand(answer: object) -> OnDemandResult:
    """The outcome of a provisionOnDemand call from its JSON answer (either documented shape)."""
    if not isinstance(answer, dict):
        return OnDemandResult("unknown")
    key = _loads(answer.get("key"))
    value = _loads(answer.get("value"))
    objects = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, dict)]
    entries = [_as_entry(obj, i) for i, obj in enumerate(objects)]
    if isinstance(key, dict):
        details = _object(key.get("details"))
        return OnDemandResult(
            str(key.get("result") or "unknown"),
            details.get("errorCode") or None,
            details.get("errorMessage") or None,
            entries,
        )
    # The list shape: the outcome is in the objects' statusInfo.
    status = _object(objects[0].get("statusInfo")) if objects else {}
    details = _object(status.get("details"))
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


def _job_stopped(job: dict[str, Any] | None) -> bool:
    """Whether the job is stopped (paused or disabled schedule, or status Paused)."""
    job = job or {}
    schedule = str((job.get("schedule") or {}).get("state") or "").lower()
    code = str((job.get("status") or {}).get("code") or "").lower()
    return schedule in ("disabled", "paused") or code == "paused"


def on_demand_request(
    *,
    rule_id: str,
    object_id: str,
    kind: str = "User",
    members: list[str] | tuple[str, ...] = (),
    job: dict[str, Any] | None = None,
    assigned_groups: set[str] | None = None,
    app: str = "the app",
) -> dict[str, Any]:
    """The provisionOnDemand request body for one user, or one group with up to five of its members (the
    documented ``links.members`` shape), after the documented limits are checked.

    Raises :class:`~provkit.errors.ConfigError` (nothing is sent) when: the app uses OAuth and its job is not
    stopped; a group has more than five members or none; members are given for a user; the group is not
    directly assigned to the app (``assigned_groups``, lower-cased ids, when known).
    """
    kind = "Group" if str(kind).lower() == "group" else "User"
    template = str((job or {}).get("templateId") or "").lower()
    if template and any(name in template for name in OAUTH_APPS_NEEDING_STOP) and not _job_stopped(job):
        raise ConfigError(
            f"{app} ({template}) authorizes with OAuth: the documentation says its provisioning job must be "
            "stopped before provisioning on demand; nothing was sent.",
            remedy="Stop the job (Provisioning > Stop, or POST .../jobs/{id}/pause), provision on demand, then "
            "start it again.",
            link=_LINK,
        )
    subject: dict[str, Any] = {"objectId": object_id, "objectTypeName": kind}
    if kind == "User" and members:
        raise ConfigError(
            "Members are given only with a group; a user is provisioned on demand alone.", link=_LINK
        )
    if kind == "Group":
        if assigned_groups is not None and object_id.lower() not in assigned_groups:
            raise ConfigError(
                f"The group {object_id} is not directly assigned to {app}: on-demand provisioning does not "
                "support nested groups or groups not assigned to the application; nothing was sent.",
                remedy="Assign the group to the app first, or provision its members one by one.",
                link=_LINK,
            )
        unique = list(dict.fromkeys(members))
        if not unique or len(unique) > MAX_GROUP_MEMBERS:
            raise ConfigError(
                f"A group is provisioned on demand with 1 to {MAX_GROUP_MEMBERS} of its members, not "
                f"{len(unique)}; nothing was sent.",
                remedy=f"Choose at most {MAX_GROUP_MEMBERS} members to test; the next cycle provisions the rest.",
                link=_LINK,
            )
        subject["links"] = {"members": [{"objectId": m, "objectTypeName": "User"} for m in unique]}
    return {"parameters": [{"ruleId": rule_id, "subjects": [subject]}]}


def format_on_demand(result: OnDemandResult) -> str:
    """The answer in words: the outcome, then every step of every object, with its details."""
    lines = [result.words]
    for entry in result.entries:
        who = (entry.get("sourceIdentity") or {}).get("displayName") or (
            entry.get("sourceIdentity") or {}
        ).get("id")
        kind = (entry.get("sourceIdentity") or {}).get("identityType") or "object"
        lines.append(f"{kind} {who}:" if who else f"{kind}:")
        for n, step in enumerate(entry.get("provisioningSteps") or [], start=1):
            lines.append(
                f"  {n}. {step.get('name')} [{step.get('provisioningStepType')}] {step.get('status')}: "
                f"{step.get('description') or ''}".rstrip()
            )
            details = _object(step.get("details"))
            for key, value in details.items():
                if str(key).lower() in ("objectid", "id"):
                    continue  # the object is named above; its id adds nothing for the reader
                text = value if isinstance(value, str) else json.dumps(value)
                lines.append(f"       {key}: {text if len(text) <= 200 else text[:197] + '...'}")
    return "\n".join(lines)
