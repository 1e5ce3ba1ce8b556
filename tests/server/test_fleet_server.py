"""One simulator serving several tenants, as the real services serve an MSP: one sign-in, Graph and Log Analytics
address for every tenant, the same multi-tenant app registration in each, a workspace per tenant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from provkit.data.auth import Settings
from provkit.data.sources.graph import connect, provisioning_apps
from provkit.data.sources.loganalytics import LogAnalytics, LogAnalyticsError
from provkit.errors import ProvkitError
from provkit.sim.fleet import start_fleet
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
UNKNOWN = "00000000-0000-4000-8000-00000000beef"


@pytest.fixture(scope="module")
def fleet():
    tenants = [Tenant(seed=seed, users_count=150, days=2, now=NOW) for seed in (7, 8, 9)]
    running = start_fleet(tenants, throttle=False, without_consent=frozenset({2}))
    yield running
    running.stop()


def _env(fleet, tenant_id: str) -> dict[str, str]:
    return dict(fleet.env(), PROVKIT_TENANT_ID=tenant_id)


def _workspace(fleet, workspace_id: str, tenant_id: str) -> LogAnalytics:
    env = _env(fleet, tenant_id)
    return LogAnalytics.connect(
        workspace_id, environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )


def test_each_tenant_is_signed_in_to_with_the_same_app_and_serves_its_own_apps(fleet) -> None:
    home, second, unconsented = fleet.members
    seen = {}
    for member in (home, second):
        env = _env(fleet, member.tenant_id)
        client = connect(
            Settings.from_env(env), secret=env["PROVKIT_CLIENT_SECRET"], method="secret", cache_path=False
        )
        seen[member.tenant_id] = {a["service_principal_id"] for a in provisioning_apps(client)}
    assert len(seen[home.tenant_id]) == len(seen[second.tenant_id]) > 0
    assert not seen[home.tenant_id] & seen[second.tenant_id]  # each tenant's own service principals
    env = _env(fleet, unconsented.tenant_id)
    with pytest.raises(ProvkitError, match="AADSTS700016"):
        connect(
            Settings.from_env(env), secret=env["PROVKIT_CLIENT_SECRET"], method="secret", cache_path=False
        )


def test_the_settings_are_the_same_for_every_tenant_but_its_id_and_workspace(fleet) -> None:
    env = fleet.env()
    assert (
        env["PROVKIT_GRAPH_URL"]
        == env["PROVKIT_AUTHORITY_URL"]
        == env["PROVKIT_LOGANALYTICS_URL"]
        == fleet.base_url
    )
    assert env["PROVKIT_TENANT_ID"] == fleet.members[0].tenant_id
    assert env["PROVKIT_WORKSPACE_ID"] == fleet.members[0].workspace_id
    lines = fleet.env_lines()
    for member in fleet.members:
        assert f"# {member.workspace_id}={member.tenant_id}" in lines
    assert len({m.workspace_id for m in fleet.members}) == len(fleet.members)


def test_each_workspace_holds_its_own_tenants_rows(fleet) -> None:
    home, second, _ = fleet.members
    for member in (home, second):
        # read as the home tenant (delegated, as with Azure Lighthouse) and as the workspace's own tenant
        for reader in {home.tenant_id, member.tenant_id}:
            frame = _workspace(fleet, member.workspace_id, reader).query(
                "AADProvisioningLogs | summarize n = count() by AADTenantId, TenantId", None
            )
            assert list(frame["AADTenantId"]) == [member.tenant_id]
            assert list(frame["TenantId"]) == [
                member.workspace_id
            ]  # TenantId is the workspace, per the reference
            assert int(frame["n"][0]) > 0


def test_a_token_of_another_customer_cannot_read_a_workspace(fleet) -> None:
    home, second, _ = fleet.members  # the second customer's token, the home tenant's workspace
    la = _workspace(fleet, home.workspace_id, second.tenant_id)
    with pytest.raises(LogAnalyticsError) as refused:
        la.query("AADProvisioningLogs | take 1", None)
    assert refused.value.status == 403


def test_an_unknown_workspace_answers_as_the_service_does(fleet) -> None:
    home = fleet.members[0]
    la = _workspace(fleet, UNKNOWN, home.tenant_id)
    with pytest.raises(LogAnalyticsError, match="The requested path does not exist") as refused:
        la.query("AADProvisioningLogs | take 1", None)
    assert refused.value.status == 404
    # the raw answer: the error body with its code, for a token signed in as any client would
    env = fleet.env()
    token = requests.post(
        f"{fleet.base_url}/{home.tenant_id}/oauth2/v2.0/token",
        data={
            "client_id": env["PROVKIT_CLIENT_ID"],
            "client_secret": env["PROVKIT_CLIENT_SECRET"],
            "scope": "https://api.loganalytics.io/.default",
            "grant_type": "client_credentials",
        },
        verify=str(fleet.ca_path),
        timeout=30,
    ).json()["access_token"]
    answer = requests.post(
        f"{fleet.base_url}/v1/workspaces/{UNKNOWN}/query",
        json={"query": "AADProvisioningLogs | take 1"},
        headers={"Authorization": f"Bearer {token}"},
        verify=str(fleet.ca_path),
        timeout=30,
    )
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert (error["code"], error["message"]) == ("PathNotFoundError", "The requested path does not exist")
