"""The ETA of a running initial cycle from the workspace: read from the log summary's counts of the cycle's
objects over time (summarised in KQL), not from the cycle's entries, so those entries no longer travel; the
same ETA as from every entry.

Everything goes through HTTPS to the local simulated server (msal sign-in, azure-monitor-query, KQL evaluated
by the workspace's engine), except the summary of a hand-built events table.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from provkit.analysis.checks import findings_json, run_checks
from provkit.analysis.cycles import cycles_table, initial_cycle_eta, progress_observations
from provkit.data.auth import Settings
from provkit.data.logsummary import LogSummary
from provkit.data.sources.graph import connect as graph_connect
from provkit.data.sources.loganalytics import LogAnalytics, workspace_evidence
from provkit.data.tables import events_from_records
from provkit.sim.server import start_server
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PROVKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVKIT_DEMO_USERS", "400")
    monkeypatch.setenv("PROVKIT_DEMO_DAYS", "3")


def _entry(n: int, user: str, when: datetime, cycle: str = "c2") -> dict:
    """A provisioningObjectSummary with the fields the summary reads (reference 1.8's documented shape)."""
    return {
        "id": f"e{n}",
        "activityDateTime": when.isoformat().replace("+00:00", "Z"),
        "jobId": "scim.job",
        "cycleId": cycle,
        "changeId": f"ch{n}",
        "provisioningAction": "create",
        "sourceIdentity": {"id": user, "displayName": user, "identityType": "User"},
        "targetIdentity": {"id": "", "displayName": "", "identityType": "User"},
        "provisioningStatusInfo": {"status": "success", "errorInformation": None},
        "provisioningSteps": [],
    }


def test_the_newest_cycle_counts_each_object_once_in_the_minute_it_was_first_logged() -> None:
    t0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    entries = [
        _entry(1, "old", t0 - timedelta(hours=3), cycle="c1"),  # another cycle: not counted
        _entry(2, "a", t0 + timedelta(seconds=5)),
        _entry(3, "b", t0 + timedelta(seconds=59)),
        _entry(4, "a", t0 + timedelta(minutes=1, seconds=10)),  # seen again a minute later: counted once
        _entry(5, "c", t0 + timedelta(minutes=1, seconds=30)),
        _entry(6, "old", t0 + timedelta(minutes=3)),  # in c1 before, first seen in this cycle now
        _entry(7, "b", t0 + timedelta(minutes=3, seconds=20)),
    ]
    summary = LogSummary.from_events(events_from_records(entries).events, NOW)
    cycle = summary.last_cycle
    assert cycle is not None and cycle.cycle_id == "c2" and cycle.entries == 6
    minute = pd.Timestamp(t0)
    assert cycle.first_seen == (
        (minute, 2),
        (minute + pd.Timedelta(minutes=1), 1),
        (minute + pd.Timedelta(minutes=3), 1),
    )
    assert cycle.objects == 4
    # The objects logged by a moment: exact on a minute's start and from the newest entry on; within a
    # minute, those of the minutes before it.
    assert cycle.objects_by(t0 - timedelta(seconds=1)) == 0
    assert cycle.objects_by(t0 + timedelta(minutes=2)) == 3
    assert cycle.objects_by(t0 + timedelta(minutes=1, seconds=40)) == 2  # "c" (10:01:30) left out
    assert cycle.objects_by(t0 + timedelta(minutes=3, seconds=20)) == 4
    assert cycle.objects_by(t0 + timedelta(minutes=10)) == 4
    assert cycle.last == pd.Timestamp(t0 + timedelta(minutes=3, seconds=20))


@pytest.fixture(scope="module")
def runs() -> dict[int, tuple]:
    """For the running initial cycle's app at two sizes: diagnose --workspace's evidence (findings mode), the
    rows it transferred, and the evidence of every entry of the same window (entries mode)."""
    window = (NOW - timedelta(days=3), NOW)
    out = {}
    for users in (300, 1200):
        tenant = Tenant(seed=7, users_count=users, days=3, now=NOW, scenarios=("initial-cycle-running",))
        with start_server(tenant, throttle=False) as srv:
            env = srv.env()
            secret = env["PROVKIT_CLIENT_SECRET"]
            la = LogAnalytics.connect(environ=env, method="secret", secret=secret, cache_path=False)
            client = graph_connect(Settings.from_env(env), secret=secret, method="secret", cache_path=False)
            sp_id, tenant_id = tenant.apps[0].sp_id, tenant.tenant_id
            pushed, _ = workspace_evidence(
                client, la, sp_id, window=window, tenant_id=tenant_id, mode="findings"
            )
            rows = la.transfer.rows
            every, _ = workspace_evidence(
                client, la, sp_id, window=window, tenant_id=tenant_id, mode="entries"
            )
        out[users] = (pushed, rows, every)
    return out


@pytest.mark.parametrize("users", [300, 1200])
def test_the_eta_from_the_workspace_is_the_eta_from_every_entry_without_the_cycles_entries(
    runs, users
) -> None:
    pushed, _, every = runs[users]
    from_all, from_kql = initial_cycle_eta(every), initial_cycle_eta(pushed)
    assert from_all is not None and from_all.likely is not None
    # (at 300 users the cycle began minutes ago: no progress observation yet; the log rate then)
    assert from_all.observations >= 1 if users == 1200 else from_all.likely_method.startswith("log rate")
    assert from_kql is not None and from_kql.as_dict() == from_all.as_dict()
    assert findings_json(run_checks(pushed)) == findings_json(run_checks(every))
    # The objects logged by the last progress observation, as the ETA reads them, are those the entries hold.
    events = every.events
    cycle = pushed.log_summary.last_cycle
    mine = events[events["cycle_id"] == cycle.cycle_id]
    assert cycle.objects == mine["source_id"].nunique() > 100 and cycle.entries == len(mine)
    observed = progress_observations(every)["time"]
    if users == 1200:
        # observed on a minute's start, before the newest entry: the objects of the minutes before it
        last_observed = observed.iloc[-1]
        exact = mine.loc[mine["activity_time"] <= last_observed, "source_id"].nunique()
        assert last_observed < mine["activity_time"].max()
        assert cycle.objects_by(last_observed) == exact > 100
        assert f"{exact} distinct objects logged by" in from_kql.objects_in_scope_source
    # The running cycle's entries stay in the workspace: a few of them travel (the objects a finding is about).
    held = pushed.events
    assert (held["cycle_id"] == cycle.cycle_id).sum() < 0.1 * len(mine)


def test_the_rows_sent_for_a_running_initial_cycle_do_not_grow_with_its_entries(runs) -> None:
    (_, small_rows, small), (_, large_rows, large) = runs[300], runs[1200]
    small_entries, large_entries = len(small.events), len(large.events)
    assert large_entries > 3 * small_entries > 100, (small_entries, large_entries)
    # before: every entry of the cycle travelled (rows grew with its entries, one for one)
    assert large_rows - small_rows < 0.1 * (large_entries - small_entries), (
        small_rows,
        large_rows,
        small_entries,
        large_entries,
    )


def test_the_eta_from_the_summary_is_the_eta_from_the_cycles_entries(runs) -> None:
    """A summary that does not count the cycle's objects (a source of its own): the ETA reads the entries, as
    before, and finds the same (progress observed on a minute's start and the log rate from the newest entry,
    where the counts by minute are exact)."""
    _, _, every = runs[1200]
    summary = every.summarise_logs()
    assert summary.last_cycle is not None and summary.last_cycle.first_seen
    unbinned = dataclasses.replace(
        every,
        log_summary=dataclasses.replace(
            summary, last_cycle=dataclasses.replace(summary.last_cycle, first_seen=None)
        ),
    )
    table = cycles_table(every)
    from_entries, from_summary = initial_cycle_eta(unbinned, table), initial_cycle_eta(every, table)
    assert from_entries is not None and from_entries.observations >= 1
    assert from_summary is not None and from_summary.as_dict() == from_entries.as_dict()
