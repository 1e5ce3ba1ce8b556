"""The loganalytics source against the simulated workspace: the same cycles, findings and explanations as from
Graph for the same window, with far fewer rows transferred, and its errors explained.

Everything goes through HTTPS to the local server: msal sign-in for the Log Analytics resource,
azure-monitor-query's LogsQueryClient, KQL evaluated by the workspace's engine.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from provkit.analysis import cycles, trends
from provkit.analysis.checks import findings_json, run_checks
from provkit.analysis.checks.explain import explain
from provkit.analysis.checks.facts import gather
from provkit.cli.main import main
from provkit.data.sources.loganalytics import (
    DiagnosticSettingsError,
    LogAnalytics,
    LogAnalyticsError,
    PartialResultError,
)
from provkit.errors import ConfigError
from provkit.sim.faults import FaultPlan
from provkit.sim.server import start_server
from provkit.sim.tenant import Tenant
from provkit.workbook import notebook as nb
from provkit.workbook.session import demo_tenant, load_evidence

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROVKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "400")
    monkeypatch.setenv("PROVKIT_DEMO_DAYS", "3")


@pytest.fixture
def store(tmp_path):
    """A store of this test's own: the demo's default store is one folder per process, and entries fetched
    here must not be read by another test's demo tenant (same ids, another clock)."""
    return tmp_path / "store"


def connect(srv) -> LogAnalytics:
    env = srv.env()
    return LogAnalytics.connect(
        environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )


def summary_of(table) -> tuple[int, dict]:
    return len(table), table["kind"].value_counts().to_dict()


@pytest.mark.parametrize("scenario", ["skipped-users", "healthy", "escrow-quarantine"])
def test_cycles_from_the_workspace_match_graph_with_aggregates_only(scenario: str, store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == scenario)
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    pushed = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="cycles")
    from_graph = cycles.cycles_table(graph)
    from_la = cycles.cycles_table(pushed.evidence)
    assert len(graph.events) > 0 and len(pushed.evidence.events) == 0  # no entry travelled
    assert abs(len(from_la) - len(from_graph)) <= 1
    assert summary_of(from_la)[1] == summary_of(from_graph)[1]
    logged = from_graph[~from_graph["inferred"]]
    assert list(from_la[~from_la["inferred"]]["cycle_id"]) == list(logged["cycle_id"])
    for column in ("entries", "n_failure", "n_skipped", "distinct_objects"):
        assert list(from_la[~from_la["inferred"]][column]) == list(logged[column]), column
    # one row per logged cycle (plus the table check, the no-cycle count and the app's audits) came back,
    # not the entries summarised
    transfer = pushed.transfer
    assert transfer.rows <= len(logged) + 2 + len(pushed.evidence.audits) < len(graph.events)
    assert (
        cycles.summary(pushed.evidence, from_la).as_dict()["cycles"]
        == cycles.summary(graph, from_graph).as_dict()["cycles"]
    )


def test_findings_from_workspace_entries_match_graph(store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "skipped-users")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    loaded = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="")
    assert len(loaded.evidence.events) == len(graph.events) > 0

    def findings(evidence):
        return [(f.check, f.severity, f.title, f.count) for f in run_checks(evidence)]

    assert findings(loaded.evidence) == findings(graph)
    assert {"skipped.scoping-filter", "skipped.disabled-in-source"} <= {f[0] for f in findings(graph)}
    # every entry, plus the one row of the check that the tables exist and the app's audit rows
    expected_rows = len(graph.events) + 1 + len(loaded.evidence.audits)
    assert loaded.transfer.rows == expected_rows and loaded.transfer.bytes > 0


def test_explain_pulls_only_the_objects_entries(store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "skipped-users")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    failed = graph.events[graph.events["status"] == "failure"].iloc[0]
    ref = failed["source_id"]
    loaded = load_evidence(
        app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="object", object_ref=ref
    )
    mine = graph.events[graph.events["source_id"] == ref]
    assert len(loaded.evidence.events) == len(mine) < len(graph.events)
    a, b = explain(graph, ref), explain(loaded.evidence, ref)
    assert (b.object_id, b.decision) == (a.object_id, a.decision)


def test_cli_cycles_with_workspace_prints_the_same_cycles_and_what_travelled(capsys, store) -> None:
    store = str(store)
    assert main(["cycles", "--demo", "--app", "Zendesk", "--since", "3d", "--json", "--store", store]) == 0
    graph = json.loads(capsys.readouterr().out)
    assert main(["cycles", "--demo", "--workspace", "--app", "Zendesk", "--since", "3d", "--json"]) == 0
    out, err = capsys.readouterr()
    pushed = json.loads(out)
    assert "Log Analytics workspace" in err and "KQL queries" in err and "KiB transferred" in err
    assert pushed["summary"]["cycles"] == graph["summary"]["cycles"]
    assert [c["kind"] for c in pushed["cycles"]] == [c["kind"] for c in graph["cycles"]]


def test_a_workspace_without_the_tables_says_diagnostic_settings_are_missing() -> None:
    tenant = Tenant(seed=7, users_count=200, days=1, now=NOW)
    with start_server(tenant, throttle=False, workspace_tables=False) as srv:
        la = connect(srv)
        with pytest.raises(DiagnosticSettingsError) as caught:
            la.check_tables((NOW - timedelta(days=1), NOW))
    text = str(caught.value)
    assert (
        "no Entra provisioning logs" in text and "Diagnostic settings" in text and "ProvisioningLogs" in text
    )
    assert srv.client_secret not in text


def test_a_partial_result_is_an_error_not_a_short_table() -> None:
    tenant = Tenant(seed=7, users_count=200, days=1, now=NOW)
    with start_server(tenant, throttle=False) as srv:
        srv.graph.workspace.max_rows = 10
        la = connect(srv)
        with pytest.raises(PartialResultError) as caught:
            la.query("AADProvisioningLogs | project Id", None)
        assert la.query("AADProvisioningLogs | count", None).iloc[0, 0] > 10
    assert caught.value.rows == 10
    assert "partial result" in str(caught.value) and "Narrow the window" in str(caught.value)


def test_refusals_name_the_cause_and_hold_no_token() -> None:
    tenant = Tenant(seed=7, users_count=200, days=1, now=NOW)
    with start_server(tenant, throttle=False) as srv:
        la = connect(srv)
        with pytest.raises(LogAnalyticsError) as bad:
            la.query("AADProvisioningLogs | wherez", None)
        la.workspace_id = "00000000-0000-0000-0000-000000000001"
        with pytest.raises(LogAnalyticsError) as unknown:
            la.query("AADProvisioningLogs | count", None)
        tokens = srv.authority.issued_tokens()
    assert (
        bad.value.status == 400
        and "SyntaxError" not in str(bad.value)
        or "recognition error" in str(bad.value)
    )
    assert unknown.value.status == 404 and "workspace ID" in str(unknown.value)
    for exc in (bad.value, unknown.value):
        assert not any(t in str(exc) or t in repr(exc) for t in tokens)


def test_failures_by_code_and_skip_reasons_are_summarised_in_kql(store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "skipped-users")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    env = demo.server.env()
    la = LogAnalytics.connect(
        environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )
    window = graph.window
    codes = la.failures_by_code(app.sp_id, window)
    failed = graph.events[graph.events["status"] == "failure"]
    assert (
        dict(zip(codes["code"], codes["entries"], strict=True))
        == failed["error_code"].value_counts().to_dict()
    )
    reasons = la.skip_reasons(app.sp_id, window)
    skipped = graph.steps[
        graph.steps["change_id"].isin(graph.events.loc[graph.events["status"] == "skipped", "change_id"])
    ]
    expected = skipped["skip_reason"].dropna()
    expected = expected[expected != ""].value_counts().to_dict()
    assert dict(zip(reasons["reason"], reasons["entries"], strict=True)) == expected
    assert la.transfer.rows == len(codes) + len(reasons) < len(failed) + len(skipped)


def test_a_query_that_times_out_is_reported_as_such() -> None:

    tenant = Tenant(seed=7, users_count=200, days=1, now=NOW)
    with start_server(tenant, throttle=False) as srv:
        la = connect(srv)
        srv.graph.faults = FaultPlan.parse("504=1.0")
        with pytest.raises(PartialResultError) as caught:
            la.query("AADProvisioningLogs | count", None)
    assert "timed out" in str(caught.value) and "Narrow the window" in str(caught.value)


def test_directory_audits_from_audit_logs_match_graphs(store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "bad-credentials")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    env = demo.server.env()
    la = LogAnalytics.connect(
        environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )
    from_la = la.audits(app.sp_id, graph.window)

    def key(audit: dict) -> tuple:
        return (audit["id"], audit["activityDisplayName"], audit["activityDateTime"][:19], audit["result"])

    assert from_la and sorted(map(key, from_la)) == sorted(map(key, graph.audits))
    assert {a["activityDisplayName"] for a in from_la} & {
        "Quarantine",
        "Enable/restart provisioning configuration",
    }


def test_long_history_trends_from_the_workspace_match_graph(store) -> None:

    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "skipped-users")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    pushed = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="cycles")
    from_graph, from_la = cycles.cycles_table(graph), cycles.cycles_table(pushed.evidence)
    weekly_graph, weekly_la = trends.incremental_by_week(from_graph), trends.incremental_by_week(from_la)
    assert len(weekly_graph) >= 1 and weekly_la["cycles"].tolist() == weekly_graph["cycles"].tolist()
    assert weekly_la["timed"].tolist() == weekly_graph["timed"].tolist()
    # Log Analytics keeps microseconds, Graph 100 ns ticks
    starts_la = trends.initial_durations(from_la)["start"].dt.floor("us").tolist()
    assert starts_la == trends.initial_durations(from_graph)["start"].dt.floor("us").tolist()
    env = demo.server.env()
    la = LogAnalytics.connect(
        environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )
    daily = la.failures_by_day(app.sp_id, graph.window)
    expected = trends.failures_by_day(graph.events)
    assert len(daily) == len(expected) > 0
    assert daily["entries"].tolist() == expected["entries"].tolist()
    assert daily["code"].tolist() == expected["code"].tolist()
    assert [d.date() for d in daily["day"]] == [d.date() for d in expected["day"]]


def test_what_diagnose_reads_from_every_entry_comes_back_as_few_rows(store) -> None:
    """The checks' inputs that span every entry (each object's latest entry, the counts by status) and the
    entries the findings cite, from KQL: the same as the Graph evidence gives, in far fewer rows."""

    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "skipped-users")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
    la = connect(demo.server)
    window, events = graph.window, graph.events

    latest = la.latest_per_object(app.sp_id, window)
    expected = gather(graph).latest
    assert sorted(r["changeId"] for r in latest) == sorted(expected["change_id"])
    assert len(latest) < len(events)

    since = graph.now - timedelta(hours=24)
    counts = la.status_counts(app.sp_id, window, since)
    by_status = events["status"].astype(str).value_counts().to_dict()
    assert dict(zip(counts["status"], counts["entries"], strict=True)) == by_status
    recent = events.loc[events["activity_time"] >= since, "status"].astype(str).value_counts().to_dict()
    assert {s: n for s, n in zip(counts["status"], counts["recent"], strict=True) if n} == recent
    assert counts["first"].min() == events["activity_time"].min().floor("us")
    assert counts["last"].max() == events["activity_time"].max().floor("us")

    findings = run_checks(graph)
    cited = {str(row["change_id"]) for f in findings for row in f.evidence if row.get("change_id")}
    assert cited, "the findings cite entries"
    entries = la.cited_entries(app.sp_id, sorted(cited), window, per_query=7)
    assert {r["changeId"] for r in entries} == cited
    assert la.transfer.rows == len(latest) + len(counts) + len(entries) < len(events)


def test_a_notebook_target_with_a_workspace_reads_the_logs_from_it_and_its_banner_says_so(store) -> None:
    demo = demo_tenant()
    workspace = demo.server.env()["PROVKIT_WORKSPACE_ID"]
    loaded = nb.load("Zendesk", nb.target("demo", workspace=workspace), since="3d")
    graph = nb.load("Zendesk", nb.target("demo", store), since="3d")
    assert loaded.workspace == workspace and loaded.transfer.rows > len(loaded.evidence.events) > 0
    assert len(loaded.evidence.events) == len(graph.evidence.events)
    assert loaded.origin().startswith(f"Evidence for Zendesk from Log Analytics workspace {workspace} (")
    assert "job status and schema from Graph of the SIMULATED tenant" in loaded.origin()
    assert "workspace" not in graph.origin()
    # An empty parameter means no workspace; a workspace cannot be read offline.
    assert nb.target("demo", workspace="").workspace is None
    with pytest.raises(ConfigError, match="cannot be read offline"):
        nb.load("Zendesk", nb.target("store", store, workspace=workspace), since="3d")


def test_failures_by_day_come_from_the_workspace_when_no_entry_travelled(store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "skipped-users")
    graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store)
    pushed = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="cycles")
    assert len(pushed.evidence.events) == 0
    rows = pushed.transfer.rows
    from_kql = pushed.failures_by_day()
    expected = trends.failures_by_day(graph.evidence.events)
    assert from_kql.to_dict("records") == expected.to_dict("records") and len(expected) > 0
    assert pushed.transfer.rows - rows == len(expected)  # one row per day and code travelled
    assert graph.failures_by_day().to_dict("records") == expected.to_dict("records")


def test_postmortem_from_a_workspace_says_where_its_logs_came_from(capsys, tmp_path) -> None:
    workspace = demo_tenant().server.env()["PROVKIT_WORKSPACE_ID"]
    argv = [
        "postmortem",
        "--demo",
        "--workspace",
        "--app",
        "Zendesk",
        "--since",
        "2d",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"Log Analytics workspace {workspace}: " in err and "KQL queries" in err
    written = Path(out.strip().splitlines()[-1]).read_text(encoding="utf-8")
    assert f"> **Source.** Evidence for Zendesk from Log Analytics workspace {workspace} (" in written
    assert "job status and schema from Graph of the SIMULATED tenant" in written


def _findings(evidence) -> list[tuple]:
    """What a user reads of each finding: id, severity, title, count, remedy and the entries it cites."""
    return [
        (f.check, f.severity, f.title, f.count, f.remedy, [r.get("change_id") for r in f.evidence])
        for f in run_checks(evidence)
    ]


def test_diagnose_pushdown_gives_every_apps_findings_from_far_fewer_rows(store) -> None:
    """For every simulated app: the findings from the pushed-down evidence (counts summarised in KQL, each
    object's latest entry and the entries the checks filter for) are those of every entry of the window, to the
    last evidence row, and those from Graph for the same window; fewer rows travel."""
    demo = demo_tenant()
    rows = {"entries": 0, "findings": 0, "narrow": 0}
    sent = {"entries": 0, "findings": 0}
    for app in demo.tenant.apps:
        graph = load_evidence(app.sp_id, source="demo", since="3d", progress=False, store=store).evidence
        every = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="")
        pushed = load_evidence(
            app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="findings"
        )
        evidence = pushed.evidence
        assert evidence.log_summary is not None and evidence.entry_count == len(every.evidence.events)
        assert len(evidence.events) <= len(every.evidence.events)
        assert findings_json(run_checks(evidence)) == findings_json(run_checks(every.evidence)), (
            app.display_name
        )
        assert _findings(evidence) == _findings(graph), app.display_name
        rows["entries"] += every.transfer.rows
        rows["findings"] += pushed.transfer.rows
        rows["narrow"] += pushed.transfer.narrow_rows
        sent["entries"] += every.transfer.bytes
        sent["findings"] += pushed.transfer.bytes
        # A narrow row reads as its whole entry for what the checks read from it.
        whole = every.evidence.events.set_index("id")
        held = evidence.events.set_index("id")
        for column in ("action", "status", "source_id", "activity_time", "assigned", "reportable_identifier"):
            assert held[column].equals(whole.loc[held.index, column]), (app.display_name, column)
    # A healthy object's entries no longer travel (26% of the rows, 19% of the bytes: the objects the findings
    # are about, whole; before, at least a row per object: 42% and 30%).
    assert rows["findings"] < 0.3 * rows["entries"], rows
    assert sent["findings"] < 0.22 * sent["entries"], sent


def test_pushed_down_evidence_counts_what_the_checks_count_over_every_entry(store) -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "escrow-quarantine")
    every = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="").evidence
    pushed = load_evidence(
        app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="findings"
    ).evidence
    a, b = every.summarise_logs(), pushed.summarise_logs()
    assert every.log_summary is None and b is pushed.log_summary
    for name in (
        "entries",
        "first",
        "last",
        "by_status",
        "last_by_status",
        "recent_since",
        "recent_by_status",
        "failures_by_code",
        "error_codes",
        "target_types",
        "last_cycle",
    ):
        assert getattr(a, name) == getattr(b, name), name
    # Objects by their latest entry's state, over every object; entries per object for those that travelled.
    assert dict(a.objects_by_status) == dict(b.objects_by_status) and a.objects == b.objects > len(
        gather(pushed).latest
    )
    assert dict(a.objects_by_skip_reason) == dict(b.objects_by_skip_reason)
    held = set(pushed.events["source_id"].dropna())
    assert held <= set(b.entries_by_object)
    assert {k: a.entries_by_object[k] for k in b.entries_by_object} == dict(b.entries_by_object)
    assert b.failures_by_code and b.last_cycle is not None and b.last_cycle.entries > 0
    # It holds only some entries: no cycles from them; the "summary" mode (a report's) adds the per-cycle rows.
    with pytest.raises(ConfigError, match="cannot be reconstructed"):
        cycles.cycles_table(pushed)
    summary = load_evidence(
        app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="summary"
    )
    expected = cycles.cycles_table(every)["cycle_id"].tolist()
    assert cycles.cycles_table(summary.evidence)["cycle_id"].tolist() == expected
    # Its counts are the window's: a narrower cut is refused rather than miscounted.
    with pytest.raises(ConfigError, match="cannot be cut to a narrower window"):
        pushed.cut(start=pushed.window[0] + timedelta(hours=1))
    assert pushed.cut(pushed.window).summarise_logs() == b
