"""Invariants of the simulated tenant: its history must follow the service's documented behaviour."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime

import pytest

from provkit.sim.entries import render_entry
from provkit.sim.history import DAY, HOUR, INTERVAL, escrow_threshold_reached
from provkit.sim.scenarios import SCENARIOS
from provkit.sim.tenant import Tenant, credential_error
from provkit.sim.timefmt import parse_instant, to_ticks

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return Tenant(seed=11, users_count=6000, days=7, now=NOW)


def entries(app, cycle, limit=None):
    n = cycle.entries if limit is None else min(limit, cycle.entries)
    return [render_entry(app, cycle, i) for i in range(n)]


def app_of(tenant: Tenant, scenario: str):
    return next(a for a in tenant.apps if a.scenario.name == scenario)


def test_same_seed_and_now_give_identical_answers():
    a = Tenant(seed=3, users_count=300, days=2, now=NOW, scenarios=("healthy", "skipped-users"))
    b = Tenant(seed=3, users_count=300, days=2, now=NOW, scenarios=("healthy", "skipped-users"))
    for app_a, app_b in zip(a.apps, b.apps, strict=True):
        assert a.job(app_a) == b.job(app_b)
        ca, cb = app_a.timeline().cycles, app_b.timeline().cycles
        assert [(c.start, c.end, c.entries) for c in ca] == [(c.start, c.end, c.entries) for c in cb]
        assert entries(app_a, ca[-1], 50) == entries(app_b, cb[-1], 50)
    other = Tenant(seed=4, users_count=300, days=2, now=NOW, scenarios=("healthy",))
    assert other.apps[0].timeline().cycles[0].end != a.apps[0].timeline().cycles[0].end


def test_incremental_cycles_are_shorter_than_the_initial_cycle(tenant):
    for app in tenant.apps:
        cycles = app.timeline().cycles
        initial = [c.end - c.start for c in cycles if c.kind == "initial"]
        incremental = [c.end - c.start for c in cycles if c.kind == "incremental" and c.mode == "incremental"]
        if not initial or not incremental:
            continue
        assert max(incremental) < min(initial), app.display_name


def test_initial_cycle_follows_the_sizing_rule(tenant):
    for app in tenant.apps:
        if app.scenario.created_only:  # never started: no cycle at all
            assert app.timeline().cycles == []
            continue
        first = app.timeline().cycles[0]
        assert first.kind == "initial"
        minutes = (first.end - first.start) / (60 * 10**7)
        objects = first.entries
        assert 0.01 * objects * 0.9 <= minutes <= 0.08 * objects * 1.1 or minutes <= 2.2, app.display_name


def test_every_watermark_reset_is_followed_by_an_initial_cycle(tenant):
    resets = 0
    for app in tenant.apps:
        tl = app.timeline()
        for audit in tl.audits:
            if audit.details.get("WatermarkReset") != "True":
                continue
            resets += 1
            after = [c for c in tl.cycles if c.start >= audit.time]
            assert after, f"{app.display_name}: no cycle after the reset at {audit.time}"
            assert after[0].kind == "initial"
            assert after[0].reset_reason == audit.reason
    assert resets >= 3  # healthy (mapping), skipped-users (scoping), paused (restart), escrow (mapping)


def test_incremental_cycles_start_every_interval_when_healthy(tenant):
    app = app_of(tenant, "healthy")
    cycles = app.timeline().cycles
    pairs = [(a, b) for a, b in zip(cycles, cycles[1:], strict=False) if a.mode == b.mode == "incremental"]
    assert len(pairs) > 100
    assert all(INTERVAL <= b.start - a.start <= INTERVAL + 2 * 60 * 10**7 for a, b in pairs)
    # Cycles with no changes exist and leave no log entries.
    assert any(c.entries == 0 for c in cycles if c.mode == "incremental")


def test_status_agrees_with_the_logs(tenant):
    for app in tenant.apps:
        job = tenant.job(app)
        last = job["status"]["lastExecution"]
        cycles = [c for c in app.timeline().cycles if c.end <= tenant.now_ticks]
        if last is None:  # the documented brand-new job: never started
            assert app.scenario.created_only and not cycles
            continue
        if last["timeEnded"] == "0001-01-01T00:00:00Z":  # the documented not-yet-run execution
            assert not cycles and last["activityIdentifier"] is None and last["error"]["code"] == "None"
            continue
        cycle = cycles[-1]
        assert to_ticks(parse_instant(last["timeEnded"])) // 10 == cycle.end // 10
        if cycle.entries and cycle.start >= tenant.window_start:
            logged = entries(app, cycle)
            failures = sum(e["provisioningStatusInfo"]["status"] == "failure" for e in logged)
            assert last["countEscrowed"] == failures, app.display_name
            exported = sum(
                e["provisioningStatusInfo"]["status"] == "success" and e["provisioningAction"] != "other"
                for e in logged
            )
            assert last["countExported"] == exported, app.display_name


def test_healthy_is_active_with_steady_state_and_no_failures(tenant):
    app = app_of(tenant, "healthy")
    status = tenant.job(app)["status"]
    assert status["code"] == "Active"
    assert status["quarantine"] is None
    assert status["steadyStateLastAchievedTime"] != "0001-01-01T00:00:00Z"
    for cycle in app.timeline().cycles[-30:]:
        for e in entries(app, cycle):
            assert e["provisioningStatusInfo"]["status"] != "failure"


def test_initial_cycle_running_has_progress_and_no_completed_cycle(tenant):
    app = app_of(tenant, "initial-cycle-running")
    job = tenant.job(app)
    status = job["status"]
    assert status["code"] == "NotRun"
    # as documented for a job just after start: an execution that has not happened
    assert (
        status["lastExecution"]["timeBegan"] == status["lastExecution"]["timeEnded"] == "0001-01-01T00:00:00Z"
    )
    assert (
        status["lastExecution"]["state"] == "Failed" and status["lastExecution"]["activityIdentifier"] is None
    )
    assert status["steadyStateFirstAchievedTime"] == "0001-01-01T00:00:00Z"
    progress = status["progress"]
    assert len(progress) >= 2
    done = [p["completedUnits"] for p in progress]
    assert done == sorted(done) and done[-1] < progress[-1]["totalUnits"]
    cycle = app.timeline().cycles[0]
    assert cycle.start < tenant.now_ticks < cycle.end


def test_bad_credentials_is_quarantined_with_the_documented_retry_schedule(tenant):
    app = app_of(tenant, "bad-credentials")
    status = tenant.job(app)["status"]
    q = status["quarantine"]
    assert status["code"] == "Quarantine"
    assert q["reason"] == "EncounteredQuarantineException"
    assert "401" in q["error"]["message"]
    began = to_ticks(parse_instant(q["seriesBegan"]))
    attempts = [round((c.start - began) / HOUR, 3) for c in app.timeline().cycles if c.mode == "attempt"]
    assert attempts[:3] == [6, 12, 24]
    assert round((to_ticks(parse_instant(q["nextAttempt"])) - began) / HOUR, 3) == 48
    assert status["countSuccessiveCompleteFailures"] >= 3
    assert not app.validate_ok


def test_skipped_users_has_every_skip_cause(tenant):
    app = app_of(tenant, "skipped-users")
    seen = Counter()
    clauses = set()
    for cycle in app.timeline().cycles:
        for e in entries(app, cycle):
            status = e["provisioningStatusInfo"]
            code = (status["errorInformation"] or {}).get("errorCode")
            steps = e["provisioningSteps"]
            skip = next(
                (s["details"].get("SkipReason") for s in steps if s["details"].get("SkipReason")), None
            )
            scope = next((s["details"] for s in steps if s["provisioningStepType"] == "scoping"), {})
            if scope:  # the documented log keys on every scoping step, and ScopeEvaluationResult
                assert {
                    "Active in the source system",
                    "Assigned to the application",
                    "Scoping filter evaluation passed",
                    "ScopeEvaluationResult",
                } <= set(scope)
                assert isinstance(json.loads(scope["ScopeEvaluationResult"]), dict)
            if skip == "NotEffectivelyEntitled":
                if scope.get("Active in the source system") == "False":
                    seen["disabled"] += 1
                elif scope.get("Scoping filter evaluation passed") == "False":
                    seen["scoping"] += 1
                    clauses.add(scope["ScopeEvaluationResult"])
                else:
                    seen["not-entitled"] += 1
            if code in ("ImportSkipped", "EntryJoiningPropertyValueIsMissing"):
                seen[code + ":" + e["sourceIdentity"]["identityType"]] += 1
            if skip == "RedundantExport":
                seen["redundant"] += 1
            if status["status"] == "failure":
                seen[code] += 1
    for key in (
        "disabled",
        "scoping",
        "not-entitled",
        "ImportSkipped:User",
        "EntryJoiningPropertyValueIsMissing:User",
        "ImportSkipped:Group",
        "redundant",
        "MandatoryFieldsMissing",
        "ZendeskEntryConflict",
        "DuplicateTargetEntries",
    ):
        assert seen[key] > 0, key
    # the documented form: {"<filter>.<attribute> <OPERATOR> '<value>'": false}
    assert any(
        any(k.endswith("employeeType EQUALS 'Employee'") and v is False for k, v in json.loads(c).items())
        for c in clauses
    )
    # nested-only, broken assignment: the app's own bookkeeping names them, the logs show them as not entitled
    assert "nested-only" in app.categories.values()
    assert app.broken


def test_escrow_quarantine_crosses_the_documented_thresholds(tenant):
    app = app_of(tenant, "escrow-quarantine")
    status = tenant.job(app)["status"]
    assert status["code"] == "Quarantine"
    assert status["quarantine"]["reason"] == "EncounteredEscrowProportionThreshold"
    failing = [c for c in app.timeline().cycles if c.mode == "broken-initial"][0]
    assert escrow_threshold_reached(failing.failures, failing.entries)
    assert failing.failures >= 5000
    assert status["lastExecution"]["countEscrowed"] >= 5000


def test_escrow_thresholds_match_the_documented_examples():
    assert escrow_threshold_reached(45_000, 45_000)
    assert escrow_threshold_reached(30_000, 35_000)
    assert not escrow_threshold_reached(20_000, 120_000)
    assert escrow_threshold_reached(61_000, 200_000)
    assert not escrow_threshold_reached(4_999, 5_000)


def test_paused_and_disabled_jobs(tenant):
    paused = tenant.job(app_of(tenant, "paused"))
    assert paused["status"]["code"] == "Paused" and paused["schedule"]["state"] == "Paused"
    disabled = tenant.job(app_of(tenant, "disabled"))
    assert disabled["schedule"]["state"] == "Disabled"
    assert disabled["schedule"]["interval"] == "P10675199DT2H48M5.4775807S"
    q = disabled["status"]["quarantine"]
    assert q is not None
    began = parse_instant(q["seriesBegan"])
    assert (NOW - began).days >= 28


def test_directory_audits_record_the_resets_and_quarantines(tenant):
    audits = tenant.directory_audits()
    activities = Counter(a["activityDisplayName"] for a in audits)
    assert activities["Quarantine"] >= 2
    # The documented Account Provisioning activity names only (reference 1.8).
    documented = {
        "Add provisioning configuration",
        "Delete provisioning configuration",
        "Disable/pause provisioning configuration",
        "Enable/restart provisioning configuration",
        "Enable/start provisioning configuration",
        "Export",
        "Import",
        "Other",
        "Process escrow",
        "Quarantine",
        "Synchronization rule action",
        "Update attribute mappings or scope",
        "Update provisioning setting or credentials",
        "User Provisioning",
    }
    assert set(activities) <= documented
    assert activities["Update attribute mappings or scope"] >= 3
    assert activities["Enable/restart provisioning configuration"] >= 1
    assert activities["Disable/pause provisioning configuration"] >= 1
    # per-object records exist, with ids of the documented form Sync_<correlationId>_<5 letters>_<number>
    per_object = [a for a in audits if a["activityDisplayName"] in ("Export", "Synchronization rule action")]
    assert per_object and all(
        re.fullmatch(r"Sync_[0-9a-f-]+_[a-z]{5}_\d+", a["id"]) and a["correlationId"] in a["id"]
        for a in per_object
    )
    service = [a for a in audits if a["activityDisplayName"] == "Quarantine"]
    assert all(a["initiatedBy"]["app"]["displayName"] == "Azure AD Provisioning Service" for a in service)
    for a in audits:
        assert a["loggedByService"] == "Account Provisioning"
        assert a["targetResources"][0]["type"] == "ServicePrincipal"


def test_control_actions_change_the_state_as_the_service_would():
    t = Tenant(seed=5, users_count=300, days=2, now=NOW, scenarios=("healthy", "bad-credentials"))
    healthy, bad = t.apps
    t.control(healthy, "pause")
    t.advance(120)
    assert t.job(healthy)["status"]["code"] == "Paused"
    t.control(healthy, "start")
    t.advance(60)
    assert t.job(healthy)["status"]["code"] == "Active"
    before = len(healthy.timeline().cycles)
    t.control(healthy, "restart")
    t.advance(5)
    cycles = healthy.timeline().cycles
    assert len(cycles) == before + 1 and cycles[-1].kind == "initial" and cycles[-1].reset_reason == "restart"
    assert t.job(bad)["status"]["code"] == "Quarantine"


def test_large_tenant_history_is_built_without_its_entries():
    t = Tenant(seed=1, users_count=100_000, days=30, now=NOW, scenarios=("healthy", "initial-cycle-running"))
    total = sum(c.entries for a in t.apps for c in a.timeline().cycles)
    assert total > 100_000
    assert t.apps[0].timeline().cycles[-1].start <= t.now_ticks < t.apps[0].timeline().cycles[-1].end + DAY
    # The last entry of the last cycle is made on demand, with the right time.
    cycle = next(c for c in reversed(t.apps[0].timeline().cycles) if c.entries)
    entry = render_entry(t.apps[0], cycle, cycle.entries - 1)
    assert (
        to_ticks(parse_instant(entry["activityDateTime"])) // 10 == cycle.entry_time(cycle.entries - 1) // 10
    )


def test_a_restart_with_still_bad_credentials_goes_back_into_quarantine():
    tenant = Tenant(seed=11, users_count=600, days=7, now=NOW, scenarios=("bad-credentials",))
    app = app_of(tenant, "bad-credentials")
    assert tenant.job(app)["status"]["code"] == "Quarantine"
    caller = {"app": {"appId": "caller", "displayName": "Ops tool"}, "user": None}
    tenant.control(app, "restart", {"criteria": {"resetScope": "Full"}}, actor=caller)
    tenant.advance(1)
    assert tenant.job(app)["status"]["code"] != "Quarantine"  # the restart cleared it ...
    tenant.advance(30)
    status = tenant.job(app)["status"]
    assert status["code"] == "Quarantine"  # ... and the next cycle, still with bad credentials, restored it
    assert status["quarantine"]["reason"] == "EncounteredQuarantineException"
    restart = next(
        a
        for a in tenant.directory_audits()
        if a["activityDisplayName"] == "Enable/restart provisioning configuration"
        and a["targetResources"][0]["id"] == app.sp_id
    )
    assert restart["initiatedBy"] == caller  # the caller, not a made-up admin


def test_deprovisioning_disables_and_deletes(tenant):
    actions = Counter()
    for app in tenant.apps:
        for cycle in app.timeline().cycles:
            if cycle.mode != "incremental" or not cycle.entries:
                continue
            for e in entries(app, cycle):
                action = e["provisioningAction"]
                if action not in ("disable", "delete", "stagedDelete"):
                    continue
                actions[action] += 1
                steps = e["provisioningSteps"]
                imported = steps[0]
                assert imported["name"] in ("EntryImportUpdate", "EntryImportDelete")
                if imported["name"] == "EntryImportDelete":
                    assert imported["details"]["IsSoftDeleted"] == "True"
                status = e["provisioningStatusInfo"]["status"]
                if action == "stagedDelete":  # held by the deletion threshold
                    assert app.scenario.name == "deletion-threshold" and status == "skipped"
                elif "scim-patch" in app.scenario.problems:  # the endpoint refuses the PATCH of a disable
                    assert status == "failure"
                    assert e["provisioningStatusInfo"]["errorInformation"]["errorCode"].endswith("BadRequest")
                else:
                    assert status == "success"
                assert e["targetIdentity"]["id"]  # the object exists in the target
    assert actions["disable"] and actions["delete"] and actions["stagedDelete"]


def test_each_app_shape_gives_its_documented_job_id_and_credential_error():
    """Gallery apps: ``<Connector>OutDelta.<tenant hex>`` (e.g. ``SfSandboxOutDelta.e4bb...``) and connector-named
    credential errors; non-gallery SCIM apps: ``scim.<tenant hex>.<guid>`` and the SCIM client's error code."""
    t = Tenant(seed=2, users_count=60, days=1, now=NOW)
    hex32 = t.tenant_id.replace("-", "")
    guid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    seen = set()
    for app in t.apps:
        sc, job = app.scenario, t.job(app)
        assert job["id"] == app.job_id and job["templateId"] == sc.template_id
        code, _message = credential_error(sc)
        if sc.connector:
            seen.add("gallery")
            assert job["id"] == f"{sc.connector}OutDelta.{hex32}", job["id"]
            assert code == f"{sc.connector}InvalidCredentials"
        else:
            seen.add("scim")
            assert re.fullmatch(rf"scim\.{hex32}\.{guid}", job["id"]), job["id"]
            assert sc.template_id == "scim" and sc.target_user_object.startswith("urn:ietf:params:scim:")
            assert code.startswith("SystemForCrossDomainIdentityManagement")
    assert seen == {"gallery", "scim"} and len(t.apps) == len(SCENARIOS)
