"""Cycles, watermark resets, quarantine retries and ETAs, checked against the simulated tenant's ground truth.

The simulator knows every cycle it ran (``app.timeline().cycles``: number, kind, start and end in 100-ns ticks,
entries); its cycle ids are ``codec.encode(ids.CYCLE, app.index, no)``. Each scenario's Evidence is built once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from provkit.analysis import cycles as cyc
from provkit.data.evidence import Evidence
from provkit.data.tables import events_from_records, jobs_from_records
from provkit.sim import ids
from provkit.sim.evidence import from_simulator
from provkit.sim.tenant import Tenant

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
TOLERANCE = pd.Timedelta(minutes=5)


def ts(ticks: int) -> pd.Timestamp:
    return pd.Timestamp(ticks * 100, tz="UTC")


class Scenario:
    """One scenario's app, its Evidence, its cycles table and the simulator's truth."""

    def __init__(self, tenant: Tenant, name: str) -> None:
        self.tenant = tenant
        self.app = next(a for a in tenant.apps if a.scenario.name == name)
        self.evidence = from_simulator(tenant, self.app)
        self.table = cyc.cycles_table(self.evidence)
        self.timeline = self.app.timeline()
        self.truth = {tenant.codec.encode(ids.CYCLE, self.app.index, c.no): c for c in self.timeline.cycles}

    def visible(self, cycle) -> int:
        return self.app.visible_entries(cycle) - self.app.first_visible(cycle)

    def in_window(self) -> list:
        start, now = self.tenant.window_start, self.tenant.now_ticks
        return [c for c in self.timeline.cycles if start <= c.start <= now]

    def logged(self) -> pd.DataFrame:
        return self.table[self.table["cycle_id"].notna()]

    def row(self, cycle) -> pd.Series:
        cycle_id = self.tenant.codec.encode(ids.CYCLE, self.app.index, cycle.no)
        rows = self.table[self.table["cycle_id"] == cycle_id]
        assert len(rows) == 1, f"cycle {cycle.no} appears {len(rows)} times"
        return rows.iloc[0]


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return Tenant(seed=7, users_count=2000, days=7, now=NOW)


@pytest.fixture(scope="module")
def scenarios(tenant: Tenant) -> dict[str, Scenario]:
    names = ("healthy", "initial-cycle-running", "bad-credentials", "skipped-users", "paused", "disabled")
    return {name: Scenario(tenant, name) for name in names}


@pytest.fixture(scope="module")
def escrow() -> Scenario:
    # The escrow threshold needs more than 5,000 failures: 6,000 users.
    tenant = Tenant(seed=7, users_count=6000, days=7, now=NOW, scenarios=("escrow-quarantine",))
    return Scenario(tenant, "escrow-quarantine")


def _match_times(found: list[pd.Timestamp], expected: list[pd.Timestamp]) -> tuple[list, list]:
    """(found without an expected time within TOLERANCE, expected without a found one)."""
    extra = [f for f in found if not any(abs(f - e) <= TOLERANCE for e in expected)]
    missed = [e for e in expected if not any(abs(f - e) <= TOLERANCE for f in found)]
    return extra, missed


# ---------------------------------------------------------------------------------------------------------
# Cycle ids, kinds and counts


@pytest.mark.parametrize(
    "name", ["healthy", "initial-cycle-running", "bad-credentials", "skipped-users", "paused", "escrow"]
)
def test_every_logged_cycle_has_its_id_kind_and_entries(name, scenarios, escrow):
    s = escrow if name == "escrow" else scenarios[name]
    logged = [c for c in s.timeline.cycles if s.visible(c) > 0]
    assert len(s.logged()) == len(logged)
    for cycle in logged:
        row = s.row(cycle)
        assert row["kind"] == cycle.kind, (cycle.no, row["kind_reason"])
        assert row["entries"] == s.visible(cycle)
        actions = [
            "n_create",
            "n_update",
            "n_delete",
            "n_disable",
            "n_other",
            "n_stageddelete",
            "n_unknown_action",
        ]
        assert row[actions].sum() == row["entries"]
        assert (
            row[["n_success", "n_failure", "n_skipped", "n_warning", "n_unknown_status"]].sum()
            == row["entries"]
        )


def test_counts_by_status_and_distinct_objects_agree_with_the_entries(scenarios):
    s = scenarios["skipped-users"]
    events = s.evidence.events
    initial = s.table[s.table["reset_before"]].iloc[0]
    mine = events[events["cycle_id"] == initial["cycle_id"]]
    assert initial["n_skipped"] == (mine["status"] == "skipped").sum() > 0
    assert initial["n_failure"] == (mine["status"] == "failure").sum() > 0
    assert initial["distinct_objects"] == mine["source_id"].nunique() == len(s.app.subjects)


@pytest.mark.parametrize(
    ("name", "reason", "activity"),
    [
        ("healthy", "attribute-mapping", "Update attribute mappings or scope"),
        ("skipped-users", "scoping", "Update attribute mappings or scope"),
        ("paused", "restart", "Enable/restart provisioning configuration"),
    ],
)
def test_a_watermark_reset_makes_the_next_cycle_initial_and_says_why(name, reason, activity, scenarios):
    s = scenarios[name]
    truth = [c for c in s.timeline.cycles if c.reset_reason]
    assert [c.reset_reason for c in truth] == [reason]
    row = s.row(truth[0])
    assert row["kind"] == "initial"
    # The documented audit name does not tell a mapping change from a scope change.
    assert row["reset_before"] and row["reset_reason"] == (
        "restart" if reason == "restart" else "mapping-or-scope"
    )
    assert "watermark reset" in row["kind_reason"]
    assert s.table["reset_before"].sum() == 1
    audit = next(a for a in s.evidence.audits if a["activityDisplayName"] == activity)
    assert pd.Timestamp(audit["activityDateTime"]) <= row["start"]


def test_the_first_cycle_of_the_job_is_initial_by_steady_state(scenarios):
    s = scenarios["healthy"]
    first = s.row(s.timeline.cycles[0])
    assert first["kind"] == "initial"
    assert "steady state" in first["kind_reason"]


def test_a_running_first_cycle_is_initial_because_the_job_has_not_run(scenarios):
    s = scenarios["initial-cycle-running"]
    row = s.row(s.timeline.cycles[0])
    assert row["kind"] == "initial" and "NotRun" in row["kind_reason"]
    assert row["running"] and row["duration_is_lower_bound"]


def test_the_shape_rule_finds_initial_cycles_without_any_documented_signal(scenarios):
    s = scenarios["healthy"]
    bare = Evidence(
        tenant_id=s.evidence.tenant_id,
        service_principal_id=s.evidence.service_principal_id,
        app_id=None,
        display_name="logs only",
        tables=s.evidence.tables,
        now=s.evidence.now,
        window=s.evidence.window,
    )
    table = cyc.cycles_table(bare)
    initial = table[table["kind"] == "initial"]
    truth_ids = {
        s.tenant.codec.encode(ids.CYCLE, s.app.index, c.no) for c in s.timeline.cycles if c.kind == "initial"
    }
    assert set(initial["cycle_id"]) == truth_ids
    assert all(r.startswith("shape:") for r in initial["kind_reason"])
    assert (table.loc[table["cycle_id"].notna(), "kind"] != "unknown").all()


def test_a_quarantine_retry_with_many_objects_is_not_mistaken_for_an_initial_cycle(escrow):
    retries = [c for c in escrow.timeline.cycles if c.mode == "escrow-retry"]
    assert retries, "the scenario should have escrow retries"
    for cycle in retries:
        row = escrow.row(cycle)
        assert row["kind"] == "incremental" and row["quarantine_attempt"]
        assert row["distinct_objects"] > 5000
    broken = next(c for c in escrow.timeline.cycles if c.mode == "broken-initial")
    row = escrow.row(broken)
    assert row["kind"] == "initial" and row["reset_reason"] == "mapping-or-scope"
    assert row["n_failure"] > 5000


# ---------------------------------------------------------------------------------------------------------
# Inferred cycles


@pytest.mark.parametrize("name", ["healthy", "skipped-users", "paused", "bad-credentials"])
def test_empty_cycles_are_inferred_where_the_simulator_ran_them(name, scenarios):
    s = scenarios[name]
    empty = [ts(c.start) for c in s.in_window() if s.visible(c) == 0]
    inferred = s.table[s.table["inferred"]]
    assert empty, "the scenario should have cycles without entries"
    extra, missed = _match_times(inferred["start"].tolist(), empty)
    assert not extra and not missed
    assert len(inferred) == len(empty)
    assert (inferred["entries"] == 0).all() and (inferred["kind"] == "incremental").all()


def test_no_interval_cycles_are_inferred_while_quarantined(scenarios):
    s = scenarios["bad-credentials"]
    began = ts(s.timeline.quarantine.series_began)
    during = s.table[s.table["start"] > began]
    assert set(during["timing_source"]) <= {"retry-schedule", "job-status"}
    offsets = sorted((during["start"] - began).dt.round("1min"))
    assert offsets == [pd.Timedelta(hours=6), pd.Timedelta(hours=12), pd.Timedelta(hours=24)]
    assert during["quarantine_attempt"].all()


def test_a_disabled_job_shows_its_last_daily_attempts_and_nothing_after(scenarios):
    s = scenarios["disabled"]
    assert s.evidence.events.empty
    truth = [ts(c.start) for c in s.in_window()]
    extra, missed = _match_times(s.table["start"].tolist(), truth)
    assert not extra and not missed and len(s.table) == len(truth)
    assert s.table["start"].max() < ts(s.timeline.disabled_at)
    assert (s.table["timing_source"] == "job-status").sum() == 1  # the last attempt, from lastExecution


# ---------------------------------------------------------------------------------------------------------
# Timing: job status vs log span


def test_job_status_timing_is_exact_and_log_spans_are_lower_bounds(scenarios):
    s = scenarios["healthy"]
    last = s.timeline.cycles[-1]
    row = s.row(last)
    assert row["timing_source"] == "job-status" and not row["duration_is_lower_bound"]
    assert row["start"] == ts(last.start) and row["end"] == ts(last.end)
    assert row["activity_id"] == s.evidence.job["status"]["lastExecution"]["activityIdentifier"]
    assert row["state"] == "Succeeded"
    spans = s.logged()[s.logged()["timing_source"] == "log-span"]
    assert len(spans) > 100 and spans["duration_is_lower_bound"].all()
    for row in spans.itertuples():
        cycle = s.truth[row.cycle_id]
        assert ts(cycle.start) <= row.start and row.end <= ts(cycle.end)
        if row.entries == 1:
            assert pd.isna(row.duration)  # one entry spans nothing: unknown, not zero
        else:
            assert pd.Timedelta(0) < row.duration <= ts(cycle.end) - ts(cycle.start)


@pytest.fixture(scope="module")
def snapshotted(tenant: Tenant, scenarios) -> Scenario:
    """The healthy app with a job-status snapshot every 20 minutes over the last 12 hours."""
    s = scenarios["healthy"]
    frames = []
    try:
        for k in range(36, -1, -1):
            tenant.advance(-20 * k)
            when = datetime.fromtimestamp(tenant.now_ticks / 10**7, tz=UTC)
            frames.append(
                jobs_from_records([tenant.job(s.app)], snapshot_time=when, service_principal_id=s.app.sp_id)
            )
            tenant.advance(20 * k)
    finally:
        tenant.now_ticks = tenant.start_now_ticks
    evidence = from_simulator(tenant, s.app)
    evidence.jobs = pd.concat(frames, ignore_index=True)
    copy = Scenario.__new__(Scenario)
    copy.__dict__.update(s.__dict__, evidence=evidence, table=cyc.cycles_table(evidence))
    return copy


def test_kept_snapshots_time_the_cycles_they_saw_and_reveal_empty_ones(snapshotted):
    s = snapshotted
    table = s.table
    since = pd.Timestamp(NOW) - pd.Timedelta(hours=12)
    recent = [c for c in s.timeline.cycles if ts(c.end) >= since and c.end <= s.tenant.now_ticks]
    timed = table[table["timing_source"] == "job-status"]
    assert len(timed) >= len(recent) - 1
    for cycle in recent:
        match = timed[(timed["start"] == ts(cycle.start)) & (timed["end"] == ts(cycle.end))]
        if cycle is recent[0] and match.empty:
            continue  # it may have ended before the first snapshot's lastExecution moved on
        assert len(match) == 1, cycle.no
        assert bool(match.iloc[0]["inferred"]) == (s.visible(cycle) == 0)


# ---------------------------------------------------------------------------------------------------------
# Summary, ETAs and the quarantine timeline


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("healthy", "Active"),
        ("initial-cycle-running", "Running initial cycle"),
        ("bad-credentials", "Quarantine"),
        ("skipped-users", "Active"),
        ("paused", "Paused"),
        ("disabled", "Disabled"),
    ],
)
def test_summary_states_and_serialises(name, state, scenarios):
    s = scenarios[name]
    result = cyc.summary(s.evidence, s.table)
    assert result.state == state
    data = json.loads(json.dumps(result.as_dict()))
    assert data["state"] == state and data["cycles"] == len(s.table)
    if state == "Quarantine":
        assert result.quarantine_reason == "EncounteredQuarantineException"
        assert "EncounteredQuarantineException" in result.state_detail


def test_summary_durations_against_truth(scenarios):
    s = scenarios["healthy"]
    result = cyc.summary(s.evidence, s.table)
    latest_initial = [c for c in s.timeline.cycles if c.kind == "initial"][-1]
    true_initial = ts(latest_initial.end) - ts(latest_initial.start)
    assert result.initial_duration_is_lower_bound
    assert true_initial * 0.95 <= result.initial_duration <= true_initial
    incremental = [
        ts(c.end) - ts(c.start) for c in s.timeline.cycles if c.kind == "incremental" and c.entries
    ]
    assert result.incremental_max <= max(incremental)
    assert result.incremental_p50 <= result.incremental_p90 <= result.incremental_max
    assert result.initial_duration > 5 * result.incremental_p90
    assert result.initial_cycles == 2


@pytest.mark.parametrize("users", [2000, 6000])
def test_initial_cycle_eta_range_contains_the_true_end(users, scenarios):
    if users == 2000:
        s = scenarios["initial-cycle-running"]
    else:
        s = Scenario(
            Tenant(seed=3, users_count=users, days=7, now=NOW, scenarios=("initial-cycle-running",)),
            "initial-cycle-running",
        )
    eta = cyc.initial_cycle_eta(s.evidence, s.table)
    end = ts(s.timeline.cycles[0].end)
    assert eta is not None and eta.observations >= 1
    assert eta.earliest <= end <= eta.latest
    assert eta.earliest <= eta.likely <= eta.latest
    assert eta.earliest >= pd.Timestamp(s.evidence.now)  # still running now
    assert eta.earliest_method.startswith("progress") and eta.latest_method.startswith("progress")
    assert eta.likely_method.startswith("progress: linear fit")
    assert eta.sizing_earliest <= end <= eta.sizing_latest
    low, high = eta.objects_in_scope
    assert low <= len(s.app.subjects) <= high
    json.dumps(eta.as_dict())


def test_no_initial_cycle_eta_when_none_is_running(scenarios):
    assert cyc.initial_cycle_eta(scenarios["healthy"].evidence, scenarios["healthy"].table) is None


def test_change_eta_when_active_is_the_next_cycle_plus_a_typical_duration(scenarios):
    s = scenarios["healthy"]
    eta = cyc.change_eta(s.evidence, s.table)
    now = pd.Timestamp(s.evidence.now)
    assert not eta.never and not eta.only_if_fixed
    assert now <= eta.earliest <= now + pd.Timedelta(minutes=40)
    assert eta.earliest <= eta.likely <= eta.latest <= eta.earliest + pd.Timedelta(minutes=30)
    # The simulator's next cycle starts 40 minutes after the last (plus up to 30 s).
    next_start = ts(s.timeline.cycles[-1].start) + pd.Timedelta(minutes=40)
    assert abs(eta.earliest - next_start) <= pd.Timedelta(minutes=1)


def test_change_eta_while_the_initial_cycle_runs_waits_for_it(scenarios):
    s = scenarios["initial-cycle-running"]
    eta = cyc.change_eta(s.evidence, s.table)
    initial = cyc.initial_cycle_eta(s.evidence, s.table)
    assert eta.state == "Running initial cycle"
    assert eta.earliest >= initial.earliest and eta.likely >= initial.likely and eta.latest >= initial.latest


def test_change_eta_in_quarantine_is_the_next_attempt_if_fixed(scenarios):
    s = scenarios["bad-credentials"]
    eta = cyc.change_eta(s.evidence, s.table)
    assert eta.only_if_fixed and not eta.never
    assert eta.earliest == ts(s.timeline.quarantine.next_attempt)
    assert "only if the cause is fixed" in eta.explanation


@pytest.mark.parametrize(("name", "word"), [("paused", "paused"), ("disabled", "disabled")])
def test_change_eta_never_when_paused_or_disabled(name, word, scenarios):
    s = scenarios[name]
    eta = cyc.change_eta(s.evidence, s.table)
    assert eta.never and eta.earliest is None and eta.likely is None
    assert word in eta.explanation and "started" in eta.explanation
    if name == "disabled":
        assert "quarantine" in eta.explanation


def test_quarantine_timeline_schedule_next_attempt_and_disable_date(scenarios):
    s = scenarios["bad-credentials"]
    q = s.timeline.quarantine
    timeline = cyc.quarantine_timeline(s.evidence, s.table)
    began = ts(q.series_began)
    assert timeline.quarantined and timeline.reason == "EncounteredQuarantineException"
    assert timeline.series_began == began
    assert timeline.next_attempt == ts(q.next_attempt)
    assert timeline.disable_at == began + pd.Timedelta(days=28)
    offsets = (timeline.attempts["time"] - began).tolist()[:5]
    assert offsets == [pd.Timedelta(hours=h) for h in (6, 12, 24, 48, 72)]
    assert (timeline.attempts["time"] < began + pd.Timedelta(days=28)).all()
    seen = timeline.attempts[timeline.attempts["observed"]]
    assert seen["time"].tolist() == [began + pd.Timedelta(hours=24)]  # the run in lastExecution
    assert timeline.episodes.iloc[0]["source"] == "job-status+audit"
    json.dumps(timeline.as_dict())


def test_quarantine_timeline_of_a_disabled_job_gives_the_disable_date(scenarios):
    s = scenarios["disabled"]
    timeline = cyc.quarantine_timeline(s.evidence, s.table)
    assert timeline.disabled and not timeline.quarantined
    assert timeline.disable_at == ts(s.timeline.disabled_at)
    assert timeline.next_attempt is None


def test_change_eta_after_escrow_quarantine_expects_a_retry_as_long_as_the_last_ones(escrow):
    eta = cyc.change_eta(escrow.evidence, escrow.table)
    assert eta.only_if_fixed and eta.earliest == ts(escrow.timeline.quarantine.next_attempt)
    retries = [ts(c.end) - ts(c.start) for c in escrow.timeline.cycles if c.mode == "escrow-retry"]
    assert min(retries) * 0.9 <= eta.likely - eta.earliest <= max(retries)
    assert "earlier quarantine retries" in eta.basis


def test_quarantine_timeline_of_escrow_retries_sees_the_retries(escrow):
    timeline = cyc.quarantine_timeline(escrow.evidence, escrow.table)
    assert timeline.reason == "EncounteredEscrowProportionThreshold"
    passed = timeline.attempts[timeline.attempts["passed"]]
    assert passed["observed"].all() and len(passed) == 3


def test_format_cycles_reads_like_a_report(scenarios):
    s = scenarios["healthy"]
    text = cyc.format_cycles(s.table, cyc.summary(s.evidence, s.table), last=400)
    assert "state              Active" in text
    assert "reset: mapping-or-scope" in text and "inferred (interval)" in text and ">=" in text
    assert len(text.splitlines()) > len(s.table)
    short = cyc.format_cycles(s.table, cyc.summary(s.evidence, s.table), last=5)
    assert "earlier cycles not shown" in short


def test_cycles_as_records_is_json(scenarios):
    records = cyc.cycles_as_records(scenarios["bad-credentials"].table)
    data = json.loads(json.dumps(records))
    assert data[0]["start"].endswith("Z") and isinstance(data[0]["duration"], float)
    assert any(r["duration"] is None for r in data)


# ---------------------------------------------------------------------------------------------------------
# Small hand-built evidence


def entry(
    n: int, when: str, cycle: str | None, action: str = "Update", status: str = "success", user: str = "u1"
) -> dict:
    record = {
        "id": f"e{n}",
        "activityDateTime": when,
        "jobId": "scim.job",
        "changeId": f"c{n}",
        "provisioningAction": action,
        "provisioningStatusInfo": {"status": status},
        "sourceIdentity": {"id": user, "identityType": "User"},
    }
    if cycle is not None:
        record["cycleId"] = cycle
    return record


def hand_built(records: list[dict], *, job: dict | None = None, audits: list[dict] | None = None) -> Evidence:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    jobs = None
    if job is not None:
        jobs = jobs_from_records([job], snapshot_time=now, service_principal_id="sp1")
    return Evidence(
        tenant_id="t",
        service_principal_id="sp1",
        app_id=None,
        display_name="hand-built",
        tables=events_from_records(records),
        jobs=jobs,
        job=job,
        audits=audits or [],
        now=now,
        window=(now - timedelta(days=7), now),
    )


def test_a_single_cycle_without_signals_is_unknown_and_says_why():
    evidence = hand_built([entry(i, f"2026-03-01T10:0{i}:00Z", "c1", user=f"u{i}") for i in range(5)])
    table = cyc.cycles_table(evidence)
    assert len(table) == 1
    assert table.iloc[0]["kind"] == "unknown" and "single" in table.iloc[0]["kind_reason"]
    assert table.iloc[0]["duration"] == pd.Timedelta(minutes=4) and table.iloc[0]["duration_is_lower_bound"]
    assert table.iloc[0]["distinct_objects"] == 5
    result = cyc.summary(evidence, table)
    assert result.state == "Unknown" and result.unknown_cycles == 1
    assert "unknown" in cyc.format_cycles(table, result)


def test_no_entries_and_no_job_status_give_an_empty_table_and_a_cautious_summary():
    evidence = hand_built([])
    table = cyc.cycles_table(evidence)
    assert table.empty and list(table.columns) == list(cyc.CYCLE_COLUMNS)
    result = cyc.summary(evidence, table)
    assert result.state == "Unknown" and result.cycles == 0 and result.initial_duration is None
    now = pd.Timestamp(evidence.now)
    assert result.change_eta.earliest == now and result.change_eta.latest >= now + pd.Timedelta(minutes=40)
    json.dumps(result.as_dict())
    cyc.format_cycles(table, result)


def test_a_cycle_spanning_midnight_is_one_cycle():
    records = [
        entry(1, "2026-03-01T23:50:00Z", "late", user="a"),
        entry(2, "2026-03-01T23:59:59.9999999Z", "late", user="b"),
        entry(3, "2026-03-02T00:20:00.5Z", "late", user="a"),
    ]
    table = cyc.cycles_table(hand_built(records))
    assert len(table) == 1
    row = table.iloc[0]
    assert row["duration"] == pd.Timedelta(minutes=30, milliseconds=500)
    assert row["entries"] == 3 and row["distinct_objects"] == 2


def test_unknown_enum_values_are_counted_not_dropped():
    records = [
        entry(1, "2026-03-01T10:00:00Z", "c1", action="Provision", status="pending"),
        entry(2, "2026-03-01T10:01:00Z", "c1", action="Create", status="Success"),
        entry(3, "2026-03-01T10:02:00Z", "c1", action="StagedDelete", status="warning"),
    ]
    job = {
        "id": "scim.job",
        "schedule": {"interval": "PT20M", "state": "Active"},
        "status": {"code": "Hibernating"},
    }
    evidence = hand_built(records, job=job)
    row = cyc.cycles_table(evidence).iloc[0]
    assert (row["n_unknown_action"], row["n_create"], row["n_stageddelete"]) == (1, 1, 1)
    assert (row["n_unknown_status"], row["n_success"], row["n_warning"]) == (1, 1, 1)
    result = cyc.summary(evidence)
    assert result.state == "Hibernating" and "not documented" in result.state_detail
    assert result.interval == pd.Timedelta(minutes=20)


def test_entries_without_a_cycle_id_are_counted_and_reported():
    records = [entry(1, "2026-03-01T10:00:00Z", "c1"), entry(2, "2026-03-01T10:01:00Z", None)]
    evidence = hand_built(records)
    table = cyc.cycles_table(evidence)
    assert len(table) == 1 and table.attrs["entries_without_cycle"] == 1
    assert any("no cycleId" in note for note in cyc.summary(evidence, table).notes)


def test_audits_of_another_app_do_not_reset_this_one():
    starts = ["10:00", "10:40", "11:20"]  # on the default 40-minute interval: nothing to infer
    records = [entry(i, f"2026-03-01T{t}:00Z", f"c{i}", user=f"u{i}") for i, t in enumerate(starts)]
    audits = [
        {
            "activityDisplayName": "Restart synchronization job",
            "activityDateTime": "2026-03-01T10:30:00Z",
            "targetResources": [{"id": "another-sp"}],
        },
        {
            "activityDisplayName": "update SCOPING filter",
            "activityDateTime": "2026-03-01T11:10:00Z",
            "targetResources": [{"id": "sp1"}],
        },
    ]
    table = cyc.cycles_table(hand_built(records, audits=audits))
    assert table["reset_before"].tolist() == [False, False, True]
    assert table.iloc[2]["reset_reason"] == "scoping" and table.iloc[2]["kind"] == "initial"


def test_an_initial_cycle_is_recognised_after_a_long_idle_gap_without_inventing_one_before_a_restart():
    # Hourly single-object cycles on a 20-minute interval: two empty cycles between each; a restart at 12:30
    # restarts the cadence, so none is inferred between it and the cycle that follows.
    records = [entry(i, f"2026-03-01T{10 + i:02d}:00:00Z", f"c{i}", user="u1") for i in range(3)]
    records += [entry(10 + k, "2026-03-01T12:32:00Z", "c3", user=f"x{k}") for k in range(50)]
    job = {
        "id": "scim.job",
        "schedule": {"interval": "PT20M", "state": "Active"},
        "status": {"code": "Active"},
    }
    audits = [
        {
            "activityDisplayName": "Restart synchronization job",
            "activityDateTime": "2026-03-01T12:30:00Z",
            "targetResources": [{"id": "sp1"}],
        }
    ]
    table = cyc.cycles_table(hand_built(records, job=job, audits=audits))
    inferred = table[table["inferred"]]["start"].dt.strftime("%H:%M").tolist()
    assert inferred == ["10:20", "10:40", "11:20", "11:40", "12:20"]
    last = table.iloc[-1]
    assert last["kind"] == "initial" and last["reset_reason"] == "restart"


def test_initial_cycle_eta_keeps_the_likely_end_inside_its_range():
    # 200 users logged in the first minute of a first run: faster than the documented 0.01 min per object, so
    # the log rate alone would put the likely end before the earliest the sizing allows.
    start = datetime(2026, 3, 2, 11, tzinfo=UTC)
    records = [
        entry(
            i, (start + timedelta(seconds=0.3 * i)).isoformat().replace("+00:00", "Z"), "first", user=f"u{i}"
        )
        for i in range(200)
    ]
    job = {
        "id": "scim.job",
        "status": {"code": "NotRun"},
        "schedule": {"interval": "PT40M", "state": "Active"},
    }
    evidence = hand_built(records, job=job)
    evidence.jobs = jobs_from_records(
        [job], snapshot_time=start + timedelta(minutes=1), service_principal_id="sp1"
    )
    eta = cyc.initial_cycle_eta(evidence)
    assert eta is not None and eta.objects_in_scope == (200, 200)
    assert eta.sizing_earliest == pd.Timestamp(start) + pd.Timedelta(minutes=2)
    assert eta.earliest <= eta.likely <= eta.latest
    assert eta.likely == eta.earliest and any("likely moved to the earliest end" in n for n in eta.notes)
