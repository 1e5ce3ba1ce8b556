"""What a real tenant does that provkit must survive: documented errors, documented-only query operators,
per-object audits, the provisionOnDemand answer shapes. All against the local Graph-compatible server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from provkit.data.auth import Settings, sign_in
from provkit.data.graph import GraphClient
from provkit.data.ondemand import read_on_demand
from provkit.data.pacing import AuditPacer
from provkit.data.stepdetails import scope_clauses
from provkit.data.tables import events_from_records
from provkit.errors import PermissionDeniedError
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant

NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
START, END = NOW - timedelta(days=2), NOW
SECRET = "sim~fidelity-test-secret-0123456789"


def serve(**knobs: object) -> RunningServer:
    tenant = Tenant(seed=11, users_count=300, days=2, now=NOW, scenarios=("healthy", "skipped-users"))
    for name, value in knobs.items():
        setattr(tenant, name, value)
    return start_server(tenant, throttle=False, client_secret=SECRET)


def client_for(server: RunningServer, client_id: str | None = None) -> GraphClient:
    env = server.env()
    if client_id:
        env["PROVKIT_CLIENT_ID"] = client_id
    settings = Settings.from_env(env)
    tokens = sign_in(settings, method="secret", secret=SECRET, cache_path=False)
    return GraphClient(settings, tokens, pacer=AuditPacer(limit=10_000, per=1.0))


@pytest.fixture(scope="module")
def plain() -> Iterator[RunningServer]:
    server = serve()
    yield server
    server.stop()


def queries(server: RunningServer) -> list[dict[str, str]]:
    """The query options of every /auditLogs/provisioning request the server saw (nextLinks included)."""
    out = []
    for record in server.graph.requests:
        parts = urlsplit(record.path)
        if parts.path.endswith("/auditLogs/provisioning"):
            out.append(dict(parse_qsl(parts.query)))
    return out


def ids_of(client: GraphClient, sp_id: str) -> list[str]:
    return [
        e["id"] for page in client.provisioning_pages(sp_id, START, END, page_size=50) for e in page["value"]
    ]


def test_a_tenant_refusing_undocumented_operators_loses_no_entry_and_the_fallback_is_remembered(
    plain: RunningServer,
) -> None:
    reference = client_for(plain)
    sp_id = reference.resolve_app("Zendesk").service_principal_id
    expected = ids_of(reference, sp_id)
    assert expected
    strict = serve(documented_queries_only=True)
    try:
        client = client_for(strict)
        got = ids_of(client, sp_id)
        assert got == expected  # every entry, oldest first, although Graph gave them newest first
        first = queries(strict)
        assert " ge " in first[0]["$filter"] and first[0]["$orderby"] == "activityDateTime asc"  # refused
        assert ids_of(client, sp_id) == expected  # a second fetch starts with the fallback
        later = [q for q in queries(strict)[len(first) :] if "$filter" in q]
        assert later and all(" gt " in q["$filter"] and "$orderby" not in q for q in later)
    finally:
        strict.stop()


def test_per_object_audits_are_filtered_out_at_the_query(plain: RunningServer) -> None:
    client = client_for(plain)
    every = client.get("/auditLogs/directoryAudits")["value"]
    assert any(a["activityDisplayName"] == "Export" for a in every)
    before = len(plain.graph.requests)
    audits = client.directory_audits(START - timedelta(days=30), END + timedelta(days=1))
    names = {a["activityDisplayName"] for a in audits}
    assert names and not names & {"Export", "Synchronization rule action", "Import"}
    assert "Update attribute mappings or scope" in names
    assert len(plain.graph.requests) - before <= 2  # one query (and its pages), not one per record


def test_audits_still_arrive_when_graph_refuses_an_or_of_activity_names(plain: RunningServer) -> None:
    expected = client_for(plain).directory_audits(START - timedelta(days=30), END + timedelta(days=1))
    strict = serve(documented_queries_only=True)
    try:
        client = client_for(strict)
        got = client.directory_audits(START - timedelta(days=30), END + timedelta(days=1))
        assert [a["id"] for a in got] == [a["id"] for a in expected] and got
        before = len(strict.graph.requests)
        client.directory_audits(START, END)  # remembered: no refused "or" query first
        statuses = [r.status for r in strict.graph.requests[before:] if "directoryAudits" in r.path]
        assert statuses and 400 not in statuses
    finally:
        strict.stop()


def test_no_premium_licence_gives_the_licence_403_with_its_remedy() -> None:
    server = serve(premium=False)
    try:
        client = client_for(server)
        sp_id = client.resolve_app("Zendesk").service_principal_id
        with pytest.raises(PermissionDeniedError) as caught:
            ids_of(client, sp_id)
        error = caught.value
        assert error.code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
        assert "P1 or P2 licence" in str(error) and "P1 or P2" in error.remedy
        assert client.list_jobs(sp_id)  # the synchronization API still answers
    finally:
        server.stop()


def test_a_missing_log_permission_names_the_permission(plain: RunningServer) -> None:
    client = client_for(plain, plain.restricted_client_id)
    with pytest.raises(PermissionDeniedError) as caught:
        client.directory_audits(START, END)
    error = caught.value
    assert error.code == "Authentication_MSGraphPermissionMissing"
    assert "AuditLog.Read.All" in str(error) and "licence" not in str(error)
    assert "sign in again" in error.remedy


def test_provision_on_demand_answers_in_the_documented_shapes(plain: RunningServer) -> None:
    tenant = plain.tenant
    admin = client_for(plain, plain.admin_client_id)
    admin.allow_writes = True
    seen_shapes = set()
    for app in tenant.apps:
        user = tenant.users.get(next(iter(app.categories)))
        rule = tenant.schema(app)["synchronizationRules"][0]["id"]
        body = {
            "parameters": [{"ruleId": rule, "subjects": [{"objectId": user.id, "objectTypeName": "User"}]}]
        }
        path = f"/servicePrincipals/{app.sp_id}/synchronization/jobs/{app.job_id}/provisionOnDemand"
        answer = admin.post(path, json=body, changes_tenant=True)
        assert set(answer) >= {"key", "value"}
        value = json.loads(answer["value"])
        records = value if isinstance(value, list) else [value]
        seen_shapes.add("list" if isinstance(value, list) else "object")
        steps = records[0]["provisioningSteps"]
        assert steps[0]["name"] == "EntryImport" and steps[0]["type"] == "Import" and "timestamp" in steps[0]
        scoping = next(s for s in steps if s["type"] == "Scoping")["details"]
        assert {"IsActive", "Assigned", "IsEffectivelyEntitledForProvisioning"} <= set(scoping)
        assert scoping["IsInProvisioningScopeDisplayName"] in ("True", "False")
        assert scope_clauses(scoping["ScopeEvaluationResult"]) is not None
        # read back in either shape; the on-demand keys fill the same columns as the log keys
        result = read_on_demand(answer)
        assert result.result in ("Success", "Skipped", "Failure") and result.error_code
        event = events_from_records(result.entries).events.iloc[0]
        assert event["is_active"] == (scoping["IsActive"] == "True")
        assert event["assigned"] == (scoping["Assigned"] == "True")
        bad = dict(body, parameters=[dict(body["parameters"][0], ruleId="not-a-rule")])
        with pytest.raises(Exception) as refused:
            admin.post(path, json=bad, changes_tenant=True)
        assert getattr(refused.value, "status", None) == 400
    assert seen_shapes == {"list", "object"}


# The v1.0 provisionOnDemand page's example answer, as documented (shortened to the fields read here).
DOCUMENTED_ON_DEMAND = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.stringKeyStringValuePair",
    "key": json.dumps(
        {
            "result": "Skipped",
            "details": {
                "errorCode": "RedundantExport",
                "errorMessage": "The state of the user in both the source and target systems already match.",
            },
        }
    ),
    "value": json.dumps(
        {
            "action": "Other",
            "changeId": "g8ba3be8-1d7f-4a60-ae31-a8980da0a389",
            "endTime": "2020-06-26T13:58:24.7682084Z",
            "provisioningSteps": [
                {
                    "name": "EntryImport",
                    "type": "Import",
                    "status": "Success",
                    "description": "Retrieved User 'BillBob@contoso.com' from Azure Active Directory",
                    "timestamp": "2020-06-26T13:58:24.5494971Z",
                    "details": {"accountEnabled": "True", "IsSoftDeleted": "False"},
                },
                {
                    "name": "EntrySynchronizationScoping",
                    "type": "Scoping",
                    "status": "Success",
                    "description": "Determine if User in scope by evaluating against each scoping filter",
                    "timestamp": "2020-06-26T13:58:24.7526181Z",
                    "details": {
                        "IsActive": "True",
                        "Assigned": "True",
                        "IsEffectivelyEntitledForProvisioning": "True",
                        "IsInProvisioningScopeDisplayName": "True",
                        "ScopeEvaluationResult": "{}",
                    },
                },
                {
                    "name": "EntrySynchronizationSkip",
                    "type": "Export",
                    "status": "Skipped",
                    "description": "The state of the user in both the source and target systems already match.",
                    "timestamp": "2020-06-26T13:58:24.7682084Z",
                    "details": {"SkipReason": "RedundantExport"},
                },
            ],
            "reportableIdentifier": "BillBob@contoso.com",
            "statusInfo": {"status": "Skipped", "errorCode": None, "reason": None},
            "sourceIdentity": {
                "id": "62cf7b7a-52be-4a9b-9c69-e5d4a4a14f67",
                "type": "User",
                "displayName": None,
            },
        }
    ),
}


def test_the_documented_on_demand_example_reads_into_the_tables() -> None:
    result = read_on_demand(DOCUMENTED_ON_DEMAND)
    assert (result.result, result.error_code) == ("Skipped", "RedundantExport")
    t = events_from_records(result.entries)
    event = t.events.iloc[0]
    assert (
        event["is_active"],
        event["assigned"],
        event["effectively_entitled"],
        event["scoping_result"],
    ) == (
        True,
        True,
        True,
        True,
    )
    assert event["skip_reason"] == "RedundantExport" and event["status"] == "skipped"
    assert list(t.steps["step_type"]) == ["import", "scoping", "export"]
    # the cross-tenant guide's shape: a type name as key, a list as value
    listed = {
        "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
        "value": json.dumps([json.loads(DOCUMENTED_ON_DEMAND["value"])]),
    }
    again = read_on_demand(listed)
    assert again.result == "Skipped" and again.error_code == "RedundantExport" and len(again.entries) == 1
