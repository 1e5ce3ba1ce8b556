"""The simulated Log Analytics query API, spoken to over HTTPS as any client would.

Shapes asserted here are the documented ones (response-format and errors pages of the Log Analytics API docs):
``tables`` with ``name``/``columns``/``rows``, OneAPI error bodies with ``innererror``, ``PartialError``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from provkit.data.sources.loganalytics import DiagnosticSettingsError, LogAnalytics
from provkit.sim.entries import render_entry
from provkit.sim.laformat import passes_through
from provkit.sim.loganalytics import DYNAMIC_COLUMNS, PROVISIONING_COLUMNS, Workspace, la_row
from provkit.sim.server import start_server
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    tenant = Tenant(seed=7, users_count=400, days=3, now=NOW)
    srv = start_server(tenant, throttle=False)
    yield srv
    srv.stop()


def token(srv, resource: str) -> str:
    answer = requests.post(
        f"{srv.base_url}/{srv.tenant.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": srv.client_id,
            "client_secret": srv.client_secret,
            "scope": f"{resource}/.default",
        },
        verify=str(srv.ca_path),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def ask(srv, body: dict, *, bearer: str | None, workspace: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    wid = workspace or srv.graph.workspace.workspace_id
    return requests.post(
        f"{srv.base_url}/v1/workspaces/{wid}/query",
        json=body,
        headers=headers,
        verify=str(srv.ca_path),
        timeout=60,
    )


@pytest.fixture(scope="module")
def la_token(server) -> str:
    return token(server, "https://api.loganalytics.io")


def test_env_names_the_workspace_and_its_url(server) -> None:
    env = server.env()
    assert env["PROVKIT_LOGANALYTICS_URL"] == server.base_url
    assert env["PROVKIT_WORKSPACE_ID"] == server.graph.workspace.workspace_id


def test_a_summarize_answers_in_the_documented_table_shape(server, la_token) -> None:
    answer = ask(
        server,
        {
            "query": "AADProvisioningLogs | summarize n = count(), latest = max(TimeGenerated) by ResultType | order by ResultType asc"
        },
        bearer=la_token,
    )
    assert answer.status_code == 200, answer.text
    table = answer.json()["tables"][0]
    assert table["name"] == "PrimaryResult"
    assert table["columns"] == [
        {"name": "ResultType", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "latest", "type": "datetime"},
    ]
    statuses = [row[0] for row in table["rows"]]
    assert statuses == sorted(statuses) and {"Success", "Failure", "Skipped"} <= set(statuses)
    assert all(row[2].endswith("Z") for row in table["rows"])
    # the rows are the simulated history: as many entries as Graph serves for the tenant's window
    total = sum(row[1] for row in table["rows"])
    tenant = server.tenant
    expected = sum(
        c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
        for a in tenant.apps
        for c in a.timeline().cycles
    )
    assert total == expected


def test_json_columns_are_strings_that_parse_json_reads(server, la_token) -> None:
    answer = ask(
        server,
        {
            "query": "AADProvisioningLogs | extend sp = parse_json(ServicePrincipal) "
            "| summarize n = count() by App = tostring(sp.Name) | order by App asc"
        },
        bearer=la_token,
    )
    names = [row[0] for row in answer.json()["tables"][0]["rows"]]
    assert names and "Zendesk" in names
    raw = ask(server, {"query": "AADProvisioningLogs | take 1 | project ProvisioningSteps"}, bearer=la_token)
    assert isinstance(raw.json()["tables"][0]["rows"][0][0], str)


def test_timespan_limits_every_table_it_reads(server, la_token) -> None:
    whole = ask(server, {"query": "AADProvisioningLogs | count"}, bearer=la_token).json()
    day = ask(server, {"query": "AADProvisioningLogs | count", "timespan": "P1D"}, bearer=la_token).json()
    bounded = ask(
        server,
        {"query": "AADProvisioningLogs | count", "timespan": "2026-11-30T00:00:00Z/2026-12-01T00:00:00Z"},
        bearer=la_token,
    ).json()
    assert 0 < day["tables"][0]["rows"][0][0] < whole["tables"][0]["rows"][0][0]
    assert bounded == day


def test_bad_kql_is_a_documented_syntax_error(server, la_token) -> None:
    answer = ask(server, {"query": "AADProvisioningLogs | wherez ResultType"}, bearer=la_token)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "BadArgumentError"
    assert error["innererror"]["code"] == "SyntaxError"


def test_an_unknown_table_is_a_semantic_error_naming_it(server, la_token) -> None:
    answer = ask(server, {"query": "SigninLogs | count"}, bearer=la_token)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "BadArgumentError" and error["innererror"]["code"] == "SemanticError"
    assert "Failed to resolve table or column expression named 'SigninLogs'" in str(error)


def test_bad_timespan_and_missing_query_are_bad_arguments(server, la_token) -> None:
    assert (
        ask(
            server, {"query": "AADProvisioningLogs | count", "timespan": "yesterday"}, bearer=la_token
        ).status_code
        == 400
    )
    answer = ask(server, {"timespan": "P1D"}, bearer=la_token)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadArgumentError"


def test_authentication_errors_follow_the_docs(server, la_token) -> None:
    missing = ask(server, {"query": "AADProvisioningLogs | count"}, bearer=None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "AuthenticationFailed"
    graph_token = token(server, server.base_url)  # a token for Graph, not for Log Analytics
    wrong = ask(server, {"query": "AADProvisioningLogs | count"}, bearer=graph_token)
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    broken = ask(server, {"query": "AADProvisioningLogs | count"}, bearer="not-a-jwt")
    assert broken.status_code == 403 and broken.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_an_unknown_workspace_is_not_found(server, la_token) -> None:
    answer = ask(
        server,
        {"query": "AADProvisioningLogs | count"},
        bearer=la_token,
        workspace="00000000-0000-0000-0000-000000000001",
    )
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "PathNotFoundError"


def test_a_result_over_the_row_limit_is_partial_not_cut_silently(server, la_token) -> None:
    workspace = server.graph.workspace
    saved = workspace.max_rows
    workspace.max_rows = 25
    try:
        answer = ask(server, {"query": "AADProvisioningLogs | project Id"}, bearer=la_token)
    finally:
        workspace.max_rows = saved
    assert answer.status_code == 200
    body = answer.json()
    assert len(body["tables"][0]["rows"]) == 25
    assert body["error"]["code"] == "PartialError"


def test_the_workspace_throttles_on_its_own(server, la_token) -> None:
    throttle = server.graph.la_throttle
    saved = (throttle.enabled, throttle.limit)
    throttle.enabled, throttle.limit = True, 2
    throttle._calls.clear()
    try:
        codes = [ask(server, {"query": "AADProvisioningLogs | take 1"}, bearer=la_token) for _ in range(3)]
    finally:
        throttle.enabled, throttle.limit = saved
        throttle._calls.clear()
    assert [a.status_code for a in codes] == [200, 200, 429]
    assert int(codes[2].headers["Retry-After"]) >= 1
    # Graph's reporting throttle is a different quota: the workspace's 429 took nothing from it
    assert not server.graph.throttle._calls


def test_a_workspace_without_diagnostic_settings_has_no_tables() -> None:
    tenant = Tenant(seed=7, users_count=200, days=1, now=NOW)
    with start_server(tenant, throttle=False, workspace_tables=False) as srv:
        answer = ask(
            srv, {"query": "AADProvisioningLogs | take 1"}, bearer=token(srv, "https://api.loganalytics.io")
        )
    assert answer.status_code == 400
    assert "Failed to resolve table or column expression named 'AADProvisioningLogs'" in answer.text


@pytest.mark.parametrize("diagnostic_settings", [True, False])
def test_the_emulator_writes_the_workspace_settings_that_provkit_reads(
    tmp_path, diagnostic_settings: bool
) -> None:

    script = Path(sys.executable).with_name("provkit")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "provkit.cli.main"]
    env_file = tmp_path / "provkit.env"
    command += ["emulator", "--port", "0", "--users", "200", "--days", "1", "--scenario", "healthy"]
    command += ["--env-file", str(env_file), "--state-dir", str(tmp_path / "state")]
    if not diagnostic_settings:
        command.append("--no-diagnostic-settings")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not env_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the env file never appeared"
            time.sleep(0.1)
        values = dict(
            line.split("=", 1)
            for line in env_file.read_text().splitlines()
            if line and not line.startswith("#")
        )
        assert values["PROVKIT_LOGANALYTICS_URL"] == values["PROVKIT_GRAPH_URL"]
        la = LogAnalytics.connect(
            environ=values, method="secret", secret=values["PROVKIT_CLIENT_SECRET"], cache_path=False
        )
        assert la.workspace_id == values["PROVKIT_WORKSPACE_ID"]
        if diagnostic_settings:
            assert la.query("AADProvisioningLogs | count", None).iloc[0, 0] > 0
        else:
            with pytest.raises(DiagnosticSettingsError):
                la.check_tables()
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_loaded_rows_follow_the_documented_mapping_of_each_entry() -> None:
    """The table a query reads gives, column by column, what la_row says each entry becomes: the load keeps one
    rendering per outcome and renders the large JSON columns when they are read, and neither changes a value."""

    tenant = Tenant(seed=3, users_count=300, days=2, now=NOW)
    workspace = Workspace(tenant, "11111111-1111-1111-1111-111111111111", workers=2)
    assert workspace.load().workers == 2  # the worker processes' path, as a large tenant takes
    names = list(PROVISIONING_COLUMNS)
    con = workspace._connection()
    workspace._scope(None, con)
    loaded = {
        row[names.index("Id")]: row for row in con.execute("SELECT * FROM AADProvisioningLogs").fetchall()
    }
    expected = {}
    for app in tenant.apps:
        for cycle in app.timeline().cycles:
            for i in range(
                cycle.entries_before(tenant.window_start), cycle.entries_before(tenant.now_ticks + 1)
            ):
                row = la_row(render_entry(app, cycle, i))
                expected[row[names.index("Id")]] = row
    assert len(loaded) == len(expected) > 100
    statuses = set()
    for key, want in expected.items():
        got = loaded[key]
        for c, name in enumerate(names):
            if name == "TenantId":
                assert got[c] == workspace.workspace_id
            elif name == "TimeGenerated":
                assert got[c].isoformat()[:26] == want[c][:26]
            elif name in DYNAMIC_COLUMNS:
                assert json.loads(got[c]) == json.loads(want[c]), (name, key)
            else:
                assert got[c] == want[c], (name, key)
        statuses.add(got[names.index("ResultType")])
    assert {"Success", "Failure", "Skipped"} <= statuses


def test_late_entries_reach_the_workspace_when_graph_has_them() -> None:

    tenant = Tenant(seed=7, users_count=300, days=1, now=NOW, late_share=0.5, late_minutes=600)
    report = Workspace(tenant, "22222222-2222-2222-2222-222222222222").load()
    written = sum(
        tenant.written(c.entry_time(i), a.index, c.no, i)
        for a in tenant.apps
        for c in a.timeline().cycles
        for i in range(c.entries_before(tenant.window_start), c.entries_before(tenant.now_ticks + 1))
    )
    everything = sum(
        c.entries_before(tenant.now_ticks + 1) - c.entries_before(tenant.window_start)
        for a in tenant.apps
        for c in a.timeline().cycles
    )
    assert report.entries == written < everything


def test_a_restart_shows_in_the_workspace_at_the_next_query() -> None:

    tenant = Tenant(seed=7, users_count=200, days=1, now=NOW)
    workspace = Workspace(tenant, "33333333-3333-3333-3333-333333333333")
    query = {
        "query": "AuditLogs | where ActivityDisplayName == 'Enable/restart provisioning configuration' | count"
    }
    before = workspace.query(query)["tables"][0]["rows"][0][0]
    app = next(a for a in tenant.apps if a.scenario.name == "healthy")
    tenant.control(app, "restart", actor="service")
    after = workspace.query(query)["tables"][0]["rows"][0][0]
    assert after == before + 1


def test_whole_entries_are_the_same_whether_a_query_reads_the_large_columns_or_not(server, la_token) -> None:
    """The workspace renders the large JSON columns only for the rows an answer keeps when a query just passes
    them through; the answer is the one a query that reads them gets (which renders them before filtering)."""
    app = next(a for a in server.tenant.apps if a.scenario.name == "skipped-users")
    base = (
        f"AADProvisioningLogs | where tostring(parse_json(ServicePrincipal).Id) =~ '{app.sp_id}' "
        "| order by Id asc | take 40"
    )
    reads = (
        " | extend n_ = strlen(ProvisioningSteps) + strlen(ModifiedProperties) + DurationMs | project-away n_"
    )
    latest = (
        " | extend o_ = tostring(parse_json(SourceIdentity).Id) | summarize arg_max(TimeGenerated, *) by o_"
    )
    joined = " | join kind=inner (AADProvisioningLogs | project Id, CycleId) on Id"
    for query in (base, base + latest + " | order by o_ asc", base + joined + " | order by Id asc"):
        passed = ask(server, {"query": query}, bearer=la_token).json()["tables"][0]
        read = ask(server, {"query": query + reads}, bearer=la_token).json()["tables"][0]
        assert passed["columns"] == read["columns"] and passed["rows"] == read["rows"], query
        assert 0 < len(passed["rows"]) <= 40 and "\x1f" not in json.dumps(passed["rows"])
        steps = [c["name"] for c in passed["columns"]].index("ProvisioningSteps")
        assert all(json.loads(row[steps]) for row in passed["rows"])  # every entry has its steps
    durations = [c["name"] for c in passed["columns"]].index("DurationMs")
    assert all(row[durations] > 0 for row in passed["rows"])


@pytest.mark.parametrize(
    ("query", "passes"),
    [
        ("AADProvisioningLogs | where ResultType == 'Failure' | take 5", True),
        ("AADProvisioningLogs | summarize arg_max(TimeGenerated, *) by CycleId", True),
        ("AADProvisioningLogs | project ProvisioningSteps", False),
        ("AADProvisioningLogs | where SourceIdentity contains 'DurationMs'", False),
        ("AADProvisioningLogs | where * has 'x'", False),
        ("search 'x'", False),
        ("AADProvisioningLogs | extend b = pack_all()", False),
    ],
)
def test_only_queries_that_cannot_read_the_large_columns_get_them_late(query: str, passes: bool) -> None:
    assert passes_through(query, ("DurationMs", "ProvisioningSteps", "ModifiedProperties")) is passes
