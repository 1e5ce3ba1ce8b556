"""Provisioning on demand against the local server: every step of the answer shown, a group with up to five
members, and clear refusals (nothing sent) where the documentation says the request cannot work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from provkit.data.auth import Settings, sign_in
from provkit.data.graph import GraphClient
from provkit.data.ondemand import format_on_demand, on_demand_request, read_on_demand
from provkit.errors import ConfigError, GraphError
from provkit.sim.server import RunningServer, start_server
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
SECRET = "sim~on-demand-test-secret-0123456789"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    tenant = Tenant(seed=5, users_count=400, days=3, now=NOW, scenarios=("manager-references", "sync-all"))
    running = start_server(tenant, throttle=False, client_secret=SECRET)
    yield running
    running.stop()


def admin(server: RunningServer) -> GraphClient:
    env = server.env()
    env["PROVKIT_CLIENT_ID"] = server.admin_client_id
    settings = Settings.from_env(env)
    client = GraphClient(settings, sign_in(settings, method="secret", secret=SECRET, cache_path=False))
    client.allow_writes = True
    return client


def _job_path(app) -> str:
    return f"/servicePrincipals/{app.sp_id}/synchronization/jobs/{app.job_id}"


def _request(server: RunningServer, app, object_id: str, **kw) -> dict:
    tenant = server.tenant
    groups = {
        a["principalId"].lower() for a in tenant.app_role_assigned_to(app) if a["principalType"] == "Group"
    }
    return on_demand_request(
        rule_id=tenant.schema(app)["synchronizationRules"][0]["id"],
        object_id=object_id,
        job=admin(server).get(_job_path(app)),
        assigned_groups=groups,
        app=app.display_name,
        **kw,
    )


def test_a_group_with_its_members_shows_every_step(server: RunningServer) -> None:
    tenant = server.tenant
    app = tenant.apps[0]  # manager-references: groups are provisioned
    group = app.assigned_groups[0]
    members = [tenant.users.get(u).id for u in group.user_members[:3]]
    body = _request(server, app, group.id, kind="Group", members=members)
    subject = body["parameters"][0]["subjects"][0]
    assert subject["objectTypeName"] == "Group"
    assert [m["objectId"] for m in subject["links"]["members"]] == members
    answer = admin(server).post(_job_path(app) + "/provisionOnDemand", json=body, changes_tenant=True)
    result = read_on_demand(answer)
    assert result.result == "Success"
    text = format_on_demand(result)
    steps = result.entries[0]["provisioningSteps"]
    assert len(steps) >= 4
    for n, step in enumerate(steps, start=1):
        assert f"  {n}. {step['name']} [{step['provisioningStepType']}]" in text
    assert "IsEffectivelyEntitledForProvisioning: True" in text  # the details are shown too
    assert tenant.users.get(group.user_members[0]).user_principal_name in text


def test_a_user_answer_lists_every_step_in_either_shape(server: RunningServer) -> None:
    tenant = server.tenant
    app = tenant.apps[0]
    user = next(u for u, c in app.categories.items() if c == "ok")
    body = _request(server, app, tenant.users.get(user).id)
    answer = admin(server).post(_job_path(app) + "/provisionOnDemand", json=body, changes_tenant=True)
    result = read_on_demand(answer)
    text = format_on_demand(result)
    assert text.splitlines()[0] == result.words
    assert sum(1 for line in text.splitlines() if line.startswith("  ") and ". Entry" in line) == len(
        result.entries[0]["provisioningSteps"]
    )


def test_more_than_five_members_is_refused_before_sending_and_by_the_server(server: RunningServer) -> None:
    tenant = server.tenant
    app = tenant.apps[0]
    group = app.assigned_groups[0]
    six = [tenant.users.get(u).id for u in group.user_members[:6]]
    with pytest.raises(ConfigError, match="1 to 5 of its members"):
        _request(server, app, group.id, kind="Group", members=six)
    with pytest.raises(ConfigError, match="1 to 5"):
        _request(server, app, group.id, kind="Group", members=[])
    raw = {
        "parameters": [
            {
                "ruleId": tenant.schema(app)["synchronizationRules"][0]["id"],
                "subjects": [
                    {
                        "objectId": group.id,
                        "objectTypeName": "Group",
                        "links": {"members": [{"objectId": m, "objectTypeName": "User"} for m in six]},
                    }
                ],
            }
        ]
    }
    with pytest.raises(GraphError) as refused:
        admin(server).post(_job_path(app) + "/provisionOnDemand", json=raw, changes_tenant=True)
    assert refused.value.status == 400


def test_a_group_not_assigned_and_members_of_a_user_are_refused(server: RunningServer) -> None:
    tenant = server.tenant
    app = tenant.apps[0]
    other = tenant.directory.by_name["Finance"]
    with pytest.raises(ConfigError, match="not directly assigned"):
        _request(server, app, other.id, kind="Group", members=[tenant.users.get(other.user_members[0]).id])
    user = tenant.users.get(next(iter(app.categories))).id
    with pytest.raises(ConfigError, match="only with a group"):
        _request(server, app, user, members=[user])


def test_an_oauth_app_needs_its_job_stopped_first(server: RunningServer) -> None:
    tenant = server.tenant
    app = tenant.apps[1]  # sync-all: Google Workspace (gsuite), an OAuth app
    user = tenant.users.get(next(u for u, c in app.categories.items() if c == "ok")).id
    with pytest.raises(ConfigError) as refused:
        _request(server, app, user)
    assert "must be stopped" in str(refused.value) and "nothing was sent" in str(refused.value)
    client = admin(server)
    client.post(_job_path(app) + "/pause", json={}, changes_tenant=True)
    body = _request(server, app, user)  # stopped now: allowed
    answer = client.post(_job_path(app) + "/provisionOnDemand", json=body, changes_tenant=True)
    assert read_on_demand(answer).result in ("Success", "Skipped", "Failure")
