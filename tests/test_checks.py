"""Checks turn evidence into findings: each simulated scenario yields its expected findings (ground truth from
the simulator's own bookkeeping), the healthy app yields no warning or error, and each check has unit tests on
small hand-built tables, including the cases that must not fire."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from itertools import count

import pandas as pd
import pytest

from provkit.analysis.checks import Finding, findings_json, format_findings, run_checks
from provkit.analysis.checks import skipped as skipped_module
from provkit.analysis.checks.facts import gather
from provkit.analysis.checks.quarantine import escrow_verdict
from provkit.analysis.checks.skipped import skip_table
from provkit.analysis.checks.start import initial_cycle_eta, start_state
from provkit.data.evidence import Evidence
from provkit.data.tables import events_from_records, jobs_from_records
from provkit.errors import GraphError, PermissionDeniedError
from provkit.sim.evidence import from_simulator
from provkit.sim.tenant import Tenant, credential_error

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------
# scenarios


def _scenario(name: str, users: int = 2000) -> tuple[Tenant, object, Evidence]:
    tenant = Tenant(seed=7, users_count=users, days=7, now=NOW, scenarios=(name,))
    app = tenant.apps[0]
    return tenant, app, from_simulator(tenant, app)


@pytest.fixture(scope="module")
def healthy():
    return _scenario("healthy")


@pytest.fixture(scope="module")
def initial():
    return _scenario("initial-cycle-running")


@pytest.fixture(scope="module")
def bad_credentials():
    return _scenario("bad-credentials")


@pytest.fixture(scope="module")
def skipped_users():
    return _scenario("skipped-users")


@pytest.fixture(scope="module")
def escrow():
    return _scenario("escrow-quarantine", users=6000)


@pytest.fixture(scope="module")
def paused():
    return _scenario("paused")


@pytest.fixture(scope="module")
def disabled():
    return _scenario("disabled")


def _ids(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.check, f.severity) for f in findings}


def _one(findings: list[Finding], check: str) -> Finding:
    found = [f for f in findings if f.check == check]
    assert len(found) == 1, [f.check for f in findings]
    return found[0]


def test_healthy_app_yields_no_warning_or_error(healthy):
    findings = run_checks(healthy[2])
    assert [f for f in findings if f.severity != "info"] == []
    # leavers soft-deleted in the window wait for their hard delete: information, not a problem
    assert {f.check for f in findings} == {
        "working.summary",
        "skipped.not-assigned",
        "deprovision.pending-hard-delete",
    }
    assert "Job Active" in _one(findings, "working.summary").title


EXPECTED = {
    "initial": {("start.initial-cycle-running", "info"), ("working.summary", "info")},
    "bad_credentials": {
        ("credentials.quarantined", "error"),
        ("credentials.target-rejected", "error"),
        ("quarantine.active", "error"),
        ("failures.by-code", "warning"),
        ("credentials.validation-not-run", "info"),
    },
    "skipped_users": {
        ("skipped.scoping-filter", "warning"),
        ("skipped.nested-group-only", "warning"),
        ("skipped.disabled-in-source", "warning"),
        ("skipped.assignment-broken", "warning"),
        ("skipped.required-attribute-missing", "warning"),
        ("skipped.matching-attribute-empty", "warning"),
        ("skipped.group-matching-id-empty", "warning"),
        ("skipped.not-assigned", "info"),
        ("failures.by-code", "warning"),
    },
    "escrow": {
        ("quarantine.escrow-risk", "error"),
        ("quarantine.active", "error"),
        ("failures.by-code", "error"),
    },
    "paused": {("start.paused", "warning")},
    "disabled": {("start.disabled", "error"), ("credentials.target-rejected", "error")},
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_scenario_yields_its_findings(scenario, request):
    findings = run_checks(request.getfixturevalue(scenario)[2])
    assert EXPECTED[scenario] <= _ids(findings)


@pytest.mark.parametrize(
    ("scenario", "start"),
    [
        ("healthy", None),
        ("initial", "start.initial-cycle-running"),
        ("bad_credentials", None),  # quarantined: the quarantine checks explain it
        ("skipped_users", None),
        ("escrow", None),
        ("paused", "start.paused"),
        ("disabled", "start.disabled"),
    ],
)
def test_exactly_one_start_reason_applies(scenario, start, request):
    findings = run_checks(request.getfixturevalue(scenario)[2])
    starts = [f.check for f in findings if f.check.startswith("start.")]
    assert starts == ([start] if start else [])


def test_findings_are_sorted_and_serialisable(skipped_users):
    findings = run_checks(skipped_users[2])
    ranks = [(-f.rank, f.check, f.title) for f in findings]
    assert ranks == sorted(ranks)
    data = json.loads(findings_json(findings))
    assert [d["check"] for d in data] == [f.check for f in findings]
    assert all(len(d["evidence"]) <= 50 for d in data)
    text = format_findings(findings)
    for f in findings:
        assert f.check in text and f.title in text
    assert "What to do:" in text


def test_skip_causes_match_the_simulators_categories(skipped_users):
    tenant, app, evidence = skipped_users
    table = skip_table(gather(evidence))
    got = dict(zip(table["object_id"], table["cause"], strict=True))
    expected_cause = {
        "nested-only": "skipped.nested-group-only",
        "disabled": "skipped.disabled-in-source",
        "broken": "skipped.assignment-broken",
        "scope-fail": "skipped.scoping-filter",
        "matching-empty": "skipped.matching-attribute-empty",
        "required-missing": "skipped.required-attribute-missing",
    }
    for index, category in app.categories.items():
        uid = tenant.users.get(index).id
        if category in expected_cause:
            assert got.get(uid) == expected_cause[category], (category, uid)
        else:  # ok, conflict, duplicate: not a skip this check explains
            assert uid not in got, (category, uid)
    users = table[table["type"] == "User"]
    others = users[~users["object_id"].isin({tenant.users.get(i).id for i in app.categories})]
    assert set(others["cause"]) == {"skipped.not-assigned"}


def test_nested_group_only_counts_every_user_and_caps_evidence(skipped_users):
    _tenant, app, evidence = skipped_users
    finding = _one(run_checks(evidence), "skipped.nested-group-only")
    nested = sum(1 for c in app.categories.values() if c == "nested-only")
    assert nested > 50
    assert finding.count == nested
    assert len(finding.evidence) == 50 and finding.omitted == nested - 50
    assert f"{nested} users" in finding.title and "'Support'" in finding.title


def test_scoping_filter_names_the_failing_clause_and_value_per_user(skipped_users):
    tenant, app, evidence = skipped_users
    finding = _one(run_checks(evidence), "skipped.scoping-filter")
    assert "Employees with a department" in finding.title
    assert finding.count == sum(1 for c in app.categories.values() if c == "scope-fail")
    by_id = {
        tenant.users.get(i).id: tenant.users.get(i) for i, c in app.categories.items() if c == "scope-fail"
    }
    for row in finding.evidence:
        user = by_id[row["object_id"]]
        if user.employee_type != "Employee":
            assert row["clause"] == "employeeType EQUALS 'Employee'"
            assert row["value"] == user.employee_type
        else:
            assert row["clause"] == "department IS NOT NULL"
            assert not user.department


def test_required_and_matching_attributes_are_named_from_the_schema(skipped_users):
    findings = run_checks(skipped_users[2])
    required = _one(findings, "skipped.required-attribute-missing")
    assert "'external_id' (from 'employeeId')" in required.title
    assert {r["source_attribute"] for r in required.evidence} == {"employeeId"}
    matching = _one(findings, "skipped.matching-attribute-empty")
    assert "'mail'" in matching.title
    assert "priority 1" in matching.why


def test_group_with_empty_matching_id_is_named(skipped_users):
    tenant, _app, evidence = skipped_users
    finding = _one(run_checks(evidence), "skipped.group-matching-id-empty")
    group = tenant.directory.by_name["Support Escalations"]
    assert [r["object_id"] for r in finding.evidence] == [group.id]
    assert "'Support Escalations'" in finding.title


def test_broken_assignments_are_the_simulators_broken_users(skipped_users):
    tenant, app, evidence = skipped_users
    finding = _one(run_checks(evidence), "skipped.assignment-broken")
    assert {r["object_id"] for r in finding.evidence} == {tenant.users.get(i).id for i in app.broken}


def test_sync_all_reports_out_of_scope_skips_as_expected(initial):
    findings = run_checks(initial[2])
    disabled = _one(findings, "skipped.disabled-in-source")
    assert disabled.severity == "info" and "expected" in disabled.title


def test_initial_cycle_eta_is_close_to_the_simulated_end(initial):
    tenant, app, evidence = initial
    eta = initial_cycle_eta(gather(evidence))
    cycle = app.timeline().cycles[-1]
    true_end = pd.Timestamp(cycle.end * 100, unit="ns", tz=UTC)
    now = pd.Timestamp(NOW)
    assert eta.eta is not None
    assert abs((eta.eta - true_end).total_seconds()) < 0.15 * (true_end - now).total_seconds()
    assert eta.sizing_earliest < eta.sizing_latest
    finding = _one(run_checks(evidence), "start.initial-cycle-running")
    assert "expected to end around" in finding.title
    expected_end = pd.Timestamp(next(r["value"] for r in finding.evidence if r["field"] == "expected_end"))
    assert abs((expected_end - true_end).total_seconds()) < 0.15 * (true_end - now).total_seconds()


def test_bad_credentials_findings_name_the_401(bad_credentials):
    findings = run_checks(bad_credentials[2])
    quarantined = _one(findings, "credentials.quarantined")
    assert "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable" in quarantined.title
    assert "HTTP 401" in quarantined.title
    rejected = _one(findings, "credentials.target-rejected")
    assert rejected.count == 5
    active = _one(findings, "quarantine.active")
    assert "EncounteredQuarantineException" in active.title and "days left" in active.title


def test_validate_credentials_is_called_only_when_given(bad_credentials):
    _tenant, app, evidence = bad_credentials
    calls = []
    code, message = credential_error(app.scenario)

    def refuse():
        calls.append(1)
        raise GraphError(message, status=400, code=code)

    findings = run_checks(evidence, validate_credentials=refuse)
    assert calls == [1]
    failed = _one(findings, "credentials.validation-failed")
    assert failed.severity == "error"
    assert "at the caller's request" in failed.why and "saved credentials" in failed.why
    assert "HTTP 401" in failed.title
    assert not [f for f in findings if f.check == "credentials.validation-not-run"]


def test_validation_success_and_call_failures_are_not_credential_failures(bad_credentials):
    evidence = bad_credentials[2]
    ok = run_checks(evidence, validate_credentials=lambda: None)
    assert _one(ok, "credentials.validated").severity == "info"
    assert "start the job" in _one(ok, "credentials.validated").remedy.lower()

    def forbidden():
        raise PermissionDeniedError("no permission", status=403, code="Authorization_RequestDenied")

    denied = run_checks(evidence, validate_credentials=forbidden)
    assert _one(denied, "credentials.validation-not-run").severity == "warning"
    assert not [f for f in denied if f.check == "credentials.validation-failed"]


def test_escrow_quarantine_compares_the_latest_cycle_with_the_thresholds(escrow):
    findings = run_checks(escrow[2])
    risk = _one(findings, "quarantine.escrow-risk")
    assert risk.count >= 5000 and "over 40%" in risk.title
    by_code = _one(findings, "failures.by-code")
    assert by_code.title.startswith("SchemaAttributeNotFound") and by_code.severity == "error"
    active = _one(findings, "quarantine.active")
    assert "EncounteredEscrowProportionThreshold" in active.title


def test_disabled_job_says_it_was_disabled_after_28_days(disabled):
    finding = _one(run_checks(disabled[2]), "start.disabled")
    assert "after 28 days in quarantine" in finding.title
    assert "AtlassianInvalidCredentials" in finding.title


def test_paused_job_says_since_when(paused):
    finding = _one(run_checks(paused[2]), "start.paused")
    assert "since 2026-11-19" in finding.title


# ---------------------------------------------------------------------------------------------------------
# hand-built evidence

_ids_counter = count(1)


def entry(
    user: str,
    *,
    status: str = "success",
    action: str = "update",
    minutes_ago: float = 60,
    cycle: str = "c1",
    kind: str = "User",
    code: str | None = None,
    reason: str | None = None,
    skip: str | None = None,
    assigned: bool | None = None,
    active: bool | None = None,
    in_scope: bool | None = None,
    clause: tuple[str, str, list[str], str | None] | None = None,
    details: dict | None = None,
) -> dict:
    """One provisioningObjectSummary with just the fields the checks read."""
    n = next(_ids_counter)
    scoping: dict = {}
    if assigned is not None:
        scoping["Assigned to the application"] = str(assigned)
    if active is not None:
        scoping["IsActive"] = str(active)
    if assigned is not None and active is not None:
        scoping["IsEffectivelyEntitledForProvisioning"] = str(assigned and active)
    if in_scope is not None:
        scoping["IsInProvisioningScope"] = str(in_scope)
    if clause is not None:
        attribute, operator, values, value = clause
        scoping["ScopeEvaluationResult"] = json.dumps(
            {
                "scopingFilterGroups": [
                    {
                        "name": "Filter",
                        "result": False,
                        "clauses": [
                            {
                                "sourceOperandName": attribute,
                                "operatorName": operator,
                                "targetOperand": values,
                                "sourceValue": value,
                                "result": False,
                            }
                        ],
                    }
                ]
            }
        )
    steps = [{"name": "EntryImport", "provisioningStepType": "import", "status": "success", "details": {}}]
    if scoping:
        steps.append(
            {
                "name": "EntrySynchronizationScoping",
                "provisioningStepType": "scoping",
                "status": "success",
                "details": scoping,
            }
        )
    last = {"ReportableIdentifier": f"{user}@contoso.com"} | (details or {})
    if skip:
        last["SkipReason"] = skip
    steps.append(
        {"name": "EntryExportUpdate", "provisioningStepType": "export", "status": status, "details": last}
    )
    when = NOW - timedelta(minutes=minutes_ago)
    return {
        "id": f"e{n}",
        "activityDateTime": when.isoformat().replace("+00:00", "Z"),
        "jobId": "scim.job",
        "cycleId": cycle,
        "changeId": f"ch{n}",
        "provisioningAction": action,
        "sourceIdentity": {"id": user, "displayName": user.title(), "identityType": kind},
        "targetIdentity": {"id": "", "displayName": "", "identityType": kind},
        "provisioningStatusInfo": {
            "status": status,
            "errorInformation": {"errorCode": code, "reason": reason} if code or reason else None,
        },
        "provisioningSteps": steps,
    }


def job(
    code: str = "Active",
    *,
    schedule: str = "Active",
    state: str | None = "Succeeded",
    error: tuple[str, str] | None = None,
    failures: int = 0,
    escrowed: int = 0,
    imported: int = 10,
    quarantine: dict | None = None,
    progress: list[dict] | None = None,
    settings: list[dict] | None = None,
) -> dict:
    began = NOW - timedelta(minutes=30)
    execution = None
    if state is not None:
        execution = {
            "activityIdentifier": "run1",
            "state": state,
            "timeBegan": began.isoformat(),
            "timeEnded": (began + timedelta(minutes=2)).isoformat(),
            "countEscrowed": escrowed,
            "countEscrowedRaw": escrowed,
            "countImported": imported,
            "countExports": imported,
            "error": {"code": error[0], "message": error[1]} if error else None,
        }
    return {
        "id": "scim.job",
        "templateId": "scim",
        "schedule": {"interval": "PT40M", "state": schedule},
        "status": {
            "code": code,
            "countSuccessiveCompleteFailures": failures,
            "lastExecution": execution,
            "quarantine": quarantine,
            "progress": progress or [],
            "steadyStateLastAchievedTime": "0001-01-01T00:00:00Z",
        },
        "synchronizationJobSettings": settings or [],
    }


def schema(
    sync_all: bool = False,
    matching: tuple[tuple[str, str, int], ...] = (("userPrincipalName", "userName", 1),),
    group_matching: str | None = None,
    required: tuple[str, str] | None = None,
) -> dict:
    mappings = [
        {
            "source": {"name": s, "expression": f"[{s}]", "type": "Attribute"},
            "targetAttributeName": t,
            "matchingPriority": p,
        }
        for s, t, p in matching
    ]
    if required:
        mappings.append(
            {
                "source": {"name": required[0], "type": "Attribute"},
                "targetAttributeName": required[1],
                "matchingPriority": 0,
            }
        )
    object_mappings = [
        {
            "enabled": True,
            "sourceObjectName": "User",
            "attributeMappings": mappings,
            "scope": {"groups": [{"name": "Filter", "clauses": []}]},
        }
    ]
    if group_matching:
        object_mappings.append(
            {
                "enabled": True,
                "sourceObjectName": "Group",
                "attributeMappings": [
                    {
                        "source": {"name": group_matching, "type": "Attribute"},
                        "targetAttributeName": "displayName",
                        "matchingPriority": 1,
                    }
                ],
            }
        )
    # The scope (SyncAll) is a synchronization secret: no GET returns it, so the schema never says it, even
    # when a test pretends to have set it. It is inferred from the logs.
    metadata = [{"key": "SupportsProvisionOnDemand", "value": "true"}]
    del sync_all
    return {"synchronizationRules": [{"metadata": metadata, "objectMappings": object_mappings}]}


def evidence(
    entries: list[dict] = (),
    *,
    job_json: dict | None = None,
    schema_json: dict | None = None,
    assignments: list[dict] = (),
    groups: dict | None = None,
    audits: list[dict] = (),
    users: dict | None = None,
) -> Evidence:
    jobs = None
    if job_json is not None:
        jobs = jobs_from_records([job_json], snapshot_time=NOW, service_principal_id="sp")
    return Evidence(
        tenant_id="t",
        service_principal_id="sp",
        app_id=None,
        display_name="Fabrikam",
        tables=events_from_records(list(entries)),
        jobs=jobs,
        job=job_json,
        schema=schema_json,
        assignments=list(assignments),
        groups=groups or {},
        audits=list(audits),
        users=users or {},
        now=NOW,
    )


def user_assignment(user: str, created: datetime | None = None) -> dict:
    return {
        "principalType": "User",
        "principalId": user,
        "principalDisplayName": user.title(),
        "createdDateTime": (created or NOW - timedelta(days=30)).isoformat(),
    }


def checks(ev: Evidence, prefix: str) -> list[Finding]:
    return [f for f in run_checks(ev) if f.check.startswith(prefix)]


# ---- working --------------------------------------------------------------------------------------------


def test_summary_without_job_or_logs_is_still_one_info_finding():
    findings = run_checks(evidence())
    assert [(f.check, f.severity) for f in findings] == [("working.summary", "info")]
    assert "No job status" in findings[0].title and "no log entries" in findings[0].title


def test_summary_reports_the_recent_failure_rate():
    entries = [entry(f"u{i}") for i in range(3)] + [entry("u9", status="failure", code="Timeout")]
    finding = _one(run_checks(evidence(entries, job_json=job())), "working.summary")
    assert "25.0% of the last 24 h's 4 entries failed" in finding.title
    assert "last run Succeeded" in finding.title


def test_failures_by_code_severity_follows_share_and_retry():
    ok = [entry(f"ok{i}") for i in range(40)]
    transient = [entry("t1", status="failure", code="FabrikamTimeout")]
    fixable = [entry("f1", status="failure", code="FabrikamEntryConflict", reason="HTTP status code 409")]
    found = {f.title.split(":")[0]: f for f in checks(evidence(ok + transient + fixable), "failures.by-code")}
    assert found["FabrikamTimeout (Timeout)"].severity == "info"
    assert found["FabrikamEntryConflict (EntryConflict)"].severity == "warning"
    many = [entry(f"m{i}", status="failure", code="SchemaAttributeNotFound") for i in range(10)]
    (big,) = checks(evidence(ok + many), "failures.by-code")
    assert big.severity == "error" and big.count == 10


def test_failures_fixed_since_do_not_fire():
    entries = [
        entry("u1", status="failure", code="EntryConflict", minutes_ago=120),
        entry("u1", status="success", minutes_ago=30),
    ]
    assert checks(evidence(entries), "failures.by-code") == []


# ---- start ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_json", "entries", "expected"),
    [
        (job("NotConfigured", schedule="Disabled", state=None), [], "start.not-configured"),
        (job("NotRun", state=None), [], "start.not-started"),
        (job("NotConfigured", state=None) | {"schedule": {"state": "Disabled"}}, [], "start.not-configured"),
        (job("Paused", schedule="Disabled", state=None), [], "start.not-started"),
        (job("Paused", schedule="Disabled", state="Failed"), [], "start.disabled"),
        (job("Paused", schedule="Paused"), [], "start.paused"),
        (
            job("Active", state="Failed", failures=3, error=("SalesforceInvalidCredentials", "bad")),
            [],
            "start.failing-every-run",
        ),
        (
            job(
                "NotRun",
                state=None,
                progress=[
                    {"completedUnits": 1, "totalUnits": 9, "progressObservationDateTime": NOW.isoformat()}
                ],
            ),
            [],
            "start.initial-cycle-running",
        ),
        (job("NotRun", state=None), [entry("u1")], "start.initial-cycle-running"),
    ],
)
def test_start_state_picks_exactly_one_reason(job_json, entries, expected):
    ev = evidence(entries, job_json=job_json)
    assert start_state(gather(ev))[0] == expected
    assert [f.check for f in checks(ev, "start.")] == [expected]


@pytest.mark.parametrize(
    "job_json",
    [
        job("Active"),
        job(
            "Active", state="Failed", failures=1, error=("Timeout", "slow")
        ),  # one failed run is not "every run"
        job("Active", state="EntryLevelErrors", failures=0),
        job("Quarantine", quarantine={"reason": "EncounteredQuarantineException"}),
    ],
)
def test_start_checks_do_not_fire_for_a_running_or_quarantined_job(job_json):
    assert checks(evidence([entry("u1")], job_json=job_json), "start.") == []


def test_no_job_at_all_is_not_configured_only_when_jobs_were_fetched():
    ev = evidence([], job_json=None)
    ev.jobs = jobs_from_records([], snapshot_time=NOW, service_principal_id="sp")
    assert start_state(gather(ev))[0] == "start.not-configured"
    ev.source = "files"  # imported logs say nothing about the job
    assert start_state(gather(ev)) is None


def test_initial_cycle_eta_extrapolates_progress():
    start = NOW - timedelta(minutes=40)
    progress = [
        {
            "completedUnits": 5,
            "totalUnits": 20,
            "units": "Pages",
            "progressObservationDateTime": (start + timedelta(minutes=20)).isoformat(),
        },
        {
            "completedUnits": 10,
            "totalUnits": 20,
            "units": "Pages",
            "progressObservationDateTime": (start + timedelta(minutes=40)).isoformat(),
        },
    ]
    ev = evidence(
        [entry("u1", minutes_ago=40)],
        job_json=job("NotRun", state=None, progress=progress),
        assignments=[user_assignment(f"u{i}") for i in range(1000)],
    )
    eta = initial_cycle_eta(gather(ev))
    # 5 pages in 20 minutes; the page in progress counts as half done: 9.5 pages left at 0.25 a minute
    assert eta.eta == pd.Timestamp(start + timedelta(minutes=40 + 38))
    assert eta.objects == 1000
    assert eta.sizing_earliest == pd.Timestamp(start + timedelta(minutes=10))
    assert eta.sizing_latest == pd.Timestamp(start + timedelta(minutes=80))


# ---- credentials -------------------------------------------------------------------------------------------


def test_target_rejected_fires_on_401_after_the_last_success():
    entries = [
        entry("u1", minutes_ago=120),
        entry(
            "u2", status="failure", code="FabrikamUnauthorized", reason="HTTP status code 401", minutes_ago=30
        ),
    ]
    (finding,) = checks(evidence(entries), "credentials.target-rejected")
    assert finding.severity == "error" and finding.count == 1 and "HTTP 401" in finding.title


def test_target_rejected_does_not_fire_once_exports_succeed_again():
    entries = [
        entry("u2", status="failure", code="FabrikamUnauthorized", minutes_ago=120),
        entry("u1", minutes_ago=30),
    ]
    assert checks(evidence(entries), "credentials.") == []


def test_target_rejected_ignores_data_404s_but_reads_unknown_codes_with_403():
    invalid_anchor = [entry("u1", status="failure", code="InvalidAnchor", reason="HTTP status code 404")]
    assert checks(evidence(invalid_anchor), "credentials.target-rejected") == []
    unknown = [entry("u1", status="failure", code="FabrikamGremlin", reason="the app answered HTTP 403")]
    assert len(checks(evidence(unknown), "credentials.target-rejected")) == 1


def test_quarantine_for_escrows_is_not_a_credentials_quarantine():
    q = {
        "reason": "EncounteredEscrowProportionThreshold",
        "seriesBegan": NOW.isoformat(),
        "error": {"code": "EncounteredEscrowProportionThreshold", "message": "60% failed"},
    }
    ev = evidence([entry("u1")], job_json=job("Quarantine", quarantine=q))
    assert checks(ev, "credentials.") == []
    assert [f.check for f in checks(ev, "quarantine.")] == ["quarantine.active"]


# ---- skipped -------------------------------------------------------------------------------------------


def test_scoping_skips_warn_under_sync_assigned_and_inform_under_sync_all():
    e = [
        entry(
            "u1",
            status="skipped",
            action="other",
            skip="NotEffectivelyEntitled",
            assigned=True,
            active=True,
            in_scope=False,
            clause=("department", "EQUALS", ["Sales"], "Legal"),
        )
    ]
    # The logs settle "sync assigned": an active, in-scope user skipped as not assigned.
    stranger = entry("u2", status="skipped", skip="NotEffectivelyEntitled", assigned=False, active=True)
    assigned = [user_assignment("u1")]
    found = checks(evidence([*e, stranger], schema_json=schema(), assignments=assigned), "skipped.")
    warn = _one(found, "skipped.scoping-filter")
    assert warn.severity == "warning" and "Sync only assigned" not in warn.why
    assert warn.evidence[0]["clause"] == "department EQUALS 'Sales'" and warn.evidence[0]["value"] == "Legal"
    # ... or "sync all": a user the service saw as not assigned was created.
    created = entry("u3", status="success", action="create", assigned=False, active=True, in_scope=True)
    (info,) = checks(evidence([*e, created], schema_json=schema()), "skipped.")
    assert (info.check, info.severity) == ("skipped.scoping-filter", "info")
    assert "expected under 'Sync all users and groups'" in info.title
    # Neither: the scope is unknown. Never silently "assigned": a warning that words both cases.
    (unknown,) = checks(evidence(e, schema_json=schema()), "skipped.")
    assert unknown.severity == "warning"
    assert "under 'Sync all users and groups' this is expected" in unknown.why
    assert "under 'Sync only assigned'" in unknown.why


def test_unassigned_noise_is_info_unless_the_user_is_assigned_some_way():
    e = [
        entry(u, status="skipped", skip="NotEffectivelyEntitled", assigned=False, active=True, in_scope=True)
        for u in ("stranger", "nested", "direct")
    ]
    groups = {
        "g1": {
            "display_name": "Support",
            "direct": ["someone"],
            "transitive": ["someone", "nested"],
            "nested": ["g2"],
            "nested_groups": [{"id": "g2", "display_name": "Tier 2", "direct": ["nested"]}],
        }
    }
    ev = evidence(e, schema_json=schema(False), assignments=[user_assignment("direct")], groups=groups)
    found = {f.check: f for f in checks(ev, "skipped.")}
    assert found["skipped.not-assigned"].severity == "info"
    assert [r["object_id"] for r in found["skipped.not-assigned"].evidence] == ["stranger"]
    nested = found["skipped.nested-group-only"]
    assert nested.severity == "warning"
    assert nested.evidence[0]["via"] == "a member of 'Tier 2', which is nested inside assigned 'Support'"
    assert [r["object_id"] for r in found["skipped.assignment-broken"].evidence] == ["direct"]


def test_disabled_unassigned_user_is_noise_not_a_disabled_warning():
    e = [entry("leaver", status="skipped", skip="NotEffectivelyEntitled", assigned=False, active=False)]
    found = checks(evidence(e, schema_json=schema(False)), "skipped.")
    assert [(f.check, f.severity) for f in found] == [("skipped.not-assigned", "info")]


def test_disabled_assigned_user_warns():
    e = [entry("u1", status="skipped", skip="NotEffectivelyEntitled", assigned=True, active=False)]
    found = checks(evidence(e, schema_json=schema(False), assignments=[user_assignment("u1")]), "skipped.")
    assert [(f.check, f.severity) for f in found] == [("skipped.disabled-in-source", "warning")]


def test_assignment_made_after_the_skip_is_not_broken():
    e = [
        entry(
            "u1", status="skipped", skip="NotEffectivelyEntitled", assigned=False, active=True, minutes_ago=90
        )
    ]
    recent = [user_assignment("u1", created=NOW - timedelta(minutes=10))]
    assert checks(evidence(e, schema_json=schema(False), assignments=recent), "skipped.") == []


def test_only_the_latest_entry_of_an_object_counts():
    e = [
        entry(
            "u1",
            status="skipped",
            skip="NotEffectivelyEntitled",
            assigned=True,
            active=True,
            in_scope=False,
            clause=("department", "IS NOT NULL", [], None),
            minutes_ago=300,
        ),
        entry("u1", status="success", minutes_ago=20),
        entry("u2", status="skipped", action="other", skip="RedundantExport", minutes_ago=20),
    ]
    assert checks(evidence(e, schema_json=schema(False)), "skipped.") == []


def test_required_attribute_is_read_from_the_reason_when_steps_do_not_name_it():
    e = [
        entry(
            "u1",
            status="failure",
            action="create",
            code="MandatoryFieldsMissing",
            reason="The user could not be created: 'employeeNumber' is required.",
        )
    ]
    ev = evidence(
        e,
        schema_json=schema(False, required=("employeeId", "employeeNumber")),
        users={"u1": {"id": "u1", "employeeId": None}},
    )
    (finding,) = checks(ev, "skipped.required")
    assert "'employeeNumber' (from 'employeeId')" in finding.title
    assert finding.evidence[0]["current_value"] == ""


def test_matching_attribute_follows_the_schemas_priorities():
    e = [entry("u1", status="skipped", action="other", code="ImportSkipped", skip="ImportSkipped")]
    ev = evidence(
        e, schema_json=schema(False, matching=(("mail", "emails", 2), ("employeeId", "externalId", 1)))
    )
    (finding,) = checks(ev, "skipped.matching")
    assert "'employeeId'" in finding.title
    assert finding.why.index("'employeeId' (priority 1") < finding.why.index("'mail' (priority 2")


def test_group_matching_id_empty_is_found_in_the_directory_without_logs():
    groups = {
        "g1": {"display_name": "Escalations", "mail": None, "direct": ["u1"], "transitive": ["u1"]},
        "g2": {"display_name": "Support", "mail": "support@contoso.com", "direct": [], "transitive": []},
    }
    ev = evidence([], schema_json=schema(False, group_matching="mail"), groups=groups)
    (finding,) = checks(ev, "skipped.group")
    assert [r["object_id"] for r in finding.evidence] == ["g1"]
    # groups not provisioned: nothing to report
    assert checks(evidence([], schema_json=schema(False), groups=groups), "skipped.group") == []


# ---- quarantine ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "total", "raw", "level"),
    [
        (45_000, 45_000, None, "reached"),  # the doc's worked examples
        (30_000, 35_000, None, "reached"),
        (20_000, 120_000, None, "clear"),
        (40_000, 1_000_000, 61_000, "reached"),
        (4_999, 5_000, None, "approaching"),  # over 40% but under the 5,000 minimum
        (100, 100, None, "clear"),  # a small app failing entirely is not an escrow matter
        (6_000, 100_000, None, "clear"),
        (6_000, 18_000, None, "approaching"),  # 33%
    ],
)
def test_escrow_verdict_follows_the_documented_thresholds(failures, total, raw, level):
    assert escrow_verdict(failures, total, raw).level == level


def test_escrow_risk_uses_the_latest_execution_counts():
    ev = evidence([], job_json=job(state="EntryLevelErrors", escrowed=6_000, imported=8_000))
    (finding,) = checks(ev, "quarantine.escrow-risk")
    assert finding.severity == "error" and "6,000 failures of 8,000" in finding.title
    calm = evidence([], job_json=job(state="EntryLevelErrors", escrowed=6_000, imported=80_000))
    assert checks(calm, "quarantine.escrow-risk") == []


def test_quarantine_active_counts_days_until_the_job_is_disabled():
    began = NOW - timedelta(days=10)
    q = {
        "reason": "EncounteredQuarantineException",
        "seriesBegan": began.isoformat(),
        "currentBegan": began.isoformat(),
        "nextAttempt": (NOW + timedelta(hours=5)).isoformat(),
        "seriesCount": 9,
    }
    (finding,) = checks(evidence([], job_json=job("Quarantine", quarantine=q)), "quarantine.active")
    assert "18.0 days left" in finding.title and "evaluated 9 times" in finding.title
    rows = {r["field"]: r["value"] for r in finding.evidence}
    assert rows["disabled_if_not_fixed_by"] == (began + timedelta(days=28)).isoformat()


def test_too_many_deletes():
    settings = [{"name": "QuarantineTooManyDeletesThreshold", "value": "10"}]
    staged = [entry(f"u{i}", action="stagedDelete", status="skipped") for i in range(3)]
    (warn,) = checks(evidence(staged, job_json=job(settings=settings)), "quarantine.too-many")
    assert warn.severity == "warning" and warn.count == 3
    q = {"reason": "TooManyDeletes", "seriesBegan": NOW.isoformat()}
    (err,) = checks(
        evidence(staged, job_json=job("Quarantine", quarantine=q, settings=settings)), "quarantine.too-many"
    )
    assert err.severity == "error"
    near = [entry(f"d{i}", action="disable", cycle="c9") for i in range(8)]
    assert len(checks(evidence(near, job_json=job(settings=settings)), "quarantine.too-many")) == 1
    few = [entry(f"d{i}", action="disable", cycle="c9") for i in range(5)]
    assert checks(evidence(few, job_json=job(settings=settings)), "quarantine.too-many") == []


def test_the_package_docstring_lists_every_skip_check():
    from provkit.analysis import checks as package

    for cause in skipped_module.CAUSES:
        assert cause in package.__doc__


def test_scope_is_inferred_from_an_unassigned_user_exported_when_the_assignments_are_complete():
    created = entry("stranger", status="success", action="create")  # no scoping details at all
    assert gather(evidence([created], assignments=[user_assignment("u1")])).scope.value == "all"
    # an assigned group whose members were not read: the stranger may be a member, so nothing is settled
    group = {"principalType": "Group", "principalId": "g1", "principalDisplayName": "Sales"}
    unsure = gather(evidence([created], assignments=[user_assignment("u1"), group]))
    assert unsure.scope.value == "unknown" and unsure.sync_all is None
    members = {"g1": {"display_name": "Sales", "direct": ["stranger"], "transitive": ["stranger"]}}
    assigned = gather(evidence([created], assignments=[group], groups=members))
    assert assigned.scope.value == "unknown"  # a member of an assigned group: no evidence either way


def test_assigned_without_the_required_role_is_named():
    details = {
        "Active in the source system": "True",
        "Assigned to the application": "True",
        "User has the required role": "False",
        "Scoping filter evaluation passed": "True",
        "ScopeEvaluationResult": "{}",
    }
    record = entry("u1", status="skipped", skip="NotEffectivelyEntitled")
    record["provisioningSteps"].insert(
        1, {"name": "EntrySynchronizationScoping", "provisioningStepType": "scoping", "details": details}
    )
    (finding,) = checks(evidence([record], assignments=[user_assignment("u1")]), "skipped.")
    assert finding.check == "skipped.assignment-broken"
    assert "1 with 'User has the required role' False" in finding.title
    assert "does not entitle provisioning" in finding.evidence[0]["words"]


# ---- memory: the checks read the steps of the entries they explain, never the whole table -------------------


class _WholeStepsOffLimits:
    """Tables whose whole steps table may not be read: a million entries have about five million steps, so a
    check asks for the steps of the entries it explains (a store reads only those rows)."""

    def __init__(self, tables) -> None:
        self.events, self.properties, self.rejects = tables.events, tables.properties, tables.rejects
        self._steps = tables.steps

    @property
    def steps(self):
        raise AssertionError("a check read the whole steps table")

    def steps_of(self, event_ids):
        wanted = set(event_ids)
        return self._steps[self._steps["event_id"].isin(wanted)].reset_index(drop=True)


def test_checks_cycles_and_explain_give_the_same_answers_from_the_steps_of_a_few_entries():
    from provkit.analysis import cycles
    from provkit.analysis.checks import explain

    tenant = Tenant(seed=3, users_count=600, days=5, now=NOW)  # every scenario, one app each
    explained = 0
    for app in tenant.apps:
        evidence = from_simulator(tenant, app)
        lean = dataclasses.replace(evidence, tables=_WholeStepsOffLimits(evidence.tables))
        assert findings_json(run_checks(lean)) == findings_json(run_checks(evidence)), app.display_name
        assert cycles.summary(lean).as_dict() == cycles.summary(evidence).as_dict(), app.display_name
        latest = gather(evidence).latest
        if len(latest):
            name = latest["source_id"].iloc[-1]
            assert explain(lean, name).as_dict() == explain(evidence, name).as_dict()
            explained += 1
    assert explained >= 10


def test_the_latest_entry_of_each_object_is_the_one_a_stable_sort_by_time_keeps():
    from provkit.analysis.columns import latest_entries

    t0 = pd.Timestamp(NOW)
    times = [t0, t0, t0 - timedelta(hours=1), pd.NaT, t0 + timedelta(hours=1), t0, t0 - timedelta(hours=2)]
    events = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(len(times))],
            "source_id": pd.array(["a", "b", "a", "c", None, "", "b"], dtype="str"),
            "activity_time": pd.to_datetime(pd.Series(times), utc=True),
        }
    )
    # a: two entries, the later wins; b: at the same time as a's, the later position wins over an older one;
    # c: no time (sorted last, so latest); no id and an empty id: left out. Oldest first, as the sort gives.
    keys = events[events["source_id"].notna() & (events["source_id"] != "")]
    expected = keys.sort_values("activity_time", kind="stable").drop_duplicates("source_id", keep="last")
    assert latest_entries(events)["id"].tolist() == expected["id"].tolist() == ["e0", "e1", "e3"]


def test_a_skip_is_classified_whatever_the_case_of_its_status():
    from provkit.analysis.checks.skipped import classify

    e = [entry("u1", status="skipped", skip="NotEffectivelyEntitled", assigned=True, active=False)]
    ev = evidence(e, schema_json=schema(False), assignments=[user_assignment("u1")])
    facts = gather(ev)
    row = facts.latest.iloc[0].copy()
    lower = classify(row, facts)
    row["status"] = "Skipped"  # as Graph writes it; an entry from elsewhere may not be lower-cased
    assert lower is not None and lower.check == "skipped.disabled-in-source"
    assert classify(row, facts) == lower


def test_taking_a_few_rows_of_a_stored_table_gives_what_iloc_gives():
    import numpy as np
    import pyarrow as pa

    from provkit.analysis.columns import take

    parts = [
        pa.table({"id": [f"e{k}-{i}" for i in range(50)], "n": list(range(50)), "why": ["x" * k] * 50})
        for k in range(4)
    ]
    frame = pa.concat_tables(parts).to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    frame.index = frame.index + 1000
    positions = np.array([199, 3, 51, 52, 150, 0])  # across parts, out of order
    pd.testing.assert_frame_equal(take(frame, positions), frame.iloc[positions])
    pd.testing.assert_frame_equal(take(frame, positions[:0]), frame.iloc[positions[:0]])
