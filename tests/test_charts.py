"""Charts: titles that say what they show, axis titles with units, values that match the data, and figures
drawn from aggregates (a million log entries make a small figure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from provkit.analysis import cycles as cyc
from provkit.analysis import trends
from provkit.data.evidence import Evidence
from provkit.data.tables import ACTIONS, STATUSES, Tables, empty_tables
from provkit.sim.evidence import from_simulator
from provkit.sim.tenant import Tenant
from provkit.workbook import charts, views

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
UNIT_WORDS = ("minutes", "UTC", "entries", "%", "cycles", "code", "episode")


@pytest.fixture(scope="module")
def evidence() -> dict[str, Evidence]:
    names = ("healthy", "initial-cycle-running", "bad-credentials", "skipped-users")
    tenant = Tenant(seed=7, users_count=2000, days=7, now=NOW, scenarios=names)
    return {app.scenario.name: from_simulator(tenant, app) for app in tenant.apps}


@pytest.fixture(scope="module")
def tables(evidence) -> dict[str, pd.DataFrame]:
    return {name: cyc.cycles_table(ev) for name, ev in evidence.items()}


def labelled(figure: go.Figure, *words: str) -> None:
    """The figure has a title naming ``words`` and axis titles that carry a unit or a counted noun."""
    title = figure.layout.title.text
    assert title and all(w.lower() in title.lower() for w in words), title
    for axis in (figure.layout.xaxis, figure.layout.yaxis):
        text = axis.title.text
        assert text and any(w.lower() in text.lower() for w in UNIT_WORDS), text


def test_cycle_durations_tell_initial_from_incremental_and_mark_resets(tables):
    table = tables["healthy"]
    figure = charts.cycle_durations(table)
    labelled(figure, "cycle durations", "initial", "incremental")
    assert figure.layout.yaxis.type == "log"
    # Ticks say their unit ("30 s", "5 min", "1 h"): bare minor labels (5, 2, 10, 5, 2, 1) were misread.
    assert all(re.fullmatch(r"\d+ (s|min|h|d)", t) for t in figure.layout.yaxis.ticktext)
    names = [t.name for t in figure.data]
    assert any(n.startswith("initial") for n in names) and any(n.startswith("incremental") for n in names)
    initial = [t for t in figure.data if t.name.startswith("initial")]
    assert sum(len(t.x) for t in initial) == int((table["kind"] == "initial").sum())
    resets = [s for s in figure.layout.shapes if s.line.dash == "dot"]
    assert len(resets) == int(table["reset_before"].sum()) == 1
    assert any("mapping-or-scope" in (a.text or "") for a in figure.layout.annotations)


def test_incremental_distribution_draws_p50_and_p90(evidence, tables):
    table = tables["healthy"]
    figure = charts.incremental_distribution(table)
    labelled(figure, "incremental cycle durations")
    result = cyc.summary(evidence["healthy"], table)
    lines = sorted(s.x0 for s in figure.layout.shapes)
    expected = [result.incremental_p50.total_seconds() / 60, result.incremental_p90.total_seconds() / 60]
    assert lines == pytest.approx(expected)
    finished = (
        (table["kind"] == "incremental")
        & table["duration"].notna()
        & ~table["running"]
        & ~table["quarantine_attempt"]
    )
    assert sum(len(t.x) for t in figure.data) == int(finished.sum()) > 100


def test_entries_vs_duration_has_a_point_per_timed_logged_cycle(tables):
    table = tables["skipped-users"]
    figure = charts.entries_vs_duration(table)
    labelled(figure, "entries", "duration")
    timed = table[table["duration"].notna() & (table["entries"] > 0)]
    assert sum(len(t.x) for t in figure.data) == len(timed)


@pytest.mark.parametrize("by", ["action", "status"])
def test_events_per_day_counts_every_entry(by, evidence):
    events = evidence["skipped-users"].events
    figure = charts.events_per_day(events, by=by)
    labelled(figure, "per day", by)
    assert sum(int(np.sum(t.y)) for t in figure.data) == len(events)
    known = ACTIONS if by == "action" else STATUSES
    assert {t.name for t in figure.data} <= set(known)
    assert len(figure.data[0].x) == events["activity_time"].dt.floor("D").nunique()


def test_events_per_day_rejects_an_unknown_grouping(evidence):
    with pytest.raises(ValueError, match="action"):
        charts.events_per_day(evidence["healthy"].events, by="error_code")


def test_top_error_codes_are_the_most_frequent_codes(evidence):
    events = evidence["skipped-users"].events
    figure = charts.top_error_codes(events, n=3)
    labelled(figure, "top 3 error codes")
    totals: dict[str, int] = {}
    for trace in figure.data:
        for code, count in zip(trace.y, trace.x, strict=True):
            totals[code] = totals.get(code, 0) + int(count)
    expected = events["error_code"].value_counts().head(3)
    assert totals == {code: int(count) for code, count in expected.items()}
    assert list(figure.data[0].y)[-1] == expected.index[0]  # most frequent on top


def test_initial_progress_shows_observations_and_the_eta_band(evidence, tables):
    ev = evidence["initial-cycle-running"]
    eta = cyc.initial_cycle_eta(ev, tables["initial-cycle-running"])
    figure = charts.initial_progress(ev, eta)
    labelled(figure, "initial cycle progress")
    observed = next(t for t in figure.data if t.name.startswith("observed"))
    assert len(observed.x) == eta.observations
    bands = [(pd.Timestamp(s.x0), pd.Timestamp(s.x1)) for s in figure.layout.shapes if s.type == "rect"]
    assert (pd.Timestamp(eta.earliest), pd.Timestamp(eta.latest)) in bands
    assert (pd.Timestamp(eta.sizing_earliest), pd.Timestamp(eta.sizing_latest)) in bands
    quiet = charts.initial_progress(evidence["healthy"], None)
    assert "no initial cycle is running" in quiet.layout.annotations[0].text


def test_quarantine_figure_marks_the_next_attempt_and_the_disable_date(evidence, tables):
    ev = evidence["bad-credentials"]
    figure = charts.quarantine_timeline(ev, tables["bad-credentials"])
    labelled(figure, "quarantine", "retry schedule")
    star = next(t for t in figure.data if t.name == "next attempt")
    quarantine = ev.job["status"]["quarantine"]
    assert pd.Timestamp(star.x[0]) == pd.Timestamp(quarantine["nextAttempt"])
    disable = pd.Timestamp(quarantine["seriesBegan"]) + pd.Timedelta(days=28)
    assert [pd.Timestamp(s.x0) for s in figure.layout.shapes] == [disable]
    assert "no quarantine" in charts.quarantine_timeline(evidence["healthy"]).layout.annotations[0].text


def test_empty_inputs_give_labelled_figures_with_a_note():
    empty_events = empty_tables().events
    for figure in (charts.events_per_day(empty_events), charts.top_error_codes(empty_events)):
        assert figure.layout.title.text and figure.layout.annotations
    now = datetime(2026, 3, 2, tzinfo=UTC)
    table = cyc.cycles_table(
        Evidence("t", "sp", None, "empty", now=now, window=(now - timedelta(days=1), now))
    )
    for make in (charts.cycle_durations, charts.incremental_distribution, charts.entries_vs_duration):
        figure = make(table)
        assert figure.layout.title.text and figure.layout.annotations


def million_entries() -> pd.DataFrame:
    """1,000,000 synthetic log entries in 1,000 cycles over 28 days, with the events columns the charts and
    the cycles use."""
    rng = np.random.default_rng(5)
    n, cycles = 1_000_000, 1_000
    cycle_of = np.sort(rng.integers(0, cycles, n))
    start = pd.Timestamp("2026-02-01", tz="UTC").value
    times = start + cycle_of * 40 * 60 * 10**9 + rng.integers(0, 20 * 60 * 10**9, n)
    codes = np.array([f"SystemForCrossDomainIdentityManagement{k}" for k in range(40)], dtype=object)
    status = rng.choice(len(STATUSES), n, p=[0.8, 0.1, 0.09, 0.01])
    users = np.array([f"user-{u:06d}" for u in range(50_000)], dtype=object)
    cycle_ids = np.array([f"cycle-{c:04d}" for c in range(cycles)], dtype=object)
    return pd.DataFrame(
        {
            "activity_time": pd.to_datetime(times, utc=True),
            "job_id": pd.array(np.full(n, "scim.million", dtype=object), dtype="str"),
            "cycle_id": pd.array(cycle_ids[cycle_of], dtype="str"),
            "action": pd.Categorical.from_codes(rng.integers(0, len(ACTIONS), n), ACTIONS),
            "status": pd.Categorical.from_codes(status, STATUSES),
            "source_id": pd.array(users[rng.integers(0, len(users), n)], dtype="str"),
            "error_code": pd.array(
                np.where(status == 1, codes[rng.integers(0, len(codes), n)], None), dtype="str"
            ),
        }
    )


def test_a_million_entries_make_small_figures():
    events = million_entries()
    now = events["activity_time"].max().ceil("s").to_pydatetime()
    base = empty_tables()
    evidence = Evidence(
        "t",
        "sp",
        None,
        "million",
        tables=Tables(events, base.steps, base.properties),
        now=now,
        window=(events["activity_time"].min().floor("s").to_pydatetime(), now),
    )
    table = cyc.cycles_table(evidence)
    assert len(table) == 1_000 and table["entries"].sum() == 1_000_000
    figures = [
        charts.events_per_day(events, by="action"),
        charts.events_per_day(events, by="status"),
        charts.top_error_codes(events),
        charts.cycle_durations(table),
        charts.incremental_distribution(table),
        charts.entries_vs_duration(table),
    ]
    for figure in figures:
        size = len(figure.to_json())
        assert size < 3 * 2**20, (figure.layout.title.text, size)
    per_day = figures[0]
    assert sum(int(np.sum(t.y)) for t in per_day.data) == 1_000_000


@pytest.fixture(scope="module")
def five_weeks() -> dict[str, Evidence]:
    names = ("healthy", "skipped-users")
    tenant = Tenant(seed=7, users_count=300, days=35, now=NOW, scenarios=names)
    return {app.scenario.name: from_simulator(tenant, app) for app in tenant.apps}


def test_initial_durations_over_time_draw_every_timed_initial_cycle(five_weeks):
    table = cyc.cycles_table(five_weeks["healthy"])
    initial = trends.initial_durations(table)
    figure = charts.initial_durations(table)
    labelled(figure, "initial-cycle durations", "over time")
    assert figure.layout.yaxis.type == "log"
    (trace,) = figure.data
    timed = initial[initial["duration"].notna()]
    assert len(trace.x) == len(timed) >= 2
    assert np.allclose(trace.y, timed["duration"].dt.total_seconds() / 60)


def test_incremental_by_week_draws_p50_and_p90_per_week(five_weeks):
    table = cyc.cycles_table(five_weeks["healthy"])
    weeks = trends.incremental_by_week(table)
    figure = charts.incremental_by_week(table)
    labelled(figure, "incremental", "by week", "p50", "p90")
    p50, p90 = figure.data
    assert (p50.name, p90.name) == ("p50", "p90")
    assert len(p50.x) == int((weeks["timed"] > 0).sum()) >= 5  # 35 days touch five or six ISO weeks
    assert np.allclose(p90.y, (weeks[weeks["timed"] > 0]["p90"].dt.total_seconds() / 60).clip(lower=1 / 60))
    assert all(a <= b for a, b in zip(p50.y, p90.y, strict=True))


def test_failures_by_day_count_every_failed_entry_by_code(five_weeks):
    events = five_weeks["skipped-users"].events
    failures = trends.failures_by_day(events)
    figure = charts.failures_by_day(failures, n=2)
    labelled(figure, "failed", "per day", "error code")
    assert sum(sum(trace.y) for trace in figure.data) == int((events["status"] == "failure").sum()) > 0
    names = [trace.name for trace in figure.data]
    assert len(names) <= 3 and (len(set(failures["code"])) <= 2 or names[-1] == "other")
    empty = charts.failures_by_day(trends.failures_by_day(events.iloc[0:0]))
    assert not empty.data and "no failed entries" in empty.layout.annotations[0].text


def test_trend_gaps_say_what_a_short_window_lacks(evidence, tables, five_weeks):
    long = five_weeks["healthy"]
    assert views.trend_gaps(long, cyc.cycles_table(long)) == {
        "initial": None,
        "weekly": None,
        "failures": None,
    }
    short = evidence["healthy"]  # 7 days: one or two weeks
    gaps = views.trend_gaps(short, tables["healthy"])
    assert gaps["failures"] is None and "two weeks or more" in str(gaps["weekly"])
    text = views.trends_text(short, gaps)
    assert text.startswith("Not drawn: ") and "Graph keeps 30 days" in text and "workspace" in text
    assert views.trends_text(long, views.trend_gaps(long, cyc.cycles_table(long))).startswith(
        "Trends over 35 days"
    )
