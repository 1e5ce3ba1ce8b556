"""The synchronization schema of a simulated job: object mappings, attribute mappings, scoping filters.

Shapes follow reference section 2.4: ``synchronizationRules[].objectMappings[].attributeMappings[]`` with
``matchingPriority`` (0 = not a matching attribute; lowest positive value is tried first) and ``scope.groups[]``
whose clauses are ANDed and groups ORed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provkit.sim import ids

if TYPE_CHECKING:
    from provkit.sim.tenant import App, Tenant

USER_MAPPINGS = (
    ("userPrincipalName", "userName"),
    ("mail", 'emails[type eq "work"].value'),
    ("givenName", "name.givenName"),
    ("surname", "name.familyName"),
    ("displayName", "displayName"),
    ("jobTitle", "title"),
    ("department", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
    ("employeeId", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"),
    ("IsSoftDeleted", "active"),
)


def _source(name: str) -> dict:
    if name == "IsSoftDeleted":
        return {
            "expression": 'Switch([IsSoftDeleted], , "False", "True", "True", "False")',
            "name": "Switch",
            "type": "Function",
            "parameters": [],
        }
    return {"expression": f"[{name}]", "name": name, "type": "Attribute", "parameters": []}


def schema_json(tenant: Tenant, app: App) -> dict:
    sc = app.scenario
    mappings: list[dict[str, Any]] = []
    seen_targets = set()
    for source, target in USER_MAPPINGS:
        if source == sc.matching_attribute:
            target = sc.matching_target
        seen_targets.add(target)
        mappings.append(
            {
                "defaultValue": None,
                "exportMissingReferences": False,
                "flowBehavior": "FlowWhenChanged",
                "flowType": "Always",
                "matchingPriority": 1 if source == sc.matching_attribute else 0,
                "targetAttributeName": target,
                "source": _source(source),
            }
        )
    for source, target in sc.required_attributes:
        for m in mappings:
            if m["source"]["name"] == source:
                m["targetAttributeName"] = target
        if target not in seen_targets and not any(m["source"]["name"] == source for m in mappings):
            mappings.append(
                {
                    "defaultValue": None,
                    "exportMissingReferences": False,
                    "flowBehavior": "FlowWhenChanged",
                    "flowType": "Always",
                    "matchingPriority": 0,
                    "targetAttributeName": target,
                    "source": _source(source),
                }
            )
    if sc.name == "escrow-quarantine":
        mappings.append(
            {
                "defaultValue": None,
                "exportMissingReferences": False,
                "flowBehavior": "FlowWhenChanged",
                "flowType": "Always",
                "matchingPriority": 0,
                "targetAttributeName": "costCenter",
                "source": _source("department"),
            }
        )
    scope = None
    if sc.scoping:
        scope = {
            "categoryFilterGroups": [],
            "inputFilterGroups": [],
            "groups": [
                {
                    "name": sc.scoping_group_name,
                    "clauses": [
                        {
                            "operatorName": c.operator,
                            "sourceOperandName": c.attribute,
                            "targetOperand": {"values": list(c.values)},
                        }
                        for c in sc.scoping
                    ],
                }
            ],
        }
    object_mappings = [
        {
            "enabled": True,
            "flowTypes": "Add, Update, Delete",
            "metadata": [],
            "name": "Provision Azure Active Directory Users",
            "sourceObjectName": "User",
            "targetObjectName": sc.target_user_object,
            "attributeMappings": mappings,
            "scope": scope,
        },
        {
            "enabled": sc.provision_groups,
            "flowTypes": "Add, Update, Delete",
            "metadata": [],
            "name": "Provision Azure Active Directory Groups",
            "sourceObjectName": "Group",
            "targetObjectName": "Group",
            "attributeMappings": [
                {
                    "defaultValue": None,
                    "exportMissingReferences": False,
                    "flowBehavior": "FlowWhenChanged",
                    "flowType": "Always",
                    "matchingPriority": 1,
                    "targetAttributeName": "externalId"
                    if sc.group_matching_attribute == "mail"
                    else "displayName",
                    "source": _source(sc.group_matching_attribute),
                },
                {
                    "defaultValue": None,
                    "exportMissingReferences": False,
                    "flowBehavior": "FlowWhenChanged",
                    "flowType": "Always",
                    "matchingPriority": 0,
                    "targetAttributeName": "members",
                    "source": _source("members"),
                },
            ],
            "scope": None,
        },
    ]
    assert tenant.now is not None  # Tenant.__post_init__ sets it
    return {
        "id": app.job_id,
        "version": f"date:{tenant.now.strftime('%Y-%m-%dT%H:%M:%SZ')}~{ids.IdCodec(tenant.seed).hex32(ids.MISC, app.index, 5)[:8]}",
        "synchronizationRules": [
            {
                "id": f"{sc.template_id}.rule",
                "name": f"USER_OUTBOUND_{sc.template_id.upper()}",
                "editable": True,
                "priority": 1,
                "sourceDirectoryName": "Azure Active Directory",
                "targetDirectoryName": sc.app,
                # The scope (SyncAll) is a synchronization secret that no GET returns; the rule metadata
                # holds these two keys (reference 1.8; the value casing is an inference).
                "metadata": [
                    {"key": "defaultSourceObjectMappings", "value": "true"},
                    {"key": "supportsProvisionOnDemand", "value": "true"},
                ],
                "containerFilter": {"includedContainers": []},
                "groupFilter": {"includedGroups": []},
                "objectMappings": object_mappings,
            }
        ],
        "directories": [
            {
                "id": "aad",
                "name": "Azure Active Directory",
                "discoverabilities": "None",
                "readOnly": True,
                "objects": [],
            },
            {
                "id": sc.template_id,
                "name": sc.app,
                "discoverabilities": "AttributeNames",
                "readOnly": False,
                "objects": [],
            },
        ],
    }
