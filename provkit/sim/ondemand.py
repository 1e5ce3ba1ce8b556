"""provisionOnDemand's answers for a user and for a group, in the documented shapes (reference 2.2 and 1.8)."""

from __future__ import annotations

import functools
import json
import uuid

from provkit.sim.tenant import App, clause_passes
from provkit.sim.timefmt import format_ticks


def _on_demand_step(stamp: str, name: str, kind: str, status: str, description: str, details: dict) -> dict:
    """One step of a provisionOnDemand answer, as the documented example lists them (reference 2.2)."""
    return {
        "name": name,
        "type": kind,
        "status": status,
        "description": description,
        "timestamp": stamp,
        "details": details,
    }


def on_demand_answer(tenant, app: App, user, category: str) -> dict:
    """provisionOnDemand's stringKeyStringValuePair, in one of the two documented shapes.

    - the v1.0 API page's example: ``key`` the JSON of ``{"result", "details": {"errorCode", "errorMessage"}}``
      and ``value`` the JSON of one object with ``provisioningSteps`` (each with ``name``, ``type``, ``status``,
      ``description``, ``timestamp``, ``details``), ``statusInfo``, ``action``, ``sourceIdentity`` ...;
    - the cross-tenant guide's (reference 1.8): ``key``
      "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo" and ``value`` the JSON of a
      list of such objects.

    Apps alternate between them (by index), so a reader must take either. The scoping details use the on-demand
    keys (``IsActive``, ``Assigned``, ``IsEffectivelyEntitledForProvisioning``,
    ``IsInProvisioningScopeDisplayName`` "True"/"False", ``ScopeEvaluationResult``).
    """
    sc = app.scenario
    upn = user.user_principal_name
    stamp = format_ticks(tenant.now_ticks)
    active = category not in ("disabled", "disabled-expected")
    assigned = category not in ("not-assigned", "nested-only", "broken") or sc.scope == "all"
    evaluation: dict[str, bool] = {}
    for clause in sc.scoping:
        ok = clause_passes(clause.operator, user.attribute(clause.attribute), clause.values)
        evaluation[
            f"{sc.scoping_group_name}.{clause.attribute} {clause.operator} '{', '.join(clause.values)}'"
        ] = ok
    in_scope = all(evaluation.values()) if evaluation else True
    entitled = active and (assigned or sc.scope == "all")

    step = functools.partial(_on_demand_step, stamp)

    steps = [
        step(
            "EntryImport",
            "Import",
            "Success",
            f"Retrieved User '{upn}' from Azure Active Directory",
            {
                "objectId": user.id,
                "accountEnabled": str(active),
                "displayName": user.display_name,
                "userPrincipalName": upn,
                "IsSoftDeleted": "False",
            },
        ),
        step(
            "EntrySynchronizationScoping",
            "Scoping",
            "Success",
            "Determine if User in scope by evaluating against each scoping filter",
            {
                "IsActive": str(active),
                "Assigned": str(assigned),
                "IsEffectivelyEntitledForProvisioning": str(entitled),
                "IsInProvisioningScopeDisplayName": str(in_scope),
                "ScopeEvaluationResult": json.dumps(evaluation, separators=(",", ":")),
            },
        ),
    ]
    if not (entitled and in_scope):
        result, code, message = (
            "Skipped",
            "NotEffectivelyEntitled",
            f"The User '{upn}' will be skipped: it is not assigned, not active or not in scope.",
        )
        steps.append(step("EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": code}))
    elif category in App.FAILING:
        code = "EntryConflict" if category == "conflict" else "MandatoryFieldsMissing"
        result, message = "Failure", "The export to the target failed."
        steps.append(step("EntryExportAdd", "Export", "Failure", message, {"ReportableIdentifier": upn}))
    else:
        result, code = "Skipped", "RedundantExport"
        message = "The state of the user in both the source and target systems already match."
        steps.append(step("EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": code}))
    status = {"result": result, "details": {"errorCode": code, "errorMessage": message}}
    record = {
        "action": "Other",
        "changeId": str(uuid.uuid4()),
        "endTime": stamp,
        "modifiedProperties": [],
        "provisioningSteps": steps,
        "reportableIdentifier": upn,
        "startTime": stamp,
        "statusInfo": {"status": result, "errorCode": None if result != "Failure" else code, "reason": None},
        "sourceIdentity": {"id": user.id, "type": "User", "displayName": None, "details": None},
        "sourceSystem": {"id": None, "name": "Azure Active Directory", "details": None},
        "targetIdentity": {"id": None, "type": "User", "displayName": None, "details": None},
        "targetSystem": {"id": None, "name": sc.app, "details": None},
    }
    if app.index % 2:
        return {
            "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
            "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
            "value": json.dumps(
                [record | {"statusInfo": record["statusInfo"] | {"details": status["details"]}}]
            ),
        }
    return {
        "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
        "key": json.dumps(status),
        "value": json.dumps(record),
    }


def on_demand_group_answer(tenant, app: App, group, users: list) -> dict:
    """provisionOnDemand's answer for a group and the chosen members: the group's steps (import, scoping,
    matching, export, member references) in the v1.0 example's shape, then each member as a user would be
    answered (in the list shape).

    inference: the steps of a group on demand are not shown in the docs' JSON; they follow the user example's
    step names with the group's kind and a reference-resolution step for the members."""
    stamp = format_ticks(tenant.now_ticks)
    assigned = group in app.assigned_groups and group.display_name not in app.timeline().unassigned
    provisioned = assigned and app.scenario.provision_groups
    member_ids = set(group.user_members)
    outside = [u for u in users if u.index not in member_ids]

    step = functools.partial(_on_demand_step, stamp)

    steps = [
        step(
            "EntryImport",
            "Import",
            "Success",
            f"Retrieved Group '{group.display_name}' from Azure Active Directory",
            {
                "objectId": group.id,
                "displayName": group.display_name,
                "securityEnabled": str(group.security_enabled),
            },
        ),
        step(
            "EntrySynchronizationScoping",
            "Scoping",
            "Success" if provisioned else "Skipped",
            "Determine if Group in scope by evaluating against each scoping filter",
            {
                "IsActive": "True",
                "Assigned": str(assigned),
                "IsEffectivelyEntitledForProvisioning": str(provisioned),
                "IsInProvisioningScopeDisplayName": str(provisioned),
                "ScopeEvaluationResult": "{}",
            },
        ),
    ]
    if not provisioned:
        code = "NotEffectivelyEntitled"
        message = (
            f"The Group '{group.display_name}' will be skipped: it is not assigned to the application"
            if not assigned
            else f"The Group '{group.display_name}' will be skipped: the job does not provision groups"
        )
        result = "Skipped"
        steps.append(step("EntrySynchronizationSkip", "Export", "Skipped", message, {"SkipReason": code}))
    elif outside:
        code, result = "UnableToResolveReferenceAttributeValue", "Failure"
        message = (
            f"{len(outside)} of the chosen members are not members of '{group.display_name}': "
            + ", ".join(u.user_principal_name for u in outside)
        )
        steps.append(step("EntryReferenceResolution", "ReferenceResolution", "Failure", message, {}))
    else:
        code, result = None, "Success"
        message = f"Group '{group.display_name}' was updated in {app.scenario.app} with {len(users)} members"
        steps.append(
            step(
                "EntryReferenceResolution",
                "ReferenceResolution",
                "Success",
                f"Resolved references to {len(users)} members",
                {"members": ", ".join(u.user_principal_name for u in users)},
            )
        )
        steps.append(
            step(
                "EntryExportUpdate",
                "Export",
                "Success",
                message,
                {"ReportableIdentifier": group.display_name},
            )
        )
    status = {"result": result, "details": {"errorCode": code, "errorMessage": message}}
    record = {
        "action": "Update" if result == "Success" else "Other",
        "changeId": str(uuid.uuid4()),
        "endTime": stamp,
        "modifiedProperties": [],
        "provisioningSteps": steps,
        "reportableIdentifier": group.display_name,
        "startTime": stamp,
        "statusInfo": {"status": result, "errorCode": code if result == "Failure" else None, "reason": None},
        "sourceIdentity": {
            "id": group.id,
            "type": "Group",
            "displayName": group.display_name,
            "details": None,
        },
        "sourceSystem": {"id": None, "name": "Azure Active Directory", "details": None},
        "targetIdentity": {"id": None, "type": "Group", "displayName": None, "details": None},
        "targetSystem": {"id": None, "name": app.scenario.app, "details": None},
    }
    if app.index % 2:
        records = [record | {"statusInfo": record["statusInfo"] | {"details": status["details"]}}]
        for user in users:
            answer = on_demand_answer(tenant, app, user, app.categories.get(user.index, "not-assigned"))
            records.extend(json.loads(answer["value"]) if answer["key"].startswith("Microsoft.") else [])
        return {
            "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
            "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
            "value": json.dumps(records),
        }
    return {
        "@odata.type": "#microsoft.graph.stringKeyStringValuePair",
        "key": json.dumps(status),
        "value": json.dumps(record),
    }
