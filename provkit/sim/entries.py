"""Provisioning log entries (provisioningObjectSummary JSON) for one app's cycle, made on demand.

An entry is a pure function of (tenant seed, app, cycle, index): the same request always sees the same entry.
The shapes follow the v1.0 CSDL (reference section 1); step names and details follow the documented examples
(``EntryImport``, ``EntrySynchronizationScoping``, ``EntrySynchronizationAdd``, ``EntryExportAdd``,
``EntrySynchronizationSkip`` with ``SkipReason``, ``ReportableIdentifier``).
"""

from __future__ import annotations

import json
import random
from functools import lru_cache

from provkit.sim import ids
from provkit.sim.apps import App, clause_passes
from provkit.sim.history import Cycle, Subject
from provkit.sim.scenarios import Scenario
from provkit.sim.timefmt import format_ticks

SOURCE_SYSTEM_NAME = "Azure Active Directory"
INITIATOR = {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"}
NOT_ENTITLED_TEXT = (
    "The {kind} '{name}' will be skipped due to the following reasons: 1) This object is not assigned to the "
    "application. If you did not expect the object to be skipped, assign the object to the application or change "
    "your scoping filter to allow all users and groups to be in scope for provisioning. 2) This object does not "
    "have required entitlement for provisioning. If you did not expect the object to be skipped, update the "
    "provisioning scope to 'Sync all users and groups' or assign the object to the application with entitlement "
    "of provisioning category. 3) This object did not pass a scoping filter. If you did not expect the object to "
    "be skipped, please review your scoping filters and ensure that the object passes your specified scoping "
    "criteria."
)


def entry_ids(app: App, cycle: Cycle, i: int) -> tuple[str, str]:
    """The ``id`` and ``changeId`` of entry ``i`` of ``cycle``."""
    codec = app.tenant.codec
    return codec.encode(ids.ENTRY, app.index, cycle.no, i), codec.encode(ids.CHANGE, app.index, cycle.no, i)


@lru_cache(maxsize=65_536)
def _fixed_id(codec: ids.IdCodec, kind: int, a: int, b: int) -> str:
    """An id shared by many entries (a cycle's, the source and target systems'), encoded once."""
    return codec.encode(kind, a, b)


def cycle_id(app: App, cycle: Cycle) -> str:
    """The ``cycleId`` every entry of ``cycle`` carries."""
    return _fixed_id(app.tenant.codec, ids.CYCLE, app.index, cycle.no)


def render_entry(app: App, cycle: Cycle, i: int) -> dict:
    """The provisioningObjectSummary for entry ``i`` of ``cycle``."""
    return _render(app, cycle, i, app.subject_for(cycle, i), full=True)


def render_outcome(app: App, cycle: Cycle, i: int, subject: Subject) -> dict:
    """Entry ``i`` of ``cycle`` about ``subject`` (``app.subject_for(cycle, i)``) without what differs between
    entries with the same outcome: ``modifiedProperties`` empty, ``durationInMilliseconds`` None (both come from
    the entry's own random draws). Everything else is as :func:`render_entry` renders it."""
    return _render(app, cycle, i, subject, full=False)


def _render(app: App, cycle: Cycle, i: int, subject: Subject, full: bool) -> dict:
    tenant = app.tenant
    codec = tenant.codec
    sc = app.scenario
    rng = (
        random.Random((tenant.seed * 2_654_435_761 + app.index * 40_503 + cycle.no) * 1_000_003 + i)
        if full
        else None
    )
    target_name = sc.app
    if subject.kind == "User":
        user = tenant.users.get(subject.index)
        name, source_id, ident = user.display_name, user.id, user.user_principal_name
    else:
        group = tenant.directory.groups[subject.index]
        name, source_id, ident, user = group.display_name, group.id, group.display_name, None
    kind = subject.kind
    outcome = _outcome(app, cycle, subject, i, rng)
    action, status, steps, props, error = outcome
    if rng is None:
        duration = None
    elif action != "other":
        duration = int(rng.lognormvariate(6.8, 0.6))
    else:
        duration = int(rng.lognormvariate(5.0, 0.5))
    target_id = _target_id(codec, app, subject) if _exists_in_target(action, status, steps) else ""
    entry_id, change_id = entry_ids(app, cycle, i)
    entry = {
        "id": entry_id,
        "activityDateTime": format_ticks(cycle.entry_time(i)),
        "tenantId": tenant.tenant_id,
        "jobId": app.job_id,
        "cycleId": cycle_id(app, cycle),
        "changeId": change_id,
        "provisioningAction": action,
        "durationInMilliseconds": duration,
        "initiatedBy": INITIATOR,
        "servicePrincipal": {"id": app.sp_id, "displayName": app.display_name},
        "sourceSystem": {
            "id": _fixed_id(codec, ids.MISC, 0, 2),
            "displayName": SOURCE_SYSTEM_NAME,
            "details": {},
        },
        "targetSystem": {
            "id": _fixed_id(codec, ids.MISC, app.index, 3),
            "displayName": target_name,
            "details": {
                "ApplicationId": app.app_id,
                "ServicePrincipalId": app.sp_id,
                "ServicePrincipalDisplayName": app.display_name,
            },
        },
        "sourceIdentity": {"id": source_id, "displayName": name, "identityType": kind, "details": {}},
        "targetIdentity": {
            "id": target_id,
            "displayName": ident if target_id else "",
            "identityType": sc.target_user_object if kind == "User" else "Group",
            "details": {},
        },
        "provisioningStatusInfo": {"status": status, "errorInformation": error},
        "provisioningSteps": steps,
        "modifiedProperties": props,
    }
    return entry


def _exists_in_target(action: str, status: str, steps: list[dict]) -> bool:
    """Whether the object is in the target after this entry: targetIdentity.id is set whenever it is (the
    documented create example carries the target's id)."""
    if any(s["name"] in ("EntryExportAdd", "EntryExportUpdate") and s["status"] == "success" for s in steps):
        return True  # exported, whatever failed after (a reference)
    if action == "stagedDelete":
        return True  # held back: still in the target
    if status == "skipped":
        return any(s["details"].get("SkipReason") == "RedundantExport" for s in steps)
    if action == "create":
        return status == "success"
    return action in ("update", "disable", "delete", "stagedDelete")


def _target_id(codec: ids.IdCodec, app: App, subject: Subject) -> str:
    raw = codec.encode(ids.MISC, app.index, 9, subject.index + (0 if subject.kind == "User" else 1 << 30))
    return raw.replace("-", "")[:24]


def _step(name: str, step_type: str, status: str, description: str, details: dict | None = None) -> dict:
    return {
        "name": name,
        "provisioningStepType": step_type,
        "status": status,
        "description": description,
        "details": details or {},
    }


def _scope_details(app: App, subject: Subject, assigned: bool, active: bool, in_scope: bool) -> dict:
    """The scoping step's details as the documented log example has them (cross-tenant sync "configure with
    Graph", step 12): four "True"/"False" keys and ScopeEvaluationResult, a JSON object as a string whose keys
    are ``<filter name>.<attribute> <OPERATOR> '<value>'`` and whose values are booleans ("{}" without a filter).
    """
    sc = app.scenario
    kind = subject.kind
    evaluation: dict[str, bool] = {}
    if sc.scoping and kind == "User":
        user = app.tenant.users.get(subject.index)
        for clause in sc.scoping:
            ok = clause_passes(clause.operator, user.attribute(clause.attribute), clause.values)
            # inference: several target values joined with ", " inside the quotes (the docs show one value)
            value = ", ".join(clause.values)
            key = f"{sc.scoping_group_name}.{clause.attribute} {clause.operator}"
            evaluation[f"{key} '{value}'" if value else key] = ok
    return {
        "Active in the source system": str(active),
        "Assigned to the application": str(assigned),
        # "User has the required role" is documented; "Group has the required role" is seen in a public
        # export of a group's entry (inference).
        f"{kind} has the required role": str(assigned),
        "Scoping filter evaluation passed": str(in_scope),
        "ScopeEvaluationResult": json.dumps(evaluation, separators=(",", ":")) if evaluation else "{}",
    }


def _import_step(app: App, subject: Subject, change_type: str, active: bool) -> dict:
    """``EntryImportAdd`` / ``EntryImportUpdate`` with the source attributes in its details, as in the documented
    log example ("Received User '<upn>' change of type (Add) from Azure Active Directory")."""
    kind = subject.kind
    if kind == "User":
        user = app.tenant.users.get(subject.index)
        ident = user.user_principal_name
        details = {
            "objectId": user.id,
            "accountEnabled": str(active),
            "department": user.department or "",
            "displayName": user.display_name,
            "mailNickname": user.attribute("mailNickname") or "",
            "userPrincipalName": user.user_principal_name,
            "IsSoftDeleted": "False",
            "appRoleAssignments": "msiam_access" if app.scenario.scope == "assigned" else "",
        }
        for clause in app.scenario.scoping:  # the attributes the scoping filter reads
            details.setdefault(clause.attribute, user.attribute(clause.attribute) or "")
    else:
        group = app.tenant.directory.groups[subject.index]
        ident = group.display_name
        details = {"objectId": group.id}  # as in a public export of a group's entry (inference)
    return _step(
        f"EntryImport{change_type}",
        "import",
        "success",
        f"Received {kind} '{ident}' change of type ({change_type}) from {SOURCE_SYSTEM_NAME}",
        details,
    )


def _error(
    code: str,
    reason: str,
    category: str = "nonServiceFailure",
    action: str | None = None,
    details: str | None = None,
) -> dict:
    return {
        "errorCode": code,
        "reason": reason,
        "additionalDetails": details,
        "errorCategory": category,
        "recommendedAction": action,
    }


def _outcome(app: App, cycle: Cycle, subject: Subject, i: int, rng: random.Random | None) -> tuple:
    """(action, status, steps, modifiedProperties, errorInformation) for one subject in one cycle."""
    sc = app.scenario
    tenant = app.tenant
    kind = subject.kind
    if kind == "User":
        user = tenant.users.get(subject.index)
        name, ident = user.display_name, user.user_principal_name
    else:
        group = tenant.directory.groups[subject.index]
        name, ident, user = group.display_name, group.display_name, None
    target = sc.app
    cat = subject.category
    incremental = cycle.kind == "incremental"
    change_type = "Update" if incremental else "Add"
    if cat.startswith("leaver-") or cat == "gone-unassigned-deleted":
        return _deprovision(app, subject, cat, ident)
    if cat == "late-manager-in-scope":
        cat, exists_now = "ok", False  # the manager comes into scope: created in the app
    else:
        exists_now = None
    inactive = ("disabled", "disabled-expected", "late-manager")
    import_step = _import_step(app, subject, change_type, cat not in inactive)

    # ---- skips decided before matching ----------------------------------------------------------------------
    if cat in (
        "not-assigned",
        "nested-only",
        "disabled",
        "broken",
        "scope-fail",
        "disabled-expected",
        "group-not-security",
        "late-manager",
    ):
        active = cat not in inactive
        assigned = cat in ("scope-fail", "disabled", "disabled-expected", "late-manager")
        in_scope = cat != "scope-fail"
        details = _scope_details(app, subject, assigned, active, in_scope)
        scoping = _step(
            "EntrySynchronizationScoping",
            "scoping",
            "success" if in_scope else "skipped",
            f"Determine if {kind} in scope by evaluating against each scoping filter",
            details,
        )
        skip = _step(
            "EntrySynchronizationSkip",
            "export",
            "skipped",
            NOT_ENTITLED_TEXT.format(kind=kind, name=ident),
            {"SkipReason": "NotEffectivelyEntitled", "ReportableIdentifier": ident},
        )
        return "create" if not incremental else "update", "skipped", [import_step, scoping, skip], [], None
    if cat == "matching-empty":
        attr = sc.matching_attribute
        code = "ImportSkipped" if subject.index % 2 == 0 else "EntryJoiningPropertyValueIsMissing"
        reason = (
            f"The {kind} '{ident}' was skipped because the matching attribute '{attr}' has no value. "
            f"Every object must have a value for at least one matching attribute."
        )
        match = _step(
            "EntryImportSkipped",
            "matching",
            "skipped",
            reason,
            {"SkipReason": code, "MatchingAttribute": attr, "ReportableIdentifier": ident},
        )
        return (
            "other",
            "skipped",
            [import_step, match],
            [],
            _error(code, reason, "nonServiceFailure", f"Populate '{attr}' on the source object."),
        )
    if cat == "group-matching-empty":
        attr = sc.group_matching_attribute
        reason = (
            f"The Group '{name}' was skipped because its matching attribute '{attr}' is empty; neither the "
            "group nor its members will be provisioned."
        )
        match = _step(
            "EntryImportSkipped",
            "matching",
            "skipped",
            reason,
            {"SkipReason": "ImportSkipped", "MatchingAttribute": attr, "ReportableIdentifier": name},
        )
        return "other", "skipped", [import_step, match], [], _error("ImportSkipped", reason)

    # ---- in scope: scoping passes -------------------------------------------------------------------------
    scoping = _step(
        "EntrySynchronizationScoping",
        "scoping",
        "success",
        f"Determine if {kind} in scope by evaluating against each scoping filter",
        _scope_details(app, subject, sc.scope == "assigned", True, True),
    )
    if cycle.mode == "cred-fail":
        match = _step(
            "EntrySynchronizationUpdate",
            "matching",
            "success",
            f"{kind} '{ident}' will be updated in {target}",
        )
        export = _step(
            "EntryExportUpdate",
            "export",
            "failure",
            f"Failed to update {kind} '{ident}' in {target}",
            {"ReportableIdentifier": ident},
        )
        code, reason = _connector_code(sc, "Unauthorized")
        reason = (
            f"Message: {target} returned an error response with the HTTP status code 401 (Unauthorized). "
            "The credentials used to connect to the application are not valid."
        )
        return (
            "update",
            "failure",
            [import_step, scoping, match, export],
            _props(user, rng, update=True),
            _error(
                code, reason, "nonServiceFailure", "Check the admin credentials in the Provisioning blade."
            ),
        )
    if cycle.mode in ("broken-initial", "escrow-retry") and subject in app.broken_set:
        code = "SchemaAttributeNotFound"
        reason = (
            f"Message: {target} returned an error: the attribute 'costCenter' is not defined in the target "
            "schema. Remove the mapping or add the attribute to the application."
        )
        match = _step(
            "EntrySynchronizationUpdate",
            "matching",
            "success",
            f"{kind} '{ident}' will be updated in {target}",
        )
        flow = _step("EntryAttributeFlow", "processing", "success", "Evaluated attribute mappings")
        export = _step(
            "EntryExportUpdate",
            "export",
            "failure",
            f"Failed to update {kind} '{ident}' in {target}",
            {"ReportableIdentifier": ident},
        )
        return (
            "update",
            "failure",
            [import_step, scoping, match, flow, export],
            _props(user, rng, True),
            _error(code, reason, "nonServiceFailure", "Fix the attribute mapping for costCenter."),
        )
    exists = cycle.mode != "initial-first" if exists_now is None else exists_now
    if "scim-patch" in sc.problems and kind == "Group" and incremental:
        return _scim_patch_refused(app, subject, ident, name, import_step, scoping)
    if cat in ("manager-ref", "member-ref"):
        return _reference_unresolved(app, subject, ident, exists, import_step, scoping, user, rng)
    if cat == "required-missing":
        source, target_attr = sc.required_attributes[0]
        reason = (
            f"The {kind} '{ident}' could not be created in {target}: the required attribute "
            f"'{target_attr}' has no value (source attribute '{source}' is empty)."
        )
        match = _step(
            "EntrySynchronizationAdd",
            "matching",
            "success",
            f"{kind} '{ident}' will be created in {target} ({kind} is active and assigned in "
            f"{SOURCE_SYSTEM_NAME}, but no matching {kind} was found in {target})",
        )
        flow = _step(
            "EntryAttributeFlow",
            "processing",
            "failure",
            reason,
            {"MissingAttribute": target_attr, "ReportableIdentifier": ident},
        )
        return (
            "create",
            "failure",
            [import_step, scoping, match, flow],
            [],
            _error(
                "MandatoryFieldsMissing",
                reason,
                "nonServiceFailure",
                f"Populate '{source}' in Entra ID, or map a default value to '{target_attr}'.",
            ),
        )
    if cat == "conflict":
        code, _ = _connector_code(sc, "EntryConflict")
        reason = (
            f"Message: {target} returned an error response with the HTTP status code 409. This operation "
            "failed because a user or a group already exists with the same name or email."
        )
        match = _step(
            "EntrySynchronizationAdd", "matching", "success", f"{kind} '{ident}' will be created in {target}"
        )
        export = _step(
            "EntryExportAdd",
            "export",
            "failure",
            f"Failed to create {kind} '{ident}' in {target}",
            {"ReportableIdentifier": ident},
        )
        return (
            "create",
            "failure",
            [import_step, scoping, match, export],
            _props(user, rng, False),
            _error(
                code, reason, "nonServiceFailure", "Fix the conflicting values, or the matching attributes."
            ),
        )
    if cat == "duplicate":
        reason = (
            f"More than one {kind} in {target} matched '{ident}' on the matching attribute "
            f"'{sc.matching_target}'."
        )
        match = _step(
            "EntrySynchronizationError", "matching", "failure", reason, {"ReportableIdentifier": ident}
        )
        return (
            "update" if exists else "create",
            "failure",
            [import_step, scoping, match],
            [],
            _error(
                "DuplicateTargetEntries", reason, "nonServiceFailure", "Remove the duplicate in the target."
            ),
        )

    # ---- success paths -------------------------------------------------------------------------------------
    if not exists:
        match = _step(
            "EntrySynchronizationAdd",
            "matching",
            "success",
            f"{kind} '{ident}' will be created in {target} ({kind} is active and assigned in "
            f"{SOURCE_SYSTEM_NAME}, but no matching {kind} was found in {target})",
        )
        flow = _step("EntryAttributeFlow", "processing", "success", "Evaluated attribute mappings")
        export = _step(
            "EntryExportAdd",
            "export",
            "success",
            f"{kind} '{ident}' was created in {target}",
            {"ReportableIdentifier": ident},
        )
        steps = [import_step, scoping, match, flow]
        if kind == "Group":
            steps.append(
                _step(
                    "EntryReferenceResolution",
                    "referenceResolution",
                    "success",
                    "Resolved references to group members",
                )
            )
        steps.append(export)
        props = _props(user, rng, update=False) if user else _group_props(app, subject)
        return "create", "success", steps, props, None
    if app.is_redundant(cycle, i):
        match = _step(
            "EntrySynchronizationNone",
            "matching",
            "success",
            f"{kind} '{ident}' already matches the target; no change required",
        )
        skip = _step(
            "EntrySynchronizationSkip",
            "export",
            "skipped",
            "The state of the user in both the source and target systems already match.",
            {"SkipReason": "RedundantExport", "ReportableIdentifier": ident},
        )
        return "other", "skipped", [import_step, scoping, match, skip], [], None
    match = _step(
        "EntrySynchronizationUpdate", "matching", "success", f"{kind} '{ident}' will be updated in {target}"
    )
    flow = _step("EntryAttributeFlow", "processing", "success", "Evaluated attribute mappings")
    export = _step(
        "EntryExportUpdate",
        "export",
        "success",
        f"{kind} '{ident}' was updated in {target}",
        {"ReportableIdentifier": ident},
    )
    return "update", "success", [import_step, scoping, match, flow, export], _props(user, rng, True), None


def _deprovision(app: App, subject: Subject, cat: str, ident: str) -> tuple:
    """A user leaving the app (reference 3.5): unassigned or soft-deleted -> disable; hard-deleted (30 days
    after the soft delete) -> delete.

    inference: no documented JSON example of a deprovisioning entry exists. The import step names follow the
    documented ``EntryImport<change type>`` pattern, the export step names the documented ``EntryExport<verb>``
    one.
    """
    target = app.scenario.app
    soft = cat in ("leaver-soft-deleted", "leaver-hard-deleted", "gone-unassigned-deleted")
    unassigned = cat in ("leaver-unassigned", "leaver-staged", "gone-unassigned-deleted")
    change = "Delete" if soft else "Update"
    step_import = _import_step(app, subject, change, active=not soft)
    step_import["details"]["IsSoftDeleted"] = str(soft)
    if unassigned:
        step_import["details"]["appRoleAssignments"] = ""
    scoping = _step(
        "EntrySynchronizationScoping",
        "scoping",
        "success",
        "Determine if User in scope by evaluating against each scoping filter",
        _scope_details(app, subject, not unassigned, not soft, True),
    )
    if cat == "gone-unassigned-deleted":
        # inference: a deletion of a user the app no longer manages (unassigned earlier) is evaluated and
        # skipped as not assigned, like any change to an unassigned object; nothing is sent to the app.
        skip = _step(
            "EntrySynchronizationSkip",
            "export",
            "skipped",
            NOT_ENTITLED_TEXT.format(kind="User", name=ident),
            {"SkipReason": "NotEffectivelyEntitled", "ReportableIdentifier": ident},
        )
        return "update", "skipped", [step_import, scoping, skip], [], None
    if cat == "leaver-staged":
        # inference: no documented JSON of a staged deletion exists; the docs name the action StagedDelete.
        threshold = app.scenario.delete_threshold
        staged = _step(
            "EntrySynchronizationSkip",
            "export",
            "skipped",
            f"User '{ident}' will be disabled in {target} once the deletion is approved: this cycle's deletions "
            f"exceed the accidental-deletion threshold ({threshold})",
            {"SkipReason": "StagedDelete", "ReportableIdentifier": ident},
        )
        return "stagedDelete", "skipped", [step_import, scoping, staged], [], None
    if "scim-patch" in app.scenario.problems:
        return _scim_disable_refused(app, subject, ident, step_import, scoping, unassigned)
    if cat == "leaver-hard-deleted":
        export = _step(
            "EntryExportDelete",
            "export",
            "success",
            f"User '{ident}' was deleted in {target} (permanently deleted in {SOURCE_SYSTEM_NAME})",
            {"ReportableIdentifier": ident},
        )
        return "delete", "success", [step_import, scoping, export], [], None
    why = "unassigned from the application" if cat == "leaver-unassigned" else "deleted in the source"
    export = _step(
        "EntryExportUpdate",
        "export",
        "success",
        f"User '{ident}' was disabled in {target} ({why})",
        {"ReportableIdentifier": ident},
    )
    props = [{"displayName": "accountEnabled", "oldValue": "True", "newValue": "False"}]
    return "disable", "success", [step_import, scoping, export], props, None


SCIM_BAD_REQUEST = "SystemForCrossDomainIdentityManagementBadRequest"


def _scim_400(detail: str) -> str:
    """The reason text of a SCIM 400: the .NET status line and the endpoint's SCIM error body.

    inference: the wording follows community reports ("StatusCode: BadRequest ... Web Response: {...}"); the
    error body is the RFC 7644 section 3.12 Error shape."""
    body = json.dumps(
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400", "detail": detail},
        separators=(",", ":"),
    )
    return (
        "StatusCode: BadRequest Message: Processing of the HTTP request resulted in an exception. Please see the "
        "HTTP response returned by the 'Response' property of this exception for details. "
        f"Web Response: {body}"
    )


def _scim_disable_refused(
    app: App, subject: Subject, ident: str, step_import: dict, scoping: dict, unassigned: bool
) -> tuple:
    """A disable the endpoint refuses: the Entra SCIM client's PATCH ("Replace", active as the string
    "False") is not what a strict SCIM 2.0 endpoint accepts (reference 4.3)."""
    target = app.scenario.app
    export = _step(
        "EntryExportUpdate",
        "export",
        "failure",
        f"Failed to disable User '{ident}' in {target}",
        {"ReportableIdentifier": ident},
    )
    reason = _scim_400(
        "Invalid PATCH request: operation 'Replace' is not supported (use 'replace'); attribute 'active' "
        'expects a boolean, got the string "False".'
    )
    props = [{"displayName": "active", "oldValue": "True", "newValue": "False"}]
    return (
        "disable",
        "failure",
        [step_import, scoping, export],
        props,
        _error(SCIM_BAD_REQUEST, reason, "nonServiceFailure", None),
    )


def _scim_patch_refused(
    app: App, subject: Subject, ident: str, name: str, step_import: dict, scoping: dict
) -> tuple:
    """A group membership update whose member removal (a PATCH with a path filter) the endpoint refuses."""
    target = app.scenario.app
    group = app.tenant.directory.groups[subject.index]
    member = app.tenant.users.get(group.user_members[0]) if group.user_members else None
    member_id = member.id if member else "00000000-0000-0000-0000-000000000000"
    match = _step(
        "EntrySynchronizationUpdate", "matching", "success", f"Group '{name}' will be updated in {target}"
    )
    export = _step(
        "EntryExportUpdate",
        "export",
        "failure",
        f"Failed to update Group '{name}' in {target}",
        {"ReportableIdentifier": name},
    )
    reason = _scim_400(
        f"Invalid PATCH request: the path 'members[value eq \"{member_id}\"]' of a 'Remove' operation is not "
        "supported; send the members to remove as the operation's value."
    )
    props = [{"displayName": "members", "oldValue": member_id, "newValue": None}]
    return (
        "update",
        "failure",
        [step_import, scoping, match, export],
        props,
        _error(SCIM_BAD_REQUEST, reason, "nonServiceFailure", None),
    )


REFERENCE_CODE = "UnableToResolveReferenceAttributeValue"


def _reference_unresolved(
    app: App, subject: Subject, ident: str, exists: bool, step_import: dict, scoping: dict, user, rng
) -> tuple:
    """The object is exported but a reference on it (its manager, a group member) cannot be resolved: the
    referenced user is not in the app (not in scope, or not yet).

    inference: the reason text and the step details (PropertyName, SkipReason) follow a public Q&A thread
    quoting the provisioning log; the step name follows the documented EntryReferenceResolution pattern."""
    target = app.scenario.app
    kind = subject.kind
    tenant = app.tenant
    if kind == "User":
        manager = tenant.users.get(app.managers[subject.index])
        other, prop = manager.user_principal_name, "manager"
        reason = (
            f"We were unable to assign {other} as the manager of {ident}. In order to ensure that the references "
            f"are updated properly, you have two options. First, ensure that {other} is in scope for "
            f"provisioning. Provision {other} on-demand and then provision {ident} on-demand. Alternatively, you "
            f"can restart provisioning after ensuring that {other} is in scope for provisioning."
        )
    else:
        member = tenant.users.get(app.late_manager) if app.late_manager is not None else None
        other, prop = (member.user_principal_name if member else "a member"), "members"
        reason = (
            f"We were unable to add {other} as a member of {ident}. In order to ensure that the references are "
            f"updated properly, ensure that {other} is in scope for provisioning, then restart provisioning or "
            f"provision {other} and {ident} on demand."
        )
    verb = "updated" if exists else "created"
    match = _step(
        "EntrySynchronizationUpdate" if exists else "EntrySynchronizationAdd",
        "matching",
        "success",
        f"{kind} '{ident}' will be {verb} in {target}",
    )
    export = _step(
        "EntryExportUpdate" if exists else "EntryExportAdd",
        "export",
        "success",
        f"{kind} '{ident}' was {verb} in {target}",
        {"ReportableIdentifier": ident},
    )
    reference = _step(
        "EntryReferenceResolution",
        "referenceResolution",
        "failure",
        reason,
        {"PropertyName": prop, "SkipReason": REFERENCE_CODE, "ReportableIdentifier": ident},
    )
    props = _props(user, rng, update=exists) if user else _group_props(app, subject)
    return (
        "update" if exists else "create",
        "failure",
        [step_import, scoping, match, export, reference],
        props,
        _error(
            REFERENCE_CODE,
            reason,
            "nonServiceFailure",
            f"Bring {other} into scope, then restart provisioning.",
        ),
    )


def _connector_code(sc: Scenario, base: str) -> tuple[str, str]:
    prefix = sc.connector or "SystemForCrossDomainIdentityManagement"
    return f"{prefix}{base}", base


UPDATABLE = ("jobTitle", "department", "city", "mobilePhone")


def _props(user, rng: random.Random | None, update: bool) -> list[dict]:
    if user is None or rng is None:  # no rng: the properties are not rendered (render_outcome)
        return []
    if update:
        name = UPDATABLE[rng.randrange(len(UPDATABLE))]
        old = user.attribute(name) or None
        new = {
            "jobTitle": "Senior " + (user.job_title or "Specialist"),
            "department": user.department,
            "city": user.city,
            "mobilePhone": f"+1 425 555 {rng.randrange(10000):04d}",
        }[name]
        return [{"displayName": name, "oldValue": old, "newValue": new}]
    values = [
        ("objectId", user.id),
        ("userPrincipalName", user.user_principal_name),
        ("displayName", user.display_name),
        ("mail", user.mail),
        ("givenName", user.given_name),
        ("surname", user.surname),
        ("department", user.department),
        ("jobTitle", user.job_title),
        ("accountEnabled", "True"),
    ]
    return [{"displayName": n, "oldValue": None, "newValue": v} for n, v in values if v is not None]


def _group_props(app: App, subject: Subject) -> list[dict]:
    group = app.tenant.directory.groups[subject.index]
    return [
        {"displayName": "objectId", "oldValue": None, "newValue": group.id},
        {"displayName": "displayName", "oldValue": None, "newValue": group.display_name},
        {"displayName": "mailEnabled", "oldValue": None, "newValue": str(group.mail_enabled)},
        {"displayName": "securityEnabled", "oldValue": None, "newValue": "True"},
    ]
