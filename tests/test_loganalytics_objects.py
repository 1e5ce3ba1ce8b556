"""``diagnose --workspace`` sends the entries of the objects a finding is about, not one row per object: a
healthy object (its latest entry a successful export, or a skip because it already matches) is only counted,
in KQL. The checks still get what they judge object by object: the scope inference's exports, the referenced
objects of reference failures, the exports of objects now skipped.

Everything goes through HTTPS to the local simulated server and its KQL engine; the findings are compared with
those from every entry of the same window.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from provkit.analysis.checks import findings_json, run_checks
from provkit.analysis.checks.facts import gather
from provkit.analysis.checks.finding import EVIDENCE_ROWS
from provkit.analysis.checks.travel import judged_one_by_one
from provkit.analysis.columns import is_in
from provkit.data.auth import Settings
from provkit.data.logsummary import LogSummary
from provkit.data.sources import loganalytics_failures
from provkit.data.sources.graph import connect as graph_connect
from provkit.data.sources.loganalytics import LogAnalytics, workspace_evidence
from provkit.data.sources.loganalytics_findings import assigned_users
from provkit.sim.server import start_server
from provkit.sim.tenant import Tenant
from provkit.workbook.session import demo_tenant, load_evidence

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROVKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "400")
    monkeypatch.setenv("PROVKIT_DEMO_DAYS", "3")


def _clients(srv):
    env = srv.env()
    secret = env["PROVKIT_CLIENT_SECRET"]
    la = LogAnalytics.connect(environ=env, method="secret", secret=secret, cache_path=False)
    client = graph_connect(Settings.from_env(env), secret=secret, method="secret", cache_path=False)
    return client, la


def _both(srv, tenant, app, window, judged=None):
    """The findings-mode evidence, its rows transferred, and the entries-mode evidence of the same window."""
    client, la = _clients(srv)
    pushed, _ = workspace_evidence(
        client, la, app.sp_id, window=window, tenant_id=tenant.tenant_id, mode="findings", judged=judged
    )
    rows = la.transfer.rows
    every, _ = workspace_evidence(
        client, la, app.sp_id, window=window, tenant_id=tenant.tenant_id, mode="entries"
    )
    return pushed, rows, every


def _healthy(latest):
    exported = is_in(latest, "status", ("success",)) & is_in(latest, "action", ("create", "update"))
    redundant = is_in(latest, "status", ("skipped",)) & is_in(latest, "skip_reason", ("redundantexport",))
    return latest[exported | redundant]


def test_a_healthy_app_sends_the_same_few_rows_of_healthy_objects_whatever_its_size() -> None:
    sent = {}
    for users in (300, 1200):
        tenant = Tenant(seed=7, users_count=users, days=3, now=NOW, scenarios=("healthy",))
        window = (NOW - timedelta(days=3), NOW)
        with start_server(tenant, throttle=False) as srv:
            app = tenant.apps[0]
            pushed, rows, every = _both(srv, tenant, app, window)
        healthy = _healthy(gather(every).latest)
        held = set(pushed.events["source_id"].dropna())
        healthy_held = healthy[healthy["source_id"].isin(held)]
        # The same findings as from every entry, "of N attempted" counted over every object included.
        assert findings_json(run_checks(pushed)) == findings_json(run_checks(every)), users
        assert pushed.log_summary is not None and pushed.log_summary.objects == len(gather(every).latest)
        sent[users] = (len(healthy), len(healthy_held), rows)
    (small, small_held, small_rows), (large, large_held, large_rows) = sent[300], sent[1200]
    assert large > 3 * small > 100, sent
    # Of the healthy objects only the few the scope inference reads travel, at any size.
    assert small_held <= 4 and large_held <= 4, sent
    # What grows with the tenant is the objects the findings are about (skipped as not assigned), not the rest.
    # (before, each healthy object's latest entry travelled: a row per object)
    assert large_rows - small_rows < 0.25 * (large - small) and large_rows < 0.3 * large, sent


def test_objects_counted_by_their_latest_state_in_kql_match_every_entry_for_every_app(tmp_path) -> None:
    """Every simulated app, each with objects in other states (exported, already matching, not assigned,
    filtered out, failing, deleted, staged for deletion): the counts the checks take over every object's
    latest entry come from KQL equal to those from every entry."""
    demo = demo_tenant()
    states: set[tuple[str, str]] = set()
    for app in demo.tenant.apps:
        every = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="").evidence
        pushed = load_evidence(
            app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="findings"
        ).evidence
        expected = LogSummary.from_events(every.events, every.now)
        got = pushed.log_summary
        assert got is not None
        assert dict(got.objects_by_status) == dict(expected.objects_by_status), app.display_name
        assert dict(got.objects_by_skip_reason) == dict(expected.objects_by_skip_reason), app.display_name
        assert dict(got.failing_by_code) == dict(expected.failing_by_code), app.display_name
        assert sum(got.failing_by_code.values()) == got.objects_by_status.get("failure", 0)
        states |= {("status", s) for s in got.objects_by_status} | {
            ("skip", r) for r in got.objects_by_skip_reason
        }
        # Each object the evidence holds is held with its latest entry (no older one passes for it).
        latest = gather(every).latest.set_index("source_id")["id"]
        held = gather(pushed).latest.set_index("source_id")["id"]
        assert held.equals(latest.loc[held.index]), app.display_name
    assert {("status", "success"), ("status", "failure"), ("status", "skipped")} <= states
    assert {
        ("skip", "redundantexport"),
        ("skip", "noteffectivelyentitled"),
        ("skip", "stageddelete"),
    } <= states


def test_sync_all_is_inferred_from_the_workspace_without_every_export() -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "sync-all")
    every = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="")
    pushed = load_evidence(
        app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="findings"
    )
    title = next(f.title for f in run_checks(pushed.evidence) if f.check == "scope.sync-all")
    assert title.startswith("Scope inferred as 'Sync all users and groups'")
    assert "in the app although 'Assigned to the application' was False" in title
    assert gather(pushed.evidence).scope == gather(every.evidence).scope
    exported = _healthy(gather(every.evidence).latest)
    held = set(pushed.evidence.events["source_id"].dropna())
    assert len(exported) > 100 and len(exported[exported["source_id"].isin(held)]) <= 4


def test_the_newest_export_of_an_unassigned_user_is_found_by_the_membership_test() -> None:
    """The assigned users come from Graph; the exported users' ids travel packed, and only the newest export of
    a user outside the assignments (and not since disabled or deleted) is fetched: the one the scope inference
    picks from every entry. In the deletion-threshold app, users of an unassigned group were exported before."""
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "deletion-threshold")
    every = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="").evidence
    assigned = assigned_users(every.assignments, every.groups)
    assert assigned is not None
    events = every.events
    exports = events[
        is_in(events, "status", ("success",))
        & is_in(events, "action", ("create", "update"))
        & is_in(events, "source_type", ("user", ""))
    ]
    left = set(
        events.loc[is_in(events, "action", ("disable", "delete", "stageddelete")), "source_id"].str.lower()
    )
    env = demo.server.env()
    la = LogAnalytics.connect(
        environ=env, method="secret", secret=env["PROVKIT_CLIENT_SECRET"], cache_path=False
    )
    for known in (assigned, assigned | left):
        outside = exports[~exports["source_id"].str.lower().isin(known)]
        expected = (
            [outside.sort_values("activity_time", kind="stable").iloc[-1]["id"]] if len(outside) else []
        )
        before = la.transfer.rows
        found = la._newest_outsider_export(app.sp_id, every.window, known, [])
        assert [r["id"] for r in found] == expected
        assert la.transfer.rows - before <= 5  # a row per day of exports, then the one entry
    assert len(exports[~exports["source_id"].str.lower().isin(assigned)]) > 10
    # Every exported user assigned: nothing to fetch.
    everyone = assigned | set(exports["source_id"].str.lower())
    assert la._newest_outsider_export(app.sp_id, every.window, everyone, []) == []


def test_a_reference_failure_whose_target_was_created_later_still_says_so_from_the_workspace() -> None:
    demo = demo_tenant()
    app = next(a for a in demo.tenant.apps if a.scenario.name == "manager-references")
    every = load_evidence(app.sp_id, source="demo", since="3d", progress=False, workspace="")
    pushed = load_evidence(
        app.sp_id, source="demo", since="3d", progress=False, workspace="", logs="findings"
    )
    finding = next(f for f in run_checks(pushed.evidence) if f.check == "references.unresolved")
    assert "came into scope later: restart provisioning" in finding.title
    assert findings_json([finding]) == findings_json(
        [f for f in run_checks(every.evidence) if f.check == "references.unresolved"]
    )
    # The referenced managers' exports travel; the other exported objects do not.
    exported = _healthy(gather(every.evidence).latest)
    held = exported[exported["source_id"].isin(set(pushed.evidence.events["source_id"].dropna()))]
    assert 0 < len(held) < 0.25 * len(exported)


# ---- failing objects: counted in KQL; only those a finding lists or a check judges one by one travel ----------


def _failing(latest):
    return latest[is_in(latest, "status", ("failure",))]


def test_an_escrow_quarantine_sends_about_fifty_failing_objects_per_code_whatever_the_number_failing() -> (
    None
):
    """Dropbox Business (escrow quarantine): every export fails with one code. The failing objects are counted
    in KQL; only the newest EVIDENCE_ROWS travel (the rows failures.by-code lists), at 400 users as at 1,200."""
    held, failing = {}, {}
    for users in (400, 1200):
        tenant = Tenant(seed=7, users_count=users, days=3, now=NOW, scenarios=("escrow-quarantine",))
        window = (NOW - timedelta(days=3), NOW)
        with start_server(tenant, throttle=False) as srv:
            pushed, _rows, every = _both(srv, tenant, tenant.apps[0], window, judged=judged_one_by_one)
        everyone = _failing(gather(every).latest)
        sent = _failing(gather(pushed).latest)
        held[users], failing[users] = len(sent), len(everyone)
        # Counted over every object, whichever travelled.
        assert dict(pushed.log_summary.failing_by_code) == dict(every.summarise_logs().failing_by_code)
        assert sum(pushed.log_summary.failing_by_code.values()) == len(everyone)
        # At most about EVIDENCE_ROWS per code (objects at the same instant as the last of them, or named by
        # another entry that travels, may come along).
        for code, group in sent.groupby(sent["error_code"].fillna("")):
            assert EVIDENCE_ROWS <= len(group) <= EVIDENCE_ROWS + 10, (users, code, len(group))
        # The same failures.by-code findings (count, share, failed entries, listed rows, omitted) and the
        # same findings overall as from every entry.
        by_code = [f for f in run_checks(pushed) if f.check == "failures.by-code"]
        assert by_code and findings_json(by_code) == findings_json(
            [f for f in run_checks(every) if f.check == "failures.by-code"]
        )
        assert sum(f.count or 0 for f in by_code) == len(everyone)
        assert all(len(f.evidence) == EVIDENCE_ROWS for f in by_code)
        assert findings_json(run_checks(pushed)) == findings_json(run_checks(every)), users
    assert failing[1200] > 2 * failing[400] > 4 * EVIDENCE_ROWS, failing
    assert held[1200] <= held[400] + 10, held


@pytest.mark.parametrize(
    ("scenario", "check"),
    [
        ("manager-references", "references.unresolved"),
        ("scim-patch-incompatible", "failures.scim-incompatible"),
    ],
)
def test_failing_objects_a_check_judges_one_by_one_travel_whole(monkeypatch, scenario, check) -> None:
    """A reference failure and a SCIM 400 refusal are judged object by object: every one travels whatever the
    cut of the other failing objects (made 3 here, so that the handful the simulator writes exceed it), and
    gives the same finding as from every entry. Without the checks' rule, the cut would lose some."""
    monkeypatch.setattr(loganalytics_failures, "EVIDENCE_ROWS", 3)
    tenant = Tenant(seed=7, users_count=600, days=3, now=NOW, scenarios=(scenario,))
    window = (NOW - timedelta(days=3), NOW)
    with start_server(tenant, throttle=False) as srv:
        app = tenant.apps[0]
        pushed, _rows, every = _both(srv, tenant, app, window, judged=judged_one_by_one)
        client, la = _clients(srv)
        cut, _ = workspace_evidence(
            client,
            la,
            app.sp_id,
            window=window,
            tenant_id=tenant.tenant_id,
            mode="findings",
            judged=lambda _code, _status: False,
        )
    everyone = _failing(gather(every).latest)
    assert len(everyone) > 3
    assert set(_failing(gather(pushed).latest)["id"]) == set(everyone["id"])
    mine = [f for f in run_checks(pushed) if f.check == check]
    assert mine and mine[0].count == len(everyone)
    assert findings_json(mine) == findings_json([f for f in run_checks(every) if f.check == check])
    # The rule is what makes them travel: judged by none, only the newest 3 do, and the finding counts fewer.
    assert len(_failing(gather(cut).latest)) == 3
    assert [f.count for f in run_checks(cut) if f.check == check] == [3]
