"""Checks beyond the troubleshooting guide: each new scenario of the simulated tenant raises its check (ground
truth from the simulator's own bookkeeping), and small hand-built cases show where each check must stay quiet."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from provkit.analysis.checks import Finding, run_checks
from provkit.analysis.checks.deprovision import leaving_events
from provkit.analysis.checks.facts import gather
from provkit.analysis.checks.skipped import skip_table
from provkit.data.evidence import Evidence
from provkit.data.tables import events_from_records, jobs_from_records
from provkit.sim.evidence import from_simulator
from provkit.sim.stories import STORY_USERS
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _scenario(name: str, users: int = 2000):
    tenant = Tenant(seed=7, users_count=users, days=7, now=NOW, scenarios=(name,))
    app = tenant.apps[0]
    return tenant, app, from_simulator(tenant, app)


def _checks(findings: list[Finding]) -> dict[str, Finding]:
    out: dict[str, Finding] = {}
    for f in findings:
        assert f.check not in out, f"two findings for {f.check}"
        out[f.check] = f
    return out


@pytest.fixture(scope="module")
def scim_patch():
    return _scenario("scim-patch-incompatible")


@pytest.fixture(scope="module")
def deletion():
    return _scenario("deletion-threshold")


@pytest.fixture(scope="module")
def managers():
    return _scenario("manager-references")


@pytest.fixture(scope="module")
def sync_all():
    return _scenario("sync-all")


@pytest.fixture(scope="module")
def leavers():
    return _scenario("deprovisioning")


@pytest.fixture(scope="module")
def not_security():
    return _scenario("group-not-security-enabled")


# ---------------------------------------------------------------------------------------------------------
# scenarios


def test_scim_patch_scenario_names_the_refused_patches_and_the_flag(scim_patch):
    _tenant, _app, ev = scim_patch
    found = _checks(run_checks(ev))
    finding = found["failures.scim-incompatible"]
    assert finding.severity == "error"
    refused = {row["refused"].split(" (")[0] for row in finding.evidence}
    assert refused == {"disable", "group member removal"}
    assert "aadOptscim062020" in finding.remedy and "SCIM validator" in finding.remedy
    assert "customappsso" not in finding.remedy  # the job is a scim job
    # a 400 on a PATCH is not a credentials problem
    assert "credentials.target-rejected" not in found


def test_deletion_threshold_scenario_stages_the_unassigned_groups_users(deletion):
    tenant, app, ev = deletion
    finance = tenant.directory.by_name["Finance"]
    expected = {tenant.users.get(u).id for u in finance.user_members if app.categories.get(u) == "ok"}
    staged = ev.events[ev.events["action"] == "stageddelete"]
    assert set(staged["source_id"]) == expected
    assert len(expected) > app.scenario.delete_threshold
    found = _checks(run_checks(ev))
    # the unassigned group's members were exported before: that is no sign of "sync all"
    assert "scope.sync-all" not in found
    assert found["quarantine.too-many-deletes"].severity == "error"
    assert found["quarantine.too-many-deletes"].count == len(expected)
    assert ev.job["status"]["quarantine"]["reason"] == "TooManyDeletes"
    assert {a["principalDisplayName"] for a in ev.assignments if a["principalType"] == "Group"} == {
        "Human Resources"
    }
    # staged users are not skips to explain
    assert not set(skip_table(gather(ev))["object_id"]) & expected


def test_manager_references_are_split_and_the_late_manager_asks_for_a_restart(managers):
    tenant, app, ev = managers
    finding = _checks(run_checks(ev))["references.unresolved"]
    rows = [r for r in finding.evidence if "property" in r]
    assert sum(r["property"] == "manager" for r in rows) == len(app.managers)
    assert sum(r["property"] == "members" for r in rows) == len(app.member_ref_groups)
    late = tenant.users.get(app.late_manager).user_principal_name
    came = {r["references"] for r in rows if r["came_into_scope"]}
    assert came == {late}
    never = {r["references"] for r in rows if not r["came_into_scope"]}
    assert never and late not in never
    assert "restart provisioning" in finding.title and "known issues" in finding.remedy
    escrows = next(r for r in finding.evidence if "countEscrowedRaw" in r)
    # the unresolved references stay escrowed: in the raw count, not in the one quarantine reads
    assert escrows["countEscrowedRaw"] - escrows["countEscrowed"] == len(app.managers) + len(
        app.member_ref_groups
    )
    assert "escrows raw" in finding.title


def test_sync_all_scenario_says_how_it_knows_and_that_the_switch_needs_a_restart(sync_all):
    _tenant, _app, ev = sync_all
    found = _checks(run_checks(ev))
    scope = found["scope.sync-all"]
    assert scope.severity == "info" and "although 'Assigned to the application' was False" in scope.title
    switch = found["scope.switch-needs-restart"]
    assert switch.severity == "warning" and "still show 'Sync all'" in switch.title
    assert "Restart provisioning" in switch.remedy


def test_deprovisioning_scenario_tells_pending_and_never_deleted_users(leavers):
    tenant, app, ev = leavers
    found = _checks(run_checks(ev))
    stories = app.story_users
    ids = {story: {tenant.users.get(u).id for u, s in stories.items() if s == story} for story in STORY_USERS}
    pending = {r["object_id"] for r in found["deprovision.pending-hard-delete"].evidence}
    assert ids["soft-pending"] <= pending
    assert not ids["soft-then-hard"] & pending  # deleted at the hard delete already
    never = found["deprovision.unassigned-never-deleted"]
    assert {r["object_id"] for r in never.evidence} == ids["unassigned-then-deleted"]
    assert "deprovision.soft-delete-not-mapped" not in found  # the simulated schema maps IsSoftDeleted
    assert "deprovision.skip-out-of-scope" not in found
    # soft-deleted users skipped later are not reported as disabled-in-source skips
    assert "skipped.disabled-in-source" not in found


@pytest.mark.parametrize("name", ["deprovisioning", "healthy", "sync-all", "scim-patch-incompatible"])
def test_a_hard_delete_always_follows_a_soft_delete_of_the_same_user(name):
    _tenant, _app, ev = _scenario(name, users=1000)
    table = leaving_events(gather(ev))
    for object_id, group in table.groupby("object_id"):
        whats = list(group["what"])
        if "deleted" in whats:
            assert "soft-deleted" in whats[: whats.index("deleted")], (object_id, whats)


def test_group_not_security_enabled_scenario(not_security):
    tenant, app, ev = not_security
    found = _checks(run_checks(ev))
    finding = found["skipped.group-not-security-enabled"]
    expected = {tenant.users.get(u).id for u, c in app.categories.items() if c == "group-not-security"}
    table = skip_table(gather(ev))
    assert set(table.loc[table["cause"] == "skipped.group-not-security-enabled", "object_id"]) == expected
    assert finding.count == len(expected) and "'Design Guild'" in finding.title
    assert "skipped.assignment-broken" not in found  # re-adding the assignment would not help
    assert any("group-post-approleassignments" in link for link in finding.links)


@pytest.mark.parametrize(
    ("name", "check"),
    [
        ("scim-patch-incompatible", "failures.scim-incompatible"),
        ("deletion-threshold", "quarantine.too-many-deletes"),
        ("manager-references", "references.unresolved"),
        ("sync-all", "scope.switch-needs-restart"),
        ("deprovisioning", "deprovision.unassigned-never-deleted"),
        ("group-not-security-enabled", "skipped.group-not-security-enabled"),
    ],
)
def test_each_new_check_fires_only_on_its_scenario(name, check, demo_checks):
    """Across the whole demo tenant, each new check fires on its scenario and on no other app."""
    for scenario, checks in demo_checks.items():
        assert (check in checks) == (scenario == name), (scenario, check)


@pytest.fixture(scope="module")
def demo_checks() -> dict[str, set[str]]:
    tenant = Tenant(seed=7, users_count=1500, days=7, now=NOW)
    return {
        app.scenario.name: {f.check for f in run_checks(from_simulator(tenant, app))} for app in tenant.apps
    }


# ---------------------------------------------------------------------------------------------------------
# hand-built cases

_n = count()


def e(
    user: str,
    *,
    action: str = "update",
    status: str = "success",
    minutes_ago: float = 60,
    code: str | None = None,
    reason: str | None = None,
    skip: str | None = None,
    assigned: bool = True,
    active: bool = True,
    soft_deleted: bool = False,
    target_id: str = "",
    properties: list[dict] | None = None,
    extra_steps: list[dict] | None = None,
    target_type: str = "User",
) -> dict:
    n = next(_n)
    steps = [
        {
            "name": "EntryImportUpdate",
            "provisioningStepType": "import",
            "status": "success",
            "details": {"accountEnabled": str(active), "IsSoftDeleted": str(soft_deleted)},
        },
        {
            "name": "EntrySynchronizationScoping",
            "provisioningStepType": "scoping",
            "status": "success",
            "details": {
                "Active in the source system": str(active),
                "Assigned to the application": str(assigned),
                "User has the required role": str(assigned),
                "Scoping filter evaluation passed": "True",
                "ScopeEvaluationResult": "{}",
            },
        },
    ]
    last = {"ReportableIdentifier": f"{user}@contoso.com"}
    if skip:
        last["SkipReason"] = skip
    steps.append(
        {"name": "EntryExportUpdate", "provisioningStepType": "export", "status": status, "details": last}
    )
    steps += extra_steps or []
    when = NOW - timedelta(minutes=minutes_ago)
    return {
        "id": f"x{n}",
        "activityDateTime": when.isoformat().replace("+00:00", "Z"),
        "jobId": "job",
        "cycleId": f"c{n}",
        "changeId": f"ch{n}",
        "provisioningAction": action,
        "sourceIdentity": {"id": user, "displayName": user.title(), "identityType": "User"},
        "targetIdentity": {"id": target_id, "displayName": "", "identityType": target_type},
        "provisioningStatusInfo": {
            "status": status,
            "errorInformation": {"errorCode": code, "reason": reason} if code or reason else None,
        },
        "provisioningSteps": steps,
        "modifiedProperties": properties or [],
    }


def evidence(
    entries=(), *, template="scim", job_id="scim.abc.def", audits=(), schema=None, groups=None, assignments=()
) -> Evidence:
    job = {
        "id": job_id,
        "templateId": template,
        "schedule": {"interval": "PT40M", "state": "Active"},
        "status": {"code": "Active", "lastExecution": None, "quarantine": None, "progress": []},
    }
    return Evidence(
        tenant_id="t",
        service_principal_id="sp",
        app_id=None,
        display_name="Fabrikam",
        tables=events_from_records(list(entries)),
        jobs=jobs_from_records([job], snapshot_time=NOW, service_principal_id="sp"),
        job=job,
        schema=schema,
        assignments=list(assignments),
        groups=groups or {},
        audits=list(audits),
        now=NOW,
    )


BAD_400 = 'StatusCode: BadRequest Message: Web Response: {"status":"400","detail":"expects a boolean"}'


def _has(ev: Evidence, check: str) -> bool:
    return any(f.check == check for f in run_checks(ev))


def test_scim_incompatible_advice_follows_the_job_kind():
    disable = e(
        "ann",
        action="disable",
        status="failure",
        code="SystemForCrossDomainIdentityManagementBadRequest",
        reason=BAD_400,
    )
    old = run_checks(evidence([disable], template="customappsso", job_id="customappsso.abc"))
    finding = next(f for f in old if f.check == "failures.scim-incompatible")
    assert "new job" in finding.remedy and "'scim' template" in finding.remedy
    assert "boolean sent as a string" in finding.title


@pytest.mark.parametrize(
    "entries",
    [
        # a 400 from a gallery app that is not SCIM: a different situation
        [e("ann", status="failure", code="SalesforceBadRequest", reason="StatusCode: BadRequest")],
        # a SCIM app failing for another reason
        [
            e(
                "ann",
                status="failure",
                code="SystemForCrossDomainIdentityManagementEntryConflict",
                reason="HTTP status code 409",
            )
        ],
        # refused once, fixed since
        [
            e(
                "ann",
                action="disable",
                status="failure",
                code="SystemForCrossDomainIdentityManagementBadRequest",
                reason=BAD_400,
                minutes_ago=120,
            ),
            e("ann", action="disable", minutes_ago=30),
        ],
    ],
)
def test_scim_incompatible_stays_quiet(entries):
    template = (
        "salesforce"
        if entries[0]["provisioningStatusInfo"]["errorInformation"]["errorCode"].startswith("Salesforce")
        else "scim"
    )
    job_id = "SalesforceOutDelta.abc" if template == "salesforce" else "scim.abc.def"
    assert not _has(evidence(entries, template=template, job_id=job_id), "failures.scim-incompatible")


def _audit(activity: str, minutes_ago: float, props: list[dict] | None = None) -> dict:
    return {
        "activityDisplayName": activity,
        "activityDateTime": (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z"),
        "targetResources": [{"id": "sp", "type": "ServicePrincipal", "modifiedProperties": props or []}],
        "additionalDetails": [],
    }


SWITCH = [{"displayName": "SyncAll", "oldValue": None, "newValue": '"False"'}]


@pytest.mark.parametrize(
    ("audits", "fires"),
    [
        ([_audit("Update provisioning setting or credentials", 300, SWITCH)], True),
        (
            [
                _audit("Update provisioning setting or credentials", 300, SWITCH),
                _audit("Enable/restart provisioning configuration", 200),
            ],
            False,
        ),
        (
            [
                _audit(
                    "Update provisioning setting or credentials",
                    300,
                    [{"displayName": "SyncAll", "newValue": '"True"'}],
                )
            ],
            False,
        ),
        (
            [
                _audit(
                    "Update provisioning setting or credentials",
                    300,
                    [{"displayName": "Secret", "newValue": '"SecretToken"'}],
                )
            ],
            False,
        ),
        ([], False),
    ],
)
def test_scope_switch_needs_a_restart_only_when_none_followed(audits, fires):
    assert _has(evidence([e("ann")], audits=audits), "scope.switch-needs-restart") is fires


def test_scope_sync_all_says_unknown_when_the_logs_do_not_settle_it_and_nothing_without_logs():
    found = {f.check: f for f in run_checks(evidence([e("ann")]))}
    assert "Scope unknown" in found["scope.sync-all"].title
    assert not _has(evidence([]), "scope.sync-all")
    skipped = e("bob", status="skipped", skip="NotEffectivelyEntitled", assigned=False)
    assert not _has(evidence([skipped]), "scope.sync-all")  # "assigned": skipped.not-assigned says it


def _ref(user: str, other: str, prop: str, minutes_ago: float) -> dict:
    reason = f"We were unable to assign {other} as the manager of {user}@contoso.com."
    step = {
        "name": "EntryReferenceResolution",
        "provisioningStepType": "referenceResolution",
        "status": "failure",
        "details": {"PropertyName": prop, "SkipReason": "UnableToResolveReferenceAttributeValue"},
    }
    return e(
        user,
        action="create",
        status="failure",
        code="UnableToResolveReferenceAttributeValue",
        reason=reason,
        minutes_ago=minutes_ago,
        extra_steps=[step],
    )


def test_references_came_into_scope_only_when_created_after_the_failure():
    boss_before = e("boss", action="create", minutes_ago=500)
    found = run_checks(evidence([boss_before, _ref("ann", "boss@contoso.com", "manager", 300)]))
    finding = next(f for f in found if f.check == "references.unresolved")
    assert (
        "came into" not in finding.title and "bring the referenced user into scope" in finding.remedy.lower()
    )
    boss_after = e("boss", action="create", minutes_ago=100)
    found = run_checks(evidence([_ref("ann", "boss@contoso.com", "manager", 300), boss_after]))
    finding = next(f for f in found if f.check == "references.unresolved")
    assert "came into scope later" in finding.title


def test_references_stay_quiet_once_resolved():
    entries = [_ref("ann", "boss@contoso.com", "manager", 300), e("ann", minutes_ago=100)]
    assert not _has(evidence(entries), "references.unresolved")


def test_deprovision_checks_stay_quiet_when_the_story_is_complete():
    soft = e("ann", action="disable", soft_deleted=True, active=False, minutes_ago=3000, target_id="t1")
    hard = e("ann", action="delete", soft_deleted=True, active=False, minutes_ago=60, target_id="t1")
    unassigned = e("bob", action="disable", assigned=False, minutes_ago=600, target_id="t2")
    ev = evidence([soft, hard, unassigned])
    checks = {f.check for f in run_checks(ev)}
    assert not checks & {
        "deprovision.pending-hard-delete",
        "deprovision.unassigned-never-deleted",
        "deprovision.skip-out-of-scope",
    }


def test_skip_out_of_scope_pattern_and_its_absence():
    created = e("ann", action="create", minutes_ago=3000, target_id="t1")
    kept = e(
        "ann", status="skipped", skip="NotEffectivelyEntitled", assigned=False, minutes_ago=60, target_id="t1"
    )
    assert _has(evidence([created, kept]), "deprovision.skip-out-of-scope")
    disabled = e("ann", action="disable", assigned=False, minutes_ago=600, target_id="t1")
    assert not _has(evidence([created, disabled, kept]), "deprovision.skip-out-of-scope")
    never_created = e("bob", status="skipped", skip="NotEffectivelyEntitled", assigned=False, target_id="")
    assert not _has(evidence([never_created]), "deprovision.skip-out-of-scope")


def _schema(with_soft_delete: bool) -> dict:
    mappings = [
        {
            "source": {"name": "userPrincipalName", "expression": "[userPrincipalName]"},
            "targetAttributeName": "userName",
            "matchingPriority": 1,
        }
    ]
    if with_soft_delete:
        mappings.append(
            {
                "source": {"name": "Not", "expression": "Not([IsSoftDeleted])"},
                "targetAttributeName": "active",
                "matchingPriority": 0,
            }
        )
    else:
        mappings.append(
            {
                "source": {"name": "accountEnabled", "expression": "[accountEnabled]"},
                "targetAttributeName": "active",
                "matchingPriority": 0,
            }
        )
    return {
        "synchronizationRules": [
            {"objectMappings": [{"sourceObjectName": "User", "enabled": True, "attributeMappings": mappings}]}
        ]
    }


def test_soft_delete_not_mapped():
    assert _has(evidence([e("ann")], schema=_schema(False)), "deprovision.soft-delete-not-mapped")
    assert not _has(evidence([e("ann")], schema=_schema(True)), "deprovision.soft-delete-not-mapped")
    assert not _has(evidence([e("ann")]), "deprovision.soft-delete-not-mapped")  # no schema: unknown


def _groups(**flags) -> tuple[list[dict], dict]:
    assignments, groups = [], {}
    for name, (security, types, members) in flags.items():
        gid = f"g-{name}"
        assignments.append(
            {
                "principalType": "Group",
                "principalId": gid,
                "principalDisplayName": name,
                "createdDateTime": "2026-01-01T00:00:00Z",
            }
        )
        groups[gid] = {
            "display_name": name,
            "security_enabled": security,
            "group_types": types,
            "direct": members,
            "transitive": members,
        }
    return assignments, groups


def _cause(ev: Evidence) -> str:
    table = skip_table(gather(ev))
    assert len(table) == 1
    return table.iloc[0]["cause"]


def test_not_effectively_entitled_looks_at_the_group_first():
    skipped = e("ann", status="skipped", skip="NotEffectivelyEntitled", assigned=False)
    a, g = _groups(Guild=(False, ["Unified"], ["ann"]))
    assert _cause(evidence([skipped], assignments=a, groups=g)) == "skipped.group-not-security-enabled"
    # also a member of a security group: the assignment record is what is wrong
    a, g = _groups(Guild=(False, ["Unified"], ["ann"]), Staff=(True, [], ["ann"]))
    assert _cause(evidence([skipped], assignments=a, groups=g)) == "skipped.assignment-broken"
    # securityEnabled not known: not taken as false
    a, g = _groups(Guild=(None, [], ["ann"]))
    assert _cause(evidence([skipped], assignments=a, groups=g)) == "skipped.assignment-broken"


def test_broken_assignment_first_rules_out_a_dynamic_group_and_a_fresh_assignment():
    skipped = e("ann", status="skipped", skip="NotEffectivelyEntitled", assigned=False, minutes_ago=30)
    a, g = _groups(Sales=(True, ["DynamicMembership"], ["ann"]))
    found = {f.check: f for f in run_checks(evidence([skipped], assignments=a, groups=g))}
    broken = found["skipped.assignment-broken"]
    assert "dynamic group" in broken.evidence[0]["words"]
    assert broken.remedy.startswith("First rule out")
    fresh = [
        {
            "principalType": "User",
            "principalId": "ann",
            "principalDisplayName": "Ann",
            "createdDateTime": (NOW - timedelta(minutes=50)).isoformat().replace("+00:00", "Z"),
        }
    ]
    found = {f.check: f for f in run_checks(evidence([skipped], assignments=fresh))}
    assert "20 min before this entry" in found["skipped.assignment-broken"].evidence[0]["words"]
    old = [dict(fresh[0], createdDateTime="2026-01-01T00:00:00Z")]
    found = {f.check: f for f in run_checks(evidence([skipped], assignments=old))}
    assert not found["skipped.assignment-broken"].remedy.startswith("First rule out")


def test_group_facts_from_the_simulator_carry_security_and_types(not_security):
    _tenant, _app, ev = not_security
    by_name = {g["display_name"]: g for g in ev.groups.values()}
    assert by_name["Design Guild"]["security_enabled"] is False
    assert by_name["Design Guild"]["group_types"] == ["Unified"]
    assert by_name["Legal"]["security_enabled"] is True
    assert json.dumps(ev.groups)  # plain data


def test_explain_tells_each_deprovisioning_story(leavers):
    from provkit.analysis.checks import explain, format_explanation

    tenant, app, ev = leavers
    told = {}
    for u, story in app.story_users.items():
        told[story] = explain(ev, tenant.users.get(u).user_principal_name)
    hard = told["soft-then-hard"]
    assert "disabled in the app" in hard.deprovisioning and "at the hard delete on" in hard.deprovisioning
    assert "days after the soft delete" in hard.deprovisioning and hard.check is None
    pending = told["soft-pending"]
    assert (
        pending.check == "deprovision.pending-hard-delete"
        and "due at the hard delete" in pending.deprovisioning
    )
    never = told["unassigned-then-deleted"]
    assert never.check == "deprovision.unassigned-never-deleted"
    assert "never deleted there" in never.deprovisioning and "by hand" in never.remedy
    assert "Deprovisioning: unassigned from the app" in format_explanation(never)
    assert never.as_dict()["deprovisioning"] == never.deprovisioning


def test_a_just_created_job_is_in_the_documented_brand_new_state_and_yields_no_bogus_finding():
    from provkit.analysis import cycles

    tenant, app, ev = _scenario("just-created", users=500)
    status = ev.job["status"]
    assert ev.job["schedule"] == {"expiration": None, "interval": "PT40M", "state": "Disabled"}
    assert (
        status["code"] == "Paused"
        and status["progress"] == []
        and status["synchronizedEntryCountByType"] == []
    )
    assert all(
        status[k] is None
        for k in ("lastExecution", "lastSuccessfulExecution", "lastSuccessfulExecutionWithExports")
    )
    assert (
        status["steadyStateFirstAchievedTime"]
        == status["steadyStateLastAchievedTime"]
        == "0001-01-01T00:00:00Z"
    )
    assert ev.events.empty and ev.audits == []
    assert cycles.cycles_table(ev).empty
    found = _checks(run_checks(ev))
    assert set(found) == {"start.not-started", "working.summary"}
    assert "0001" not in " ".join(f.title for f in found.values())


def test_a_stopped_jobs_empty_dated_quarantine_block_is_no_quarantine():
    from provkit.analysis import cycles

    tenant, app, ev = _scenario("paused", users=500)
    block = ev.job["status"]["quarantine"]
    assert block["currentBegan"] == block["nextAttempt"] == block["seriesBegan"] == ""
    row = ev.jobs.iloc[-1]
    assert all(
        row[c] is None or row[c] != row[c] for c in ("quarantine_current_began", "quarantine_series_began")
    )
    found = _checks(run_checks(ev))
    assert not {"quarantine.active", "credentials.quarantined"} & set(found)
    assert found["start.paused"].severity == "warning"
    assert not cycles.cycles_table(ev).empty


def test_leavers_table_and_first_leaver_for_the_notebook(leavers):
    from provkit.analysis.checks.deprovision import first_leaver, leavers_table

    tenant, app, ev = leavers
    table = leavers_table(ev)
    never = {
        tenant.users.get(u).user_principal_name
        for u, s in app.story_users.items()
        if s == "unassigned-then-deleted"
    }
    assert never <= set(table.index)
    assert table.loc[sorted(never), "deleted_unmanaged"].notna().all()
    assert table.loc[sorted(never), "deleted"].isna().all()
    chosen = first_leaver(ev)
    assert chosen in {
        tenant.users.get(u).id for u, s in app.story_users.items() if s == "unassigned-then-deleted"
    }
    empty = evidence([e("ann")])
    assert leavers_table(empty).empty and first_leaver(empty) is None


def test_an_unassigned_user_exported_before_its_disable_is_no_sign_of_sync_all():
    from provkit.analysis.syncscope import infer_sync_scope

    exported = e("ann", action="create", minutes_ago=600)
    disabled = e("ann", action="disable", assigned=False, minutes_ago=60)
    tables = events_from_records([exported, disabled])
    assert infer_sync_scope(tables.events, tables.steps, {"bob"}).value != "all"
    tables = events_from_records([exported])
    assert infer_sync_scope(tables.events, tables.steps, {"bob"}).value == "all"


@pytest.mark.parametrize(
    ("reason", "fires"),
    [
        ("The remote server returned an error: (401) Unauthorized.", True),
        ("StatusCode: Unauthorized Message: the bearer token was rejected", True),
        ("StatusCode: BadRequest Message: invalid attribute", False),
    ],
)
def test_target_rejected_reads_dotnet_status_texts_on_unknown_codes(reason, fires):
    failed = e("ann", status="failure", code="AcmeExportFailure", reason=reason, minutes_ago=30)
    assert (
        _has(evidence([failed], template="acme", job_id="AcmeOutDelta.x"), "credentials.target-rejected")
        is fires
    )
