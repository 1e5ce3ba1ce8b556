"""Explain one object: the story of a user or group across cycles, the service's decision in plain words, and
what to do, checked against the simulator's own categories."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from provkit.analysis.checks import explain, format_explanation
from provkit.data.evidence import Evidence
from provkit.data.tables import events_from_records, jobs_from_records
from provkit.errors import ConfigError
from provkit.sim.evidence import from_simulator
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def zendesk():
    tenant = Tenant(seed=7, users_count=2000, days=7, now=NOW, scenarios=("skipped-users",))
    app = tenant.apps[0]
    return tenant, app, from_simulator(tenant, app)


@pytest.fixture(scope="module")
def zendesk_with_nested_names(zendesk):
    """The same evidence, with the nested groups of each assigned group named (``nested_groups``)."""
    tenant, app, evidence = zendesk
    directory = tenant.directory
    groups = {}
    for gid, facts in evidence.groups.items():
        outer = directory.group_by_id(gid)
        nested = [directory.groups[n] for n in outer.group_members]
        groups[gid] = facts | {
            "nested_groups": [
                {
                    "id": g.id,
                    "display_name": g.display_name,
                    "direct": [tenant.users.get(u).id for u in g.user_members],
                }
                for g in nested
            ]
        }
    named = Evidence(**{**evidence.__dict__, "groups": groups})
    return tenant, app, named


def _user(tenant, app, category: str):
    index = next(i for i, c in sorted(app.categories.items()) if c == category)
    return tenant.users.get(index)


def test_nested_only_user_is_explained_with_the_group_names(zendesk_with_nested_names):
    tenant, app, evidence = zendesk_with_nested_names
    user = _user(tenant, app, "nested-only")
    expl = explain(evidence, user.user_principal_name)
    assert expl.object_id == user.id
    assert (
        "skipped: not assigned to the app; it is a member of 'Support Tier 2', which is nested inside assigned "
        "'Support', and the service does not follow nested groups" in expl.decision
    )
    assert expl.check == "skipped.nested-group-only"
    assert "Assign the nested group itself" in expl.remedy


def test_nested_only_user_without_nested_names_still_names_the_assigned_group(zendesk):
    tenant, app, evidence = zendesk
    # Evidence from an older store has no nested_groups: the story still names the assigned group.
    bare = dataclasses.replace(
        evidence,
        groups={
            gid: {k: v for k, v in g.items() if k != "nested_groups"} for gid, g in evidence.groups.items()
        },
    )
    expl = explain(bare, _user(tenant, app, "nested-only").id)
    assert "a member of a group nested inside assigned 'Support'" in expl.decision
    assert "does not follow nested groups" in expl.decision


@pytest.mark.parametrize(
    ("category", "check", "words"),
    [
        ("broken", "skipped.assignment-broken", "the assignment record is broken"),
        ("disabled", "skipped.disabled-in-source", "disabled in Entra ID (IsActive False)"),
        ("matching-empty", "skipped.matching-attribute-empty", "matching attribute 'mail'"),
        (
            "required-missing",
            "skipped.required-attribute-missing",
            "requires 'external_id', mapped from 'employeeId'",
        ),
        ("conflict", "failures.by-code", "ZendeskEntryConflict (EntryConflict)"),
        ("duplicate", "failures.by-code", "DuplicateTargetEntries"),
    ],
)
def test_each_category_gets_its_decision(zendesk, category, check, words):
    tenant, app, evidence = zendesk
    expl = explain(evidence, _user(tenant, app, category).user_principal_name)
    assert expl.check == check
    assert words in expl.decision
    assert expl.remedy


def test_scope_failure_names_the_clause_and_value(zendesk):
    tenant, app, evidence = zendesk
    contractor = next(
        tenant.users.get(i)
        for i, c in sorted(app.categories.items())
        if c == "scope-fail" and tenant.users.get(i).employee_type != "Employee"
    )
    expl = explain(evidence, contractor.id)
    assert expl.check == "skipped.scoping-filter"
    assert (
        f"employeeType EQUALS 'Employee' is false for its value '{contractor.employee_type}'" in expl.decision
    )
    scoping = [s for s in expl.entries[-1]["steps"] if s["type"] == "scoping"][0]
    assert any("employeeType EQUALS 'Employee': false" in c for c in scoping["scope_clauses"])


def test_healthy_user_needs_nothing(zendesk):
    tenant, app, evidence = zendesk
    expl = explain(evidence, _user(tenant, app, "ok").display_name)
    assert expl.check is None
    assert expl.remedy == "Nothing to do."
    assert "Support" in expl.assignment


def test_group_with_empty_matching_attribute(zendesk):
    _tenant, _app, evidence = zendesk
    expl = explain(evidence, "support escalations")
    assert expl.kind == "Group"
    assert expl.check == "skipped.group-matching-id-empty"
    assert "neither the group nor its members are provisioned" in expl.decision


def test_entries_are_the_objects_story_oldest_first_with_steps(zendesk):
    tenant, app, evidence = zendesk
    user = _user(tenant, app, "broken")
    expl = explain(evidence, user.user_principal_name.upper())
    events = evidence.events[evidence.events["source_id"] == user.id]
    assert len(expl.entries) == len(events)
    times = [e["time"] for e in expl.entries]
    assert times == sorted(times)
    assert set(e["cycle_id"] for e in expl.entries) == set(events["cycle_id"])
    first = expl.entries[0]
    assert [s["name"] for s in first["steps"]] == [
        "EntryImportAdd",
        "EntrySynchronizationScoping",
        "EntrySynchronizationSkip",
    ]
    assert first["steps"][1]["details"]["Assigned to the application"] == "False"
    assert f"{len(events)} entries" in expl.history
    data = json.loads(json.dumps(expl.as_dict()))
    assert data["object_id"] == user.id and data["entries"][0]["steps"]
    text = format_explanation(expl)
    assert "Decision:" in text and "What to do:" in text and "EntrySynchronizationSkip" in text


def test_unknown_object_is_explained_not_raised(zendesk):
    expl = explain(zendesk[2], "nobody@contoso.com")
    assert expl.object_id is None
    assert "Nothing in the evidence matches 'nobody@contoso.com'" in expl.decision


# ---- hand-built evidence ----------------------------------------------------------------------------------


def _entry(n: int, user: str, name: str, minutes_ago: float, status: str = "success") -> dict:
    return {
        "id": f"e{n}",
        "activityDateTime": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "cycleId": f"c{n}",
        "changeId": f"ch{n}",
        "provisioningAction": "update",
        "sourceIdentity": {"id": user, "displayName": name, "identityType": "User"},
        "provisioningStatusInfo": {"status": status},
        "provisioningSteps": [],
    }


def _evidence(
    entries: list[dict], *, job_code: str = "Active", schedule: str = "Active", **kwargs
) -> Evidence:
    job = {"id": "j", "schedule": {"state": schedule}, "status": {"code": job_code}}
    return Evidence(
        tenant_id="t",
        service_principal_id="sp",
        app_id=None,
        display_name="Fabrikam",
        tables=events_from_records(entries),
        jobs=jobs_from_records([job], snapshot_time=NOW, service_principal_id="sp"),
        job=job,
        now=NOW,
        **kwargs,
    )


def test_a_display_name_shared_by_two_users_is_ambiguous():
    ev = _evidence([_entry(1, "u1", "Alex Wilber", 30), _entry(2, "u2", "Alex Wilber", 20)])
    with pytest.raises(ConfigError) as raised:
        explain(ev, "Alex Wilber")
    assert "u1" in str(raised.value) and "u2" in str(raised.value)
    assert explain(ev, "u2").object_id == "u2"


def test_assigned_user_without_entries_points_to_provision_on_demand():
    assignments = [{"principalType": "User", "principalId": "u7", "principalDisplayName": "Megan Bowen"}]
    users = {"u7": {"id": "u7", "displayName": "Megan Bowen", "userPrincipalName": "megan@contoso.com"}}
    expl = explain(_evidence([], assignments=assignments, users=users), "megan@contoso.com")
    assert expl.object_id == "u7" and expl.entries == []
    assert "No log entry" in expl.decision and "assigned directly" in expl.decision
    assert "provision on demand" in expl.remedy


def test_the_job_state_is_part_of_the_story():
    expl = explain(_evidence([_entry(1, "u1", "Lee Gu", 30)], job_code="Paused", schedule="Paused"), "Lee Gu")
    assert "paused" in expl.job_note
    assert "Job: The job is paused" in format_explanation(expl)


def test_only_the_latest_entries_are_kept_and_the_rest_counted():
    entries = [_entry(n, "u1", "Lee Gu", 1000 - n) for n in range(60)]
    expl = explain(_evidence(entries), "u1")
    assert len(expl.entries) == 50 and expl.omitted == 10
    assert expl.entries[-1]["change_id"] == "ch59"
    assert "60 entries" in expl.history
